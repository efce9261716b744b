"""stockml: features, models, walk-forward evaluation and the model registry (predictions issue)."""
