"""Model registry on S3: a joblib artifact and its metadata per (symbol, version).

Layout in the bucket:
    models/<SYMBOL>/<version>/model.joblib
    models/<SYMBOL>/<version>/metadata.json   symbol, version, kind, trained_at, training window,
                                              features, params, metrics, sklearn_version, sha256
    models/<SYMBOL>/latest.json               {"version": ...}

An artifact is loaded only after its sha256 and the scikit-learn version it was saved with have
been checked against the metadata; a mismatch raises ArtifactRejected and nothing is unpickled.
A warm process keeps what it loaded and re-reads the `latest` pointer at most every
`pointer_ttl_s` seconds.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
from dataclasses import dataclass
from typing import Any

import joblib
import sklearn


class ArtifactRejected(RuntimeError):
    """The artifact does not match its metadata (hash or scikit-learn version): never used."""


class ModelNotFound(LookupError):
    """No model is published for this symbol (or its files are gone from the bucket)."""


@dataclass(frozen=True)
class LoadedModel:
    model: Any
    metadata: dict[str, Any]

    @property
    def version(self) -> str:
        return self.metadata["version"]


def _prefix(symbol: str) -> str:
    return f"models/{symbol}"


class ModelRegistry:
    def __init__(self, s3: Any, bucket: str, pointer_ttl_s: float = 60.0) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.pointer_ttl_s = pointer_ttl_s
        self._loaded: dict[str, LoadedModel] = {}
        self._pointer_checked: dict[str, float] = {}
        self._lock = threading.Lock()

    def publish(self, model: Any, metadata: dict[str, Any]) -> dict[str, Any]:
        """Stores the artifact and its metadata, then moves `latest` to it. Returns the metadata."""
        buf = io.BytesIO()
        joblib.dump(model, buf, compress=3)
        blob = buf.getvalue()
        sha = hashlib.sha256(blob).hexdigest()
        symbol = metadata["symbol"]
        version = f"{metadata['trained_at'].replace('-', '').replace(':', '')[:15]}Z-{sha[:10]}"
        meta = {**metadata, "version": version, "sha256": sha, "size_bytes": len(blob),
                "sklearn_version": sklearn.__version__}
        base = f"{_prefix(symbol)}/{version}"
        self.s3.put_object(Bucket=self.bucket, Key=f"{base}/model.joblib", Body=blob)
        self.s3.put_object(Bucket=self.bucket, Key=f"{base}/metadata.json",
                           Body=json.dumps(meta, indent=2).encode(), ContentType="application/json")
        self.s3.put_object(Bucket=self.bucket, Key=f"{_prefix(symbol)}/latest.json",
                           Body=json.dumps({"version": version}).encode(),
                           ContentType="application/json")
        with self._lock:
            self._loaded[symbol] = LoadedModel(model, meta)
            self._pointer_checked[symbol] = time.monotonic()
        return meta

    def _get(self, key: str) -> bytes:
        try:
            return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except self.s3.exceptions.NoSuchKey:
            raise ModelNotFound(key) from None
        except self.s3.exceptions.NoSuchBucket:
            raise ModelNotFound(f"bucket {self.bucket}") from None

    def latest_version(self, symbol: str) -> str:
        return json.loads(self._get(f"{_prefix(symbol)}/latest.json"))["version"]

    def load(self, symbol: str, version: str) -> LoadedModel:
        """Fetches and verifies one version; ArtifactRejected if it does not match its metadata."""
        base = f"{_prefix(symbol)}/{version}"
        meta = json.loads(self._get(f"{base}/metadata.json"))
        blob = self._get(f"{base}/model.joblib")
        digest = hashlib.sha256(blob).hexdigest()
        if digest != meta.get("sha256"):
            raise ArtifactRejected(f"{symbol} model {version}: sha256 {digest[:12]}... does not "
                                   f"match the metadata's {str(meta.get('sha256'))[:12]}...")
        if meta.get("sklearn_version") != sklearn.__version__:
            raise ArtifactRejected(f"{symbol} model {version} was saved with scikit-learn "
                                   f"{meta.get('sklearn_version')}, this runtime has {sklearn.__version__}")
        return LoadedModel(joblib.load(io.BytesIO(blob)), meta)

    def latest(self, symbol: str) -> LoadedModel:
        """The current model, from memory while the `latest` pointer is fresh enough."""
        with self._lock:
            loaded = self._loaded.get(symbol)
            fresh = time.monotonic() - self._pointer_checked.get(symbol, 0) < self.pointer_ttl_s
        if loaded and fresh:
            return loaded
        version = self.latest_version(symbol)
        if not (loaded and loaded.version == version):
            loaded = self.load(symbol, version)
        with self._lock:
            self._loaded[symbol] = loaded
            self._pointer_checked[symbol] = time.monotonic()
        return loaded

    def forget(self, symbol: str | None = None) -> None:
        with self._lock:
            if symbol is None:
                self._loaded.clear()
                self._pointer_checked.clear()
            else:
                self._loaded.pop(symbol, None)
                self._pointer_checked.pop(symbol, None)
