"""The WebSocket API's `@connections` management API: PostToConnection and DeleteConnection.

Each request is signed SigV4 by botocore's own signer and sent over one pooled keep-alive
urllib3 pool, not through a boto3 client: a fan-out makes one call per subscriber, and boto3's
per-call machinery (parameter validation, event hooks, retry handlers) cost about 0.7 ms of CPU a
call here against about 0.1 ms for signing and sending (bench/fanout.py prints both). The wire
format is the API's own: `POST|DELETE {endpoint}/@connections/{id}`, 410 when the connection is
gone, 429 when throttled. Throttles, 5xx and network errors are retried with back-off; what still
fails raises PushFailed so the caller can queue it again.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any
from urllib.parse import quote

import botocore.session
import urllib3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

RETRIES = 2
RETRY_BASE_S = 0.05
RETRYABLE = {429, 500, 502, 503, 504}


class PushFailed(RuntimeError):
    """A call the API did not accept, after retries (throttled, unavailable, or refused)."""

    def __init__(self, status: int | None, detail: str) -> None:
        super().__init__(f"@connections answered {status}: {detail}" if status else detail)
        self.status = status


class ConnectionsApi:
    """A client of one WebSocket API stage's `@connections` endpoint, safe to share by threads."""

    def __init__(self, endpoint_url: str, region: str, credentials: Credentials | None = None,
                 pool_size: int = 16) -> None:
        self.endpoint = endpoint_url.rstrip("/")
        self.region = region
        self._credentials = credentials
        self._session_credentials: Any = None
        self._lock = threading.Lock()
        self._pool = urllib3.PoolManager(num_pools=2, maxsize=pool_size, retries=False,
                                         timeout=urllib3.Timeout(connect=2.0, read=5.0))

    def _frozen_credentials(self) -> Any:
        """Explicit credentials, else the default chain's (a Lambda role's, refreshed as they expire)."""
        if self._credentials is not None:
            return self._credentials
        with self._lock:
            if self._session_credentials is None:
                self._session_credentials = botocore.session.get_session().get_credentials()
            if self._session_credentials is None:
                raise PushFailed(None, "no AWS credentials to sign @connections calls with")
        return self._session_credentials.get_frozen_credentials()

    def _call(self, method: str, conn_id: str, body: bytes = b"") -> int:
        url = f"{self.endpoint}/@connections/{quote(conn_id, safe='')}"
        for attempt in range(RETRIES + 1):
            request = AWSRequest(method=method, url=url, data=body)
            SigV4Auth(self._frozen_credentials(), "execute-api", self.region).add_auth(request)
            try:
                response = self._pool.request(method, url, body=body or None,
                                              headers=dict(request.headers.items()))
            except urllib3.exceptions.HTTPError as exc:
                status, detail = None, f"{type(exc).__name__}: {exc}"
            else:
                status, detail = response.status, response.data[:300].decode("utf-8", "replace")
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
