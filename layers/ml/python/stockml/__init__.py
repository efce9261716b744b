"""stockml: the models behind predictions and rankings, in two Lambda layers.

Serving (MlLayer, numpy only; the predict function imports nothing else, a unit test keeps it so):
- signals: a symbol's prediction, orchestrated from the modules below;
- prediction_store: the `predictions` and `models` rows; training_lease: one on-demand training
  per symbol, started in the retrain function;
- features, artifact, registry, volatility, sizing: inputs, numpy models and their store, risk;
- universe_ranks: a universe's published ranking.

Training and evaluation (MlTrainingLayer: scikit-learn, scipy):
- training: a symbol's record, fit and publication; models; volatility_fit;
- walk_forward (the protocol), scoring (metrics, baselines), sizing_selection (the volatility
  model and sizing rule chosen walk-forward), evaluation (the evaluation and its multiple-testing
  correction), evaluation_report (its tables and chart), edge (the bootstrap test), trials,
  performance;
- universes: panel, universe_data, cross_section, ranking, universe_training, synthetic;
- text_tables: the command line's tables.
"""
