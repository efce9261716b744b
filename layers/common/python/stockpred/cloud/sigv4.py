"""SigV4 (AWS Signature Version 4) as botocore computes it for every service but S3: the signing
key, the canonical request and the signature, written out once for the two places that cannot
afford botocore's AWSRequest on every call: the fan-out's `@connections` signer
(stockpred.realtime.connections_api) and devstack's check of incoming signatures (devstack/sigv4.py).
Tests hold both to botocore's own SigV4Auth.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Sequence
from urllib.parse import quote

from botocore.utils import normalize_url_path

ALGORITHM = "AWS4-HMAC-SHA256"


@functools.lru_cache(maxsize=32)
def signing_key(secret_key: str, day: str, region: str, service: str) -> bytes:
    """HMAC(HMAC(HMAC(HMAC("AWS4" + secret, day), region), service), "aws4_request"): the same
    for a whole day, so kept."""
    key = ("AWS4" + secret_key).encode()
    for part in (day, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def header_value(values: Sequence[str]) -> str:
    """A signed header's canonical value: each value whitespace-collapsed, several comma-joined."""
    return ",".join(" ".join(value.split()) for value in values)


def canonical_request(method: str, path: str, query: str, headers: Sequence[tuple[str, str]],
                      payload_hash: str) -> str:
    """The canonical request: the path with its dot segments resolved, URI-encoded once more; the
    query's pairs sorted as sent; `headers` as (lower-case name, canonical value) pairs in name
    order (header_value makes a value canonical)."""
    pairs = sorted(pair.partition("=")[::2] for pair in query.split("&")) if query else []
    return "\n".join((method.upper(), quote(normalize_url_path(path), safe="/~"),
                      "&".join(f"{k}={v}" for k, v in pairs),
                      "".join(f"{name}:{value}\n" for name, value in headers),
                      ";".join(name for name, _ in headers), payload_hash))


def scope(amz_date: str, region: str, service: str) -> str:
    return f"{amz_date[:8]}/{region}/{service}/aws4_request"


def signature(secret_key: str, amz_date: str, region: str, service: str, canonical: str) -> str:
    """The hex signature of a canonical request made at `amz_date` (20261124T190102Z)."""
    string_to_sign = "\n".join((ALGORITHM, amz_date, scope(amz_date, region, service),
                                hashlib.sha256(canonical.encode()).hexdigest()))
    return hmac.new(signing_key(secret_key, amz_date[:8], region, service), string_to_sign.encode(),
                    hashlib.sha256).hexdigest()
