"""Signal models: a next-day direction classifier and a next-day return regressor, fitted together.

`make_model(kind)` builds an unfitted `SignalModel`; `train(df, kind)` fits one on every bar whose
next-day outcome is known, and `predict_next(model, df)` turns the latest bar into a signal. Models
are deterministic and picklable with joblib, so the registry can store and reload them.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from stockml.features import FEATURE_NAMES, build_features, build_targets

MODEL_KINDS: tuple[str, ...] = ("logreg", "hgb")

RANDOM_STATE = 0

DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "logreg": {"C": 0.05, "alpha": 100.0},
    "hgb": {"max_iter": 60, "max_depth": 3, "learning_rate": 0.05, "min_samples_leaf": 100,
            "l2_regularization": 1.0},
}

Action = Literal["buy", "sell"]


def action_for(prob_up: float) -> Action:
    """"buy" when the model gives better-than-even odds of an up day, else "sell"."""
    return "buy" if prob_up > 0.5 else "sell"


class SignalModel:
    """A direction classifier and a return regressor sharing one feature list."""

    def __init__(self, kind: str, params: dict[str, Any], classifier: Pipeline, regressor: Pipeline):
        self.kind = kind
        self.params = dict(params)
        self.classifier = classifier
        self.regressor = regressor
        self.feature_names: tuple[str, ...] = ()
        self.trained_through: str | None = None

    def fit(self, X: pd.DataFrame | np.ndarray, direction: Any, next_return: Any) -> SignalModel:
        """Fit both parts on rows of X (features) with their next-day direction and return."""
        if isinstance(X, pd.DataFrame):
            self.feature_names = tuple(X.columns)
            if isinstance(X.index, pd.DatetimeIndex) and len(X):
                self.trained_through = X.index.max().date().isoformat()
        else:
            width = np.shape(X)[1]
            self.feature_names = FEATURE_NAMES if width == len(FEATURE_NAMES) else tuple(
                f"x{i}" for i in range(width))
        values = self._values(X)
        self.classifier.fit(values, np.asarray(direction, dtype=int))
        self.regressor.fit(values, np.asarray(next_return, dtype=float))
        return self

    def predict(self, X: pd.DataFrame | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(probability of an up day, expected next-day return) for each row of X."""
        values = self._values(X)
        up_column = list(self.classifier.classes_).index(1)
        prob_up = self.classifier.predict_proba(values)[:, up_column]
        return prob_up, self.regressor.predict(values)

    def _values(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        if isinstance(X, pd.DataFrame):
            missing = set(self.feature_names) - set(X.columns)
            if missing:
                raise ValueError(f"missing features: {sorted(missing)}")
            X = X[list(self.feature_names)]
        return np.asarray(X, dtype=float)

    def __repr__(self) -> str:
        return (f"SignalModel(kind={self.kind!r}, params={self.params!r}, "
                f"trained_through={self.trained_through!r})")


def make_model(kind: str, **params: Any) -> SignalModel:
    """Unfitted SignalModel of `kind` (see MODEL_KINDS); params override DEFAULT_PARAMS[kind]."""
    if kind not in DEFAULT_PARAMS:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {MODEL_KINDS}")
    unknown = set(params) - set(DEFAULT_PARAMS[kind])
    if unknown:
        raise ValueError(f"unknown parameters for {kind!r}: {sorted(unknown)}")
    p = {**DEFAULT_PARAMS[kind], **params}
    if kind == "logreg":
        classifier = make_pipeline(StandardScaler(), LogisticRegression(C=p["C"], max_iter=1000))
        regressor = make_pipeline(StandardScaler(), Ridge(alpha=p["alpha"]))
    else:
        tree = {k: p[k] for k in ("max_iter", "max_depth", "learning_rate", "min_samples_leaf",
                                  "l2_regularization")}
        classifier = make_pipeline(HistGradientBoostingClassifier(
            **tree, early_stopping=False, random_state=RANDOM_STATE))
        regressor = make_pipeline(HistGradientBoostingRegressor(
            **tree, early_stopping=False, random_state=RANDOM_STATE))
    return SignalModel(kind, p, classifier, regressor)


def training_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Features joined with targets, keeping only rows where all of them are known."""
    return build_features(df).join(build_targets(df)).dropna()


def train(df: pd.DataFrame, kind: str, **params: Any) -> SignalModel:
    """Fit a SignalModel on every bar of an OHLCV frame whose next-day outcome is known."""
    rows = training_frame(df)
    features = rows[list(FEATURE_NAMES)]
    return make_model(kind, **params).fit(features, rows["direction"], rows["next_return"])


def predict_next(model: SignalModel, df: pd.DataFrame) -> dict[str, Any]:
    """Signal for the day after the last bar of df: date, prob_up, expected_return, action."""
    features = build_features(df).iloc[[-1]]
    if features.isna().to_numpy().any():
        raise ValueError("not enough history for the latest bar's features")
    prob_up, expected = model.predict(features)
    return {"date": features.index[0].date().isoformat(), "prob_up": float(prob_up[0]),
            "expected_return": float(expected[0]), "action": action_for(float(prob_up[0]))}
