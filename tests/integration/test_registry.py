"""Model registry on moto's S3: round trip, and an artifact that does not match is refused."""

import json
import uuid

import boto3
import numpy as np
import pytest

from stockml.features import build_features, build_targets, frame_from_bars
from stockml.models import make_model
from stockml.registry import ArtifactRejected, ModelNotFound, ModelRegistry
from stockpred.sample_data import load_series


@pytest.fixture
def registry(stack):
    s3 = boto3.client("s3", endpoint_url=stack["AWS_ENDPOINT_URL"], region_name="us-east-1")
    bucket = f"models-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    return ModelRegistry(s3, bucket)


@pytest.fixture(scope="module")
def fitted():
    df = frame_from_bars(load_series("SPX")[-900:])
    X, y = build_features(df), build_targets(df)
    ok = X.notna().all(axis=1) & y["next_return"].notna()
    model = make_model("logreg").fit(X[ok], y.loc[ok, "direction"], y.loc[ok, "next_return"])
    return model, X[ok].tail(20)


def metadata(symbol="SPX"):
    return {"symbol": symbol, "kind": "logreg", "trained_at": "2026-11-24T09:00:00Z",
            "training_window": {"from": "2015-06-01", "to": "2018-12-28"}, "features": [],
            "params": {}, "metrics": {}}


def test_round_trip_predicts_identically_and_keeps_metadata(registry, fitted):
    model, X = fitted
    meta = registry.publish(model, metadata())
    assert len(meta["sha256"]) == 64 and meta["sklearn_version"]
    fresh = ModelRegistry(registry.s3, registry.bucket)
    loaded = fresh.latest("SPX")
    assert loaded.version == meta["version"]
    assert loaded.metadata["training_window"] == {"from": "2015-06-01", "to": "2018-12-28"}
    for a, b in zip(model.predict(X), loaded.model.predict(X), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_tampered_artifact_is_refused(registry, fitted):
    meta = registry.publish(fitted[0], metadata())
    key = f"models/SPX/{meta['version']}/model.joblib"
    blob = registry.s3.get_object(Bucket=registry.bucket, Key=key)["Body"].read()
    registry.s3.put_object(Bucket=registry.bucket, Key=key, Body=blob[:-1] + bytes([blob[-1] ^ 1]))
    with pytest.raises(ArtifactRejected, match="sha256"):
        ModelRegistry(registry.s3, registry.bucket).latest("SPX")


def test_another_sklearn_version_is_refused(registry, fitted):
    meta = registry.publish(fitted[0], metadata())
    key = f"models/SPX/{meta['version']}/metadata.json"
    registry.s3.put_object(Bucket=registry.bucket, Key=key,
                           Body=json.dumps({**meta, "sklearn_version": "0.24.2"}).encode())
    with pytest.raises(ArtifactRejected, match=r"scikit-learn 0\.24\.2"):
        ModelRegistry(registry.s3, registry.bucket).latest("SPX")


def test_no_model_is_model_not_found(registry):
    with pytest.raises(ModelNotFound):
        registry.latest("NOPE")
