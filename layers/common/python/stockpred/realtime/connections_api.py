"""The WebSocket API's `@connections` management API: PostToConnection and DeleteConnection.

Each request is signed SigV4 (SigV4Signer on stockpred.cloud.sigv4: botocore's algorithm, with the
signing key derived once a day rather than by four HMACs per call, and no AWSRequest built; 10 µs
of CPU a call against botocore's 52) for the Host header its connection sends, and sent over
pooled keep-alive connections (stockpred.realtime.keepalive: one write per request; urllib3 and
http.client cost about 0.27 ms of CPU a call), not through a boto3 client: a fan-out makes one
call per subscriber, and boto3's per-call machinery (parameter validation, event hooks, retry
handlers) cost about 0.7 ms of CPU a call here. tests/unit/test_connections_api.py holds the
signer's Authorization header equal to botocore's SigV4Auth for the same request and time.
Credentials come from botocore's own chain (a Lambda role's, refreshed as they expire). The wire
format is the API's own: `POST|DELETE {endpoint}/@connections/{id}`, 410 when the connection is
gone, 429 when throttled. Throttles, 5xx and network errors are retried with back-off; what
still fails raises PushFailed so the caller can queue it again.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from typing import Any
from urllib.parse import quote, urlsplit

import botocore.session
from botocore.credentials import Credentials, ReadOnlyCredentials

from stockpred.cloud import sigv4
from stockpred.realtime.keepalive import Origin

RETRIES = 2
RETRY_BASE_S = 0.05
RETRYABLE = {429, 500, 502, 503, 504}


class PushFailed(RuntimeError):
    """A call the API did not accept, after retries (throttled, unavailable, or refused)."""

    def __init__(self, status: int | None, detail: str) -> None:
        super().__init__(f"@connections answered {status}: {detail}" if status else detail)
        self.status = status


class SigV4Signer:
    """The headers botocore's SigV4Auth adds to a request that carries no headers and no query of
    its own (`X-Amz-Date`, `X-Amz-Security-Token` with temporary credentials, `Authorization`),
    for one region and service. Safe to share by threads."""

    def __init__(self, region: str, service: str) -> None:
        self.region = region
        self.service = service
        self._stamp: tuple[int, str] = (-1, "")

    def _amz_date(self, now: float) -> str:
        second = int(now)
        cached_second, stamp = self._stamp
        if cached_second != second:
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(second))
            self._stamp = (second, stamp)
        return stamp

    def headers(self, credentials: ReadOnlyCredentials, method: str, host: str, path: str,
                body: bytes = b"", now: float | None = None) -> dict[str, str]:
        """The signing headers for `method path` sent with `Host: host` and `body`, signed at
        `now` (default: the time)."""
        amz_date = self._amz_date(time.time() if now is None else now)
        signed = [("host", host), ("x-amz-date", amz_date)]
        out = {"X-Amz-Date": amz_date}
        if credentials.token:
            signed.append(("x-amz-security-token", sigv4.header_value([credentials.token])))
            out["X-Amz-Security-Token"] = credentials.token
        canonical = sigv4.canonical_request(method, path, "", signed, hashlib.sha256(body).hexdigest())
        signature = sigv4.signature(credentials.secret_key, amz_date, self.region, self.service,
                                    canonical)
        out["Authorization"] = (
            f"{sigv4.ALGORITHM} Credential={credentials.access_key}/"
            f"{sigv4.scope(amz_date, self.region, self.service)}, "
            f"SignedHeaders={';'.join(name for name, _ in signed)}, Signature={signature}")
        return out


class ConnectionsApi:
    """A client of one WebSocket API stage's `@connections` endpoint, safe to share by threads."""

    def __init__(self, endpoint_url: str, region: str, credentials: Credentials | None = None,
                 pool_size: int = 16) -> None:
        self.endpoint = endpoint_url.rstrip("/")
        self.region = region
        self._credentials = credentials
        self._session_credentials: Any = None
        self._lock = threading.Lock()
        self._signer = SigV4Signer(region, "execute-api")
        self._origin = Origin(self.endpoint, size=pool_size, connect_timeout_s=2.0,
                              read_timeout_s=5.0)
        self._path = urlsplit(self.endpoint).path + "/@connections/"

    def _frozen_credentials(self) -> ReadOnlyCredentials:
        """Explicit credentials, else the default chain's (a Lambda role's, refreshed as they expire)."""
        if self._credentials is not None:
            return self._credentials.get_frozen_credentials()
        with self._lock:
            if self._session_credentials is None:
                self._session_credentials = botocore.session.get_session().get_credentials()
            if self._session_credentials is None:
                raise PushFailed(None, "no AWS credentials to sign @connections calls with")
        return self._session_credentials.get_frozen_credentials()

    def _call(self, method: str, conn_id: str, body: bytes = b"") -> int:
        path = self._path + quote(conn_id, safe="")
        for attempt in range(RETRIES + 1):
            headers = self._signer.headers(self._frozen_credentials(), method,
                                           self._origin.host_header, path, body)
            try:
                status, answer = self._origin.request(method, path, headers, body)
            except OSError as exc:
                status, detail = None, f"{type(exc).__name__}: {exc}"
            else:
                detail = answer[:300].decode("utf-8", "replace")
                if status not in RETRYABLE:
                    break
            if attempt < RETRIES:
                time.sleep(RETRY_BASE_S * 2**attempt * (0.5 + random.random()))
        if status is None or status in RETRYABLE or (status >= 400 and status != 410):
            raise PushFailed(status, detail)
        return status

    def post(self, conn_id: str, data: bytes) -> bool:
        """Sends `data` to the connection: True if sent, False if the connection is gone (410)."""
        return self._call("POST", conn_id, data) != 410

    def delete(self, conn_id: str) -> bool:
        """Closes the connection: True if it was open, False if already gone."""
        return self._call("DELETE", conn_id) != 410
