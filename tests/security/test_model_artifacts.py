"""Finding 2: whoever can write the model bucket must not be able to run code in the predict function.

The attacker writes a pickle whose unpickling runs a command, as `model.npz` and as the old
`model.joblib`, with metadata carrying its own sha256 (the old check trusted that), and moves the
`latest` pointer to it. Loading must refuse it without executing anything: the artifact is read
with numpy's allow_pickle=False and only plain arrays are accepted.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path

import boto3
import pytest

from stockml import artifact
from stockml.registry import ArtifactRejected, ModelRegistry, OutdatedArtifact


class Payload:
    """Unpickling this creates the marker file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def s3(stack):
    client = boto3.client("s3", endpoint_url=stack["AWS_ENDPOINT_URL"], region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test")
    client.create_bucket(Bucket="attacker-writable-models")
    return client


def _plant(s3, symbol: str, version: str, name: str, blob: bytes, format_version: int) -> None:
    base = f"models/{symbol}/{version}"
    import sklearn

    # Everything the old loader checked before joblib.load: its own hash and the sklearn version.
    meta = {"symbol": symbol, "version": version, "format_version": format_version,
            "sha256": hashlib.sha256(blob).hexdigest(), "sklearn_version": sklearn.__version__,
            "features": [], "record": {"edge": False}}
    s3.put_object(Bucket="attacker-writable-models", Key=f"{base}/{name}", Body=blob)
    s3.put_object(Bucket="attacker-writable-models", Key=f"{base}/metadata.json", Body=json.dumps(meta))
    s3.put_object(Bucket="attacker-writable-models", Key=f"models/{symbol}/latest.json",
                  Body=json.dumps({"version": version}))


@pytest.mark.parametrize("name,format_version,refusal", [
    ("model.npz", artifact.FORMAT_VERSION, ArtifactRejected),   # a pickle posing as the artifact
    ("model.joblib", None, OutdatedArtifact),                   # the old format, with its own hash
])
def test_a_planted_pickle_is_refused_and_never_executed(s3, tmp_path, name, format_version, refusal):
    marker = tmp_path / "pwned"
    _plant(s3, "EVIL", "v1", name, pickle.dumps(Payload(marker)), format_version)
    registry = ModelRegistry(s3, "attacker-writable-models")
    with pytest.raises(refusal):
        registry.latest("EVIL")
    assert not marker.exists(), "the planted pickle ran"


def test_an_npz_holding_object_arrays_is_refused_without_unpickling(s3, tmp_path):
    import io

    import numpy as np

    marker = tmp_path / "pwned"
    buf = io.BytesIO()
    np.savez(buf, format_version=np.array(artifact.FORMAT_VERSION),
             payload=np.array([Payload(marker)], dtype=object))
    _plant(s3, "EVIL2", "v1", "model.npz", buf.getvalue(), artifact.FORMAT_VERSION)
    with pytest.raises(ArtifactRejected):
        ModelRegistry(s3, "attacker-writable-models").latest("EVIL2")
    assert not marker.exists(), "an object array was unpickled"
