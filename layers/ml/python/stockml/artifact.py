"""Model artifacts as plain numpy arrays: export a fitted SignalModel, load and predict with numpy only.

The artifact is an `.npz` file (a zip of `.npy` arrays, no pickled objects) holding everything
prediction needs: for "logreg" the two StandardScalers, the LogisticRegression's and the Ridge's
coefficients; for "hgb" every tree node of both gradient-boosted models and their baselines.
Loading reads it with `allow_pickle=False`, so a model file can never run code, and the predict
function needs neither scikit-learn nor scipy. `ServingModel.predict` reproduces scikit-learn's
`predict_proba(X)[:, 1]` and `predict(X)` step for step. FORMAT_VERSION changes whenever the
layout does; an artifact in another format is refused.

Exporting only reads attributes of the fitted estimators, so this module never imports sklearn.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from stockml.models import SignalModel

FORMAT_VERSION = 1
LINEAR_ARRAYS = ("clf_mean", "clf_scale", "clf_coef", "clf_intercept",
                 "reg_mean", "reg_scale", "reg_coef", "reg_intercept")
TREE_FIELDS = ("feature_idx", "num_threshold", "missing_go_to_left", "left", "right", "is_leaf", "value")

Action = Literal["buy", "sell"]


class ArtifactError(ValueError):
    """The bytes are not a usable model artifact of this format."""


def action_for(prob_up: float) -> Action:
    """"buy" when the model gives better-than-even odds of an up day, else "sell"."""
    return "buy" if prob_up > 0.5 else "sell"


def _linear_arrays(model: SignalModel) -> dict[str, np.ndarray]:
    clf_scaler, logreg = model.classifier[0], model.classifier[-1]
    reg_scaler, ridge = model.regressor[0], model.regressor[-1]
    classes = list(logreg.classes_)
    if classes != [0, 1]:
        raise ArtifactError(f"expected a binary classifier over classes [0, 1], got {classes}")
    return {
        "clf_mean": clf_scaler.mean_, "clf_scale": clf_scaler.scale_,
        "clf_coef": np.ravel(logreg.coef_), "clf_intercept": np.ravel(logreg.intercept_),
        "reg_mean": reg_scaler.mean_, "reg_scale": reg_scaler.scale_,
        "reg_coef": np.ravel(ridge.coef_), "reg_intercept": np.ravel(ridge.intercept_),
    }


def _tree_arrays(prefix: str, estimator: Any) -> dict[str, np.ndarray]:
    """Nodes of every tree of a fitted HistGradientBoosting model, concatenated tree after tree.

    `left` and `right` stay relative to their own tree; `<prefix>_tree_start` gives each tree's
    first node.
    """
    if estimator.n_trees_per_iteration_ != 1:
        raise ArtifactError("only binary classification and regression trees are exported")
    nodes = [iteration[0].nodes for iteration in estimator._predictors]
    if any(n["is_categorical"].any() for n in nodes):
        raise ArtifactError("categorical splits are not supported")
    arrays = {f"{prefix}_{name}": np.concatenate([n[name] for n in nodes]) for name in TREE_FIELDS}
    arrays[f"{prefix}_tree_start"] = np.cumsum([0] + [len(n) for n in nodes[:-1]])
    arrays[f"{prefix}_baseline"] = np.ravel(estimator._baseline_prediction)
    return arrays


def export(model: SignalModel) -> bytes:
    """The fitted model as `.npz` bytes (arrays only). The same model always gives the same bytes."""
    arrays: dict[str, np.ndarray] = {
        "format_version": np.array(FORMAT_VERSION),
        "kind": np.array(model.kind),
        "feature_names": np.array(model.feature_names),
    }
    if model.kind == "logreg":
        arrays.update(_linear_arrays(model))
    elif model.kind == "hgb":
        classes = list(model.classifier[-1].classes_)
        if classes != [0, 1]:
            raise ArtifactError(f"expected a binary classifier over classes [0, 1], got {classes}")
        arrays.update(_tree_arrays("clf", model.classifier[-1]))
        arrays.update(_tree_arrays("reg", model.regressor[-1]))
    else:
        raise ArtifactError(f"cannot export a model of kind {model.kind!r}")
    buf = io.BytesIO()
    # np.savez's layout with a fixed timestamp, so equal models give equal bytes (and sha256).
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, value in arrays.items():
            with zf.open(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)), "w",
                         force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(value), allow_pickle=False)
    return buf.getvalue()


def _expit(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass(frozen=True, eq=False)
class Trees:
    """Gradient-boosted trees as flat node arrays; a row goes left when x <= threshold (NaN:
    wherever `missing_go_to_left` says)."""

    feature_idx: np.ndarray
    num_threshold: np.ndarray
    missing_go_to_left: np.ndarray
    left: np.ndarray
    right: np.ndarray
    is_leaf: np.ndarray
    value: np.ndarray
    tree_start: np.ndarray
    baseline: float

    def raw_predict(self, X: np.ndarray) -> np.ndarray:
        """Baseline plus each tree's leaf value, added tree after tree as scikit-learn does."""
        rows = np.arange(len(X))[:, None]
        node = np.broadcast_to(self.tree_start, (len(X), len(self.tree_start))).copy()
        for _ in range(len(self.is_leaf) + 1):
            inner = ~self.is_leaf[node]
            if not inner.any():
                break
            x = X[rows, self.feature_idx[node]]
            go_left = np.where(np.isnan(x), self.missing_go_to_left[node], x <= self.num_threshold[node])
            child = np.where(go_left, self.left[node], self.right[node]) + self.tree_start
            node = np.where(inner, child, node)
        else:
            raise ArtifactError("tree nodes form a cycle")
        raw = np.full(len(X), self.baseline)
        for leaf_values in self.value[node].T:
            raw += leaf_values
        return raw


@dataclass(frozen=True, eq=False)
class ServingModel:
    """A loaded artifact: predicts with numpy alone."""

    kind: str
    feature_names: tuple[str, ...]
    format_version: int
    arrays: dict[str, np.ndarray]
    classifier_trees: Trees | None = None
    regressor_trees: Trees | None = None

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(probability of an up day, expected next-day return) for each row of X."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != len(self.feature_names):
            raise ValueError(f"expected rows of {len(self.feature_names)} features, got shape {X.shape}")
        if self.kind == "logreg":
            a = self.arrays
            scores = (X - a["clf_mean"]) / a["clf_scale"] @ a["clf_coef"][:, None]
            decision = scores.ravel() + a["clf_intercept"]
            expected = (X - a["reg_mean"]) / a["reg_scale"] @ a["reg_coef"] + a["reg_intercept"]
            return _expit(decision), expected
        assert self.classifier_trees is not None and self.regressor_trees is not None
        return _expit(self.classifier_trees.raw_predict(X)), self.regressor_trees.raw_predict(X)


def _trees(arrays: dict[str, np.ndarray], prefix: str, n_features: int) -> Trees:
    a = {name: arrays[f"{prefix}_{name}"] for name in (*TREE_FIELDS, "tree_start")}
    if len({len(a[name]) for name in TREE_FIELDS}) != 1:
        raise ArtifactError(f"{prefix} tree arrays differ in length")
    sizes = np.diff(np.append(a["tree_start"], len(a["is_leaf"])))
    tree_size = np.repeat(sizes, np.maximum(sizes, 0))
    inner = ~a["is_leaf"].astype(bool)
    ok = (len(sizes) > 0 and a["tree_start"][0] == 0 and (sizes > 0).all()
          and (a["left"][inner] < tree_size[inner]).all() and (a["right"][inner] < tree_size[inner]).all()
          and (a["feature_idx"][inner] >= 0).all() and (a["feature_idx"][inner] < n_features).all())
    if not ok:
        raise ArtifactError(f"{prefix} trees point outside themselves")
    return Trees(
        feature_idx=a["feature_idx"].astype(np.intp),
        num_threshold=a["num_threshold"].astype(np.float64),
        missing_go_to_left=a["missing_go_to_left"].astype(bool),
        left=a["left"].astype(np.intp),
        right=a["right"].astype(np.intp),
        is_leaf=a["is_leaf"].astype(bool),
        value=a["value"].astype(np.float64),
        tree_start=a["tree_start"].astype(np.intp),
        baseline=float(arrays[f"{prefix}_baseline"][0]),
    )


def load(blob: bytes) -> ServingModel:
    """The ServingModel in `blob`; ArtifactError if it is not an artifact of FORMAT_VERSION."""
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise ArtifactError(f"not a model artifact: {exc}") from None
    version = int(arrays["format_version"]) if "format_version" in arrays else None
    if version != FORMAT_VERSION:
        raise ArtifactError(f"artifact format {version}, this runtime reads format {FORMAT_VERSION}")
    kind = str(arrays.get("kind"))
    try:
        if kind == "logreg":
            missing = [n for n in LINEAR_ARRAYS if n not in arrays]
            if missing:
                raise ArtifactError(f"artifact lacks {missing}")
            trees = (None, None)
        elif kind == "hgb":
            width = len(arrays["feature_names"])
            trees = (_trees(arrays, "clf", width), _trees(arrays, "reg", width))
        else:
            raise ArtifactError(f"unknown model kind {kind!r}")
    except KeyError as exc:
        raise ArtifactError(f"artifact lacks {exc}") from None
    return ServingModel(kind, tuple(str(n) for n in arrays["feature_names"]), version, arrays, *trees)
