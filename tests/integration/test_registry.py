"""Model registry on moto's S3: round trip, and an artifact that does not match is refused."""

import json
import uuid

import boto3
import numpy as np
import pytest

from stockml import artifact
from stockml.features import frame_from_bars
from stockml.models import make_model, training_rows
from stockml.registry import ArtifactRejected, ModelNotFound, ModelRegistry, OutdatedArtifact
from stockml.sizing import SizingRule
from stockpred.market.sample_data import load_series


@pytest.fixture
def registry(stack):
    s3 = boto3.client("s3", endpoint_url=stack["AWS_ENDPOINT_URL"], region_name="us-east-1")
    bucket = f"models-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    return ModelRegistry(s3, bucket)


@pytest.fixture(scope="module")
def fitted():
    rows = training_rows(frame_from_bars(load_series("SPX")[-900:]))
    model = make_model("logreg").fit(rows.X, rows.direction, rows.next_return)
    return model, rows.X[-20:]


def metadata(symbol="SPX"):
    return {"symbol": symbol, "kind": "logreg", "trained_at": "2026-11-24T09:00:00Z",
            "training_window": {"from": "2015-06-01", "to": "2018-12-28"}, "features": [],
            "params": {}, "metrics": {}, "volatility": {"kind": "naive", "params": {}},
            "sizing": SizingRule().to_dict()}


def test_round_trip_predicts_identically_and_keeps_metadata(registry, fitted):
    model, X = fitted
    meta = registry.publish(artifact.export(model), metadata())
    assert len(meta["sha256"]) == 64 and meta["format_version"] == artifact.FORMAT_VERSION
    assert meta["features"] == list(model.feature_names)
    key = f"models/SPX/{meta['version']}/model.npz"
    assert registry.s3.get_object(Bucket=registry.bucket, Key=key)["Body"].read() == artifact.export(model)
    fresh = ModelRegistry(registry.s3, registry.bucket)
    loaded = fresh.latest("SPX")
    assert loaded.version == meta["version"]
    assert loaded.metadata["training_window"] == {"from": "2015-06-01", "to": "2018-12-28"}
    for a, b in zip(model.predict(X), loaded.model.predict(X), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    assert registry.publish(model, metadata())["sha256"] == meta["sha256"]


def test_a_tampered_artifact_is_refused(registry, fitted):
    meta = registry.publish(fitted[0], metadata())
    key = f"models/SPX/{meta['version']}/model.npz"
    blob = registry.s3.get_object(Bucket=registry.bucket, Key=key)["Body"].read()
    registry.s3.put_object(Bucket=registry.bucket, Key=key, Body=blob[:-1] + bytes([blob[-1] ^ 1]))
    with pytest.raises(ArtifactRejected, match="sha256"):
        ModelRegistry(registry.s3, registry.bucket).latest("SPX")


def test_another_artifact_format_is_refused(registry, fitted):
    meta = registry.publish(fitted[0], metadata())
    key = f"models/SPX/{meta['version']}/metadata.json"
    registry.s3.put_object(Bucket=registry.bucket, Key=key,
                           Body=json.dumps({**meta, "format_version": 0}).encode())
    with pytest.raises(OutdatedArtifact, match="format 0"):
        ModelRegistry(registry.s3, registry.bucket).latest("SPX")


def test_a_model_trained_before_sizing_is_outdated_so_it_is_retrained(registry, fitted):
    """Every prediction must say how much risk to take: a model without a volatility model and a
    sizing rule in its metadata is refused as outdated, which the predict path retrains."""
    old = {k: v for k, v in metadata().items() if k not in ("volatility", "sizing")}
    registry.publish(fitted[0], old)
    with pytest.raises(OutdatedArtifact, match="before volatility forecasts"):
        ModelRegistry(registry.s3, registry.bucket).latest("SPX")


def test_a_model_saved_before_numpy_artifacts_is_refused_unread(registry):
    """A joblib-era version (model.joblib, no format_version) is never unpickled: OutdatedArtifact."""
    version = "20260101T000000Z-0123456789"
    registry.s3.put_object(Bucket=registry.bucket, Key=f"models/SPX/{version}/model.joblib",
                           Body=b"\x80\x04.")
    registry.s3.put_object(Bucket=registry.bucket, Key=f"models/SPX/{version}/metadata.json",
                           Body=json.dumps({**metadata(), "version": version, "sha256": "0" * 64,
                                            "sklearn_version": "1.9.1"}).encode())
    registry.s3.put_object(Bucket=registry.bucket, Key="models/SPX/latest.json",
                           Body=json.dumps({"version": version}).encode())
    with pytest.raises(OutdatedArtifact):
        registry.latest("SPX")


def test_an_artifact_for_other_features_is_refused(registry, fitted):
    meta = registry.publish(fitted[0], metadata())
    key = f"models/SPX/{meta['version']}/metadata.json"
    registry.s3.put_object(Bucket=registry.bucket, Key=key,
                           Body=json.dumps({**meta, "features": ["ret_1"]}).encode())
    with pytest.raises(ArtifactRejected, match="features"):
        ModelRegistry(registry.s3, registry.bucket).latest("SPX")


def test_no_model_is_model_not_found(registry):
    with pytest.raises(ModelNotFound):
        registry.latest("NOPE")
