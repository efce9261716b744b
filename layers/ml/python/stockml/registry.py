"""Model registry on S3: a numpy artifact and its metadata per (symbol, version).

Layout in the bucket:
    models/<SYMBOL>/<version>/model.npz       stockml.artifact: arrays only, no pickle
    models/<SYMBOL>/<version>/metadata.json   symbol, version, kind, trained_at, training window,
                                              features, params, metrics, format_version, sha256
    models/<SYMBOL>/latest.json               {"version": ...}
    models/<SYMBOL>/trials.json               every configuration evaluated and every judgement of
                                              the edge (stockml.trials), across versions
    universes/<NAME>/ranking.json             a universe's latest ranking (stockml.universe_training):
                                              the day's rank of every member and the model's record
    universes/<NAME>/rankings/<DATE>.json     each day's ranking, kept
    universes/<NAME>/trials.json              the ranker's configurations evaluated and judgements

An artifact is loaded only after its sha256, its format version and its feature list have been
checked against the metadata and this runtime; a mismatch raises ArtifactRejected (OutdatedArtifact
for an artifact of another format, e.g. one saved before this format existed). Loading needs numpy
alone. A warm process keeps what it loaded and re-reads the `latest` pointer at most every
`pointer_ttl_s` seconds.
"""

from __future__ import annotations

import functools
import hashlib
import json
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stockml import artifact
from stockml.artifact import ServingModel
from stockml.features import FEATURE_NAMES
from stockpred.cloud import aws

if TYPE_CHECKING:
    from stockml.models import SignalModel

ARTIFACT_NAME = "model.npz"


class ArtifactRejected(RuntimeError):
    """The artifact does not match its metadata or this runtime (hash, format, features): never used."""


class OutdatedArtifact(ArtifactRejected):
    """The artifact was saved in another format than this runtime reads: retrain to replace it."""


class ModelNotFound(LookupError):
    """No model is published for this symbol (or its files are gone from the bucket)."""


@dataclass(frozen=True)
class LoadedModel:
    model: ServingModel
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

    def publish(self, model: bytes | SignalModel, metadata: dict[str, Any]) -> dict[str, Any]:
        """Stores the artifact (exported bytes, or a fitted SignalModel to export) and its metadata,
        then moves `latest` to it. Returns the stored metadata."""
        blob = model if isinstance(model, bytes) else artifact.export(model)
        serving = artifact.load(blob)
        sha = hashlib.sha256(blob).hexdigest()
        symbol = metadata["symbol"]
        version = f"{metadata['trained_at'].replace('-', '').replace(':', '')[:15]}Z-{sha[:10]}"
        meta = {**metadata, "version": version, "sha256": sha, "size_bytes": len(blob),
                "format_version": serving.format_version, "features": list(serving.feature_names)}
        base = f"{_prefix(symbol)}/{version}"
        self.s3.put_object(Bucket=self.bucket, Key=f"{base}/{ARTIFACT_NAME}", Body=blob)
        self.s3.put_object(Bucket=self.bucket, Key=f"{base}/metadata.json",
                           Body=json.dumps(meta, indent=2).encode(), ContentType="application/json")
        self.s3.put_object(Bucket=self.bucket, Key=f"{_prefix(symbol)}/latest.json",
                           Body=json.dumps({"version": version}).encode(),
                           ContentType="application/json")
        with self._lock:
            self._loaded[symbol] = LoadedModel(serving, meta)
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
        name = f"{symbol} model {version}"
        if meta.get("format_version") != artifact.FORMAT_VERSION:
            raise OutdatedArtifact(f"{name} is in artifact format {meta.get('format_version')}, "
                                   f"this runtime reads format {artifact.FORMAT_VERSION}: retrain it")
        if "volatility" not in meta or "sizing" not in meta:
            raise OutdatedArtifact(f"{name} was trained before volatility forecasts and sizing: "
                                   "retrain it")
        blob = self._get(f"{base}/{ARTIFACT_NAME}")
        digest = hashlib.sha256(blob).hexdigest()
        if digest != meta.get("sha256"):
            raise ArtifactRejected(f"{name}: sha256 {digest[:12]}... does not match the "
                                   f"metadata's {str(meta.get('sha256'))[:12]}...")
        try:
            model = artifact.load(blob)
        except artifact.ArtifactError as exc:
            raise ArtifactRejected(f"{name}: {exc}") from None
        if model.feature_names != FEATURE_NAMES or list(model.feature_names) != meta.get("features"):
            raise ArtifactRejected(f"{name} was trained on other features than this runtime computes")
        return LoadedModel(model, meta)

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

    def trials(self, symbol: str) -> dict[str, Any] | None:
        """The symbol's trial record (stockml.trials), None before its first evaluation."""
        try:
            return json.loads(self._get(f"{_prefix(symbol)}/trials.json"))
        except ModelNotFound:
            return None

    def save_trials(self, symbol: str, trials: dict[str, Any]) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=f"{_prefix(symbol)}/trials.json",
                           Body=json.dumps(trials, indent=2).encode(), ContentType="application/json")

    def forget(self, symbol: str | None = None) -> None:
        with self._lock:
            if symbol is None:
                self._loaded.clear()
                self._pointer_checked.clear()
            else:
                self._loaded.pop(symbol, None)
                self._pointer_checked.pop(symbol, None)


@functools.cache
def stack_registry() -> ModelRegistry:
    """The stack's registry, one per process so a warm instance keeps the models it loaded: its
    model bucket through its S3 client. Callers look it up here at call time
    (`registry.stack_registry()`), so a test replaces it in one place."""
    return ModelRegistry(aws.client("s3"), aws.model_bucket())


class RankingNotFound(LookupError):
    """No ranking is published for this universe yet."""


class UniverseRankings:
    """Universe rankings in the model bucket: written by the training job, read by the API; a warm
    process keeps one at most `ttl_s` seconds."""

    def __init__(self, s3: Any, bucket: str, ttl_s: float = 60.0) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.ttl_s = ttl_s
        self._read: dict[str, tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def publish(self, name: str, ranking: dict[str, Any]) -> None:
        body = json.dumps(ranking, indent=1).encode()
        for key in (f"universes/{name}/rankings/{ranking['as_of']}.json", f"universes/{name}/ranking.json"):
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/json")
        with self._lock:
            self._read[name] = (time.monotonic(), ranking)

    def trials(self, name: str) -> dict[str, Any] | None:
        """The universe's trial record (stockml.trials), None before its first evaluation."""
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=f"universes/{name}/trials.json")["Body"].read()
        except (self.s3.exceptions.NoSuchKey, self.s3.exceptions.NoSuchBucket):
            return None
        return json.loads(body)

    def save_trials(self, name: str, trials: dict[str, Any]) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=f"universes/{name}/trials.json",
                           Body=json.dumps(trials, indent=2).encode(), ContentType="application/json")

    def latest(self, name: str) -> dict[str, Any]:
        """The universe's latest ranking; RankingNotFound before its first training."""
        with self._lock:
            read = self._read.get(name)
        if read and time.monotonic() - read[0] < self.ttl_s:
            return read[1]
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=f"universes/{name}/ranking.json")["Body"].read()
        except (self.s3.exceptions.NoSuchKey, self.s3.exceptions.NoSuchBucket):
            raise RankingNotFound(name) from None
        ranking = json.loads(body)
        with self._lock:
            self._read[name] = (time.monotonic(), ranking)
        return ranking
