"""stockml: features, numpy model artifacts, the registry and signals (serving, numpy only); models,
walk-forward evaluation and training (scikit-learn)."""
