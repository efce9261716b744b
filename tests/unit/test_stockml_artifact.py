"""stockml.artifact: numpy-only models predict what scikit-learn predicts, and refuse what is not theirs."""

import functools
import io
import zipfile

import numpy as np
import pytest

from stockml import artifact
from stockml.features import build_features, frame_from_bars
from stockml.models import MODEL_KINDS, SignalModel, make_model, training_rows
from stockpred.market.sample_data import available, load_series

pytestmark = pytest.mark.skipif(not available(), reason="sample data (arch package) not installed")

# Measured on SPX and IXIC (full history, every feature row): expected returns are bit-identical;
# probabilities differ by at most 1.1e-16 (numpy's 1/(1+exp(-x)) against scipy's expit).
RTOL, ATOL = 1e-9, 1e-12


@functools.cache
def fitted(symbol: str, kind: str) -> tuple[SignalModel, np.ndarray]:
    frame = frame_from_bars(load_series(symbol))
    rows = training_rows(frame)
    features = build_features(frame)
    return make_model(kind).fit(rows.X, rows.direction, rows.next_return), features[50:]


def sklearn_predict(model: SignalModel, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return model.classifier.predict_proba(X)[:, 1], model.regressor.predict(X)


@pytest.mark.parametrize("symbol", ["SPX", "IXIC"])
@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_serving_model_predicts_what_sklearn_predicts(symbol, kind):
    model, X = fitted(symbol, kind)
    serving = artifact.load(artifact.export(model))
    assert serving.kind == kind and serving.feature_names == model.feature_names
    assert serving.format_version == artifact.FORMAT_VERSION
    for ours, theirs in zip(serving.predict(X), sklearn_predict(model, X), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=RTOL, atol=ATOL)
    for ours, theirs in zip(serving.predict(X[-1:]), model.predict(X[-1:]), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=RTOL, atol=ATOL)


def test_trees_route_missing_values_and_threshold_ties_like_sklearn():
    model, X = fitted("SPX", "hgb")
    X = X[-400:].copy()
    X[::3, 0] = np.nan
    X[1::5, 7] = np.nan
    X[2::7] = np.nan
    root = model.classifier[-1]._predictors[0][0].nodes[0]
    X[4::9, root["feature_idx"]] = root["num_threshold"]
    serving = artifact.load(artifact.export(model))
    for ours, theirs in zip(serving.predict(X), sklearn_predict(model, X), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_export_is_plain_arrays_and_deterministic(kind):
    model, _ = fitted("SPX", kind)
    blob = artifact.export(model)
    assert blob == artifact.export(model)
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        names = zf.namelist()
        assert all(name.endswith(".npy") for name in names)
        for name in names:
            with zf.open(name) as f:
                assert np.lib.format.read_array(f, allow_pickle=False).dtype != object, name
    with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
        assert int(npz["format_version"]) == artifact.FORMAT_VERSION
        assert str(npz["kind"]) == kind


def test_serving_model_refuses_rows_of_the_wrong_width():
    model, X = fitted("SPX", "logreg")
    serving = artifact.load(artifact.export(model))
    with pytest.raises(ValueError, match="features"):
        serving.predict(X[:, :-1])


def _npz(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def test_load_refuses_other_formats_and_anything_that_is_not_an_artifact():
    model, _ = fitted("SPX", "logreg")
    with np.load(io.BytesIO(artifact.export(model)), allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    with pytest.raises(artifact.ArtifactError, match="format"):
        artifact.load(_npz(**{**arrays, "format_version": np.array(artifact.FORMAT_VERSION + 1)}))
    with pytest.raises(artifact.ArtifactError, match="format"):
        artifact.load(_npz(**{k: v for k, v in arrays.items() if k != "format_version"}))
    with pytest.raises(artifact.ArtifactError, match="lacks"):
        artifact.load(_npz(**{k: v for k, v in arrays.items() if k != "clf_coef"}))
    with pytest.raises(artifact.ArtifactError):
        artifact.load(_npz(**{**arrays, "kind": np.array({"a": 1}, dtype=object)}))
    with pytest.raises(artifact.ArtifactError):
        artifact.load(b"\x80\x04K\x01.")


def test_load_refuses_trees_that_point_outside_themselves():
    model, _ = fitted("SPX", "hgb")
    with np.load(io.BytesIO(artifact.export(model)), allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    inner = np.flatnonzero(~arrays["clf_is_leaf"].astype(bool))[0]
    for name, value in (("clf_left", 10_000), ("clf_feature_idx", len(arrays["feature_names"]))):
        broken = arrays[name].copy()
        broken[inner] = value
        with pytest.raises(artifact.ArtifactError, match="outside"):
            artifact.load(_npz(**{**arrays, name: broken}))
    with pytest.raises(artifact.ArtifactError, match="length"):
        artifact.load(_npz(**{**arrays, "reg_value": arrays["reg_value"][:-1]}))
