"""Signal models (training side): a next-day direction classifier and a next-day return regressor.

`make_model(kind)` builds an unfitted `SignalModel`; `train(frame, kind)` fits one on every bar
whose next-day outcome is known, and `predict_next(model, frame)` turns the latest bar into a
signal. Inputs are numpy arrays whose columns are FEATURE_NAMES. Models are deterministic; the
predict function never loads them: `stockml.artifact.export` turns a fitted one into numpy arrays.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from stockml.artifact import action_for
from stockml.features import FEATURE_NAMES, Frame, build_features, build_targets, usable_rows

MODEL_KINDS: tuple[str, ...] = ("logreg", "hgb")

RANDOM_STATE = 0

DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "logreg": {"C": 0.05, "alpha": 100.0},
    "hgb": {"max_iter": 60, "max_depth": 3, "learning_rate": 0.05, "min_samples_leaf": 100,
            "l2_regularization": 1.0},
}

class SignalModel:
    """A direction classifier and a return regressor sharing one feature list (FEATURE_NAMES)."""

    def __init__(self, kind: str, params: dict[str, Any], classifier: Pipeline, regressor: Pipeline):
        self.kind = kind
        self.params = dict(params)
        self.classifier = classifier
        self.regressor = regressor
        self.feature_names: tuple[str, ...] = FEATURE_NAMES
        self.trained_through: str | None = None

    def fit(self, X: np.ndarray, direction: np.ndarray, next_return: np.ndarray,
            trained_through: str | None = None) -> SignalModel:
        """Fit both parts on rows of X with their next-day direction and return.

        `trained_through` is the date of the last row (ISO), kept for the model's metadata.
        """
        values = self._values(X)
        self.classifier.fit(values, np.asarray(direction, dtype=int))
        self.regressor.fit(values, np.asarray(next_return, dtype=float))
        self.trained_through = trained_through
        return self

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(probability of an up day, expected next-day return) for each row of X."""
        values = self._values(X)
        up_column = list(self.classifier.classes_).index(1)
        prob_up = self.classifier.predict_proba(values)[:, up_column]
        return prob_up, self.regressor.predict(values)

    def _values(self, X: np.ndarray) -> np.ndarray:
        values = np.asarray(X, dtype=float)
        if values.ndim != 2 or values.shape[1] != len(self.feature_names):
            raise ValueError(f"expected rows of {len(self.feature_names)} features "
                             f"({', '.join(self.feature_names)}), got shape {values.shape}")
        return values

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


class TrainingRows(NamedTuple):
    """The rows a model can learn from: features with a known next-day outcome, and their dates."""

    dates: np.ndarray
    X: np.ndarray
    direction: np.ndarray
    next_return: np.ndarray


def training_rows(frame: Frame) -> TrainingRows:
    """Features and targets of every bar whose features and next-day outcome are all known."""
    features, targets = build_features(frame), build_targets(frame)
    ok = usable_rows(features, targets)
    return TrainingRows(frame.dates[ok], features[ok], targets.direction[ok], targets.next_return[ok])


def train(frame: Frame, kind: str, **params: Any) -> SignalModel:
    """Fit a SignalModel on every bar of `frame` whose next-day outcome is known."""
    rows = training_rows(frame)
    return make_model(kind, **params).fit(rows.X, rows.direction, rows.next_return,
                                          trained_through=str(rows.dates[-1]) if len(rows.dates) else None)


def predict_next(model: SignalModel, frame: Frame) -> dict[str, Any]:
    """Signal for the day after the last bar of `frame`: date, prob_up, expected_return, action."""
    features = build_features(frame)[-1:]
    if np.isnan(features).any():
        raise ValueError("not enough history for the latest bar's features")
    prob_up, expected = model.predict(features)
    return {"date": str(frame.dates[-1]), "prob_up": float(prob_up[0]),
            "expected_return": float(expected[0]), "action": action_for(float(prob_up[0]))}
