"""IAM for devstack's AWS-side APIs: only callers holding the stack's credentials get through.

On AWS, Lambda's Invoke API and a WebSocket API's `@connections` management API answer only
requests signed (SigV4) by a principal IAM allows. Locally there is one principal, the stack:
its access key id and secret key are made per stack (`Stack.access_key_id`, 0600 files under
STOCKPRED_HOME) and handed to the functions, the tests and moto's Step Functions engine
(devstack/moto_server.py) through AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.

A request is accepted only if its `Authorization` header is an `AWS4-HMAC-SHA256` signature by
that access key whose signature botocore recomputes identically from the request as received
(method, path, query, the signed headers, the body's SHA-256) with the stack's secret key, and
whose X-Amz-Date is within 15 minutes of now. Anything else is a 403 shaped as AWS's:
MissingAuthenticationTokenException, IncompleteSignatureException, UnrecognizedClientException,
InvalidSignatureException.

The check is written out on stockpred.cloud.sigv4 (the fan-out's signer uses the same): botocore's
signer builds a whole AWSRequest for it, which cost the `@connections` endpoint a third of its
time in a fan-out. tests/security/test_realtime_and_local.py
holds it to botocore's own signatures.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import web

from stockpred.cloud import sigv4

log = logging.getLogger("devstack.iam")

MAX_SKEW = dt.timedelta(minutes=15)
_AUTH = re.compile(r"^AWS4-HMAC-SHA256\s+Credential=([^,\s]+),\s*SignedHeaders=([^,\s]+),"
                   r"\s*Signature=([0-9a-f]{64})$")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Refused(Exception):
    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message


def _refusal(exc: Refused) -> web.Response:
    return web.Response(status=403, text=json.dumps({"Type": "User", "message": exc.message}),
                        content_type="application/json",
                        headers={"x-amzn-ErrorType": exc.error_type})


def _amz_date(stamp: str) -> dt.datetime | None:
    """`20261124T190102Z` as a UTC datetime, or None (strptime costs more than the rest here)."""
    if len(stamp) != 16 or stamp[8] != "T" or stamp[15] != "Z" or not (stamp[:8] + stamp[9:15]).isdigit():
        return None
    try:
        return dt.datetime(int(stamp[:4]), int(stamp[4:6]), int(stamp[6:8]), int(stamp[9:11]),
                           int(stamp[11:13]), int(stamp[13:15]), tzinfo=dt.UTC)
    except ValueError:
        return None


class Guard:
    """Checks SigV4 signatures against one access key id and secret key."""

    def __init__(self, access_key_id: str | None, secret_access_key: str | None) -> None:
        self.access_key_id = access_key_id or ""
        self.secret_access_key = secret_access_key or ""
        if not self.access_key_id or not self.secret_access_key:
            log.warning("no AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY: the Invoke and @connections "
                        "APIs refuse every caller")

    def check(self, method: str, url: str, headers: list[tuple[str, str]], body: bytes,
              now: dt.datetime | None = None) -> None:
        """Raises Refused unless the request is signed by the stack's credentials."""
        values: dict[str, list[str]] = {}
        for name, value in headers:
            values.setdefault(name.lower(), []).append(value)
        auth = (values.get("authorization") or [""])[0].strip()
        if not auth:
            raise Refused("MissingAuthenticationTokenException", "Missing Authentication Token")
        m = _AUTH.match(auth)
        if not m:
            raise Refused("IncompleteSignatureException",
                          "Authorization header requires Credential, SignedHeaders and Signature")
        credential, signed, signature = m.groups()
        parts = credential.split("/")
        if len(parts) != 5 or parts[4] != "aws4_request":
            raise Refused("IncompleteSignatureException", "Malformed credential scope")
        key_id, day, region, service, _ = parts
        if not self.access_key_id or not hmac.compare_digest(key_id.encode(),
                                                             self.access_key_id.encode()):
            raise Refused("UnrecognizedClientException",
                          "The security token included in the request is invalid.")
        signed_names = signed.split(";")
        if "host" not in signed_names or "x-amz-date" not in signed_names:
            raise Refused("IncompleteSignatureException", "host and x-amz-date must be signed")
        missing = [n for n in signed_names if n not in values]
        if missing:
            raise Refused("IncompleteSignatureException", f"Signed header(s) missing: {missing}")
        stamp = values["x-amz-date"][0]
        when = _amz_date(stamp)
        now = now or dt.datetime.now(dt.UTC)
        if when is None:
            raise Refused("IncompleteSignatureException", "Malformed X-Amz-Date")
        if abs(now - when) > MAX_SKEW or day != stamp[:8]:
            raise Refused("InvalidSignatureException", "Signature expired or not yet valid")
        payload_hash = hashlib.sha256(body).hexdigest()
        claimed = values.get("x-amz-content-sha256")
        if claimed and claimed[0] != payload_hash:
            raise Refused("InvalidSignatureException", "X-Amz-Content-SHA256 does not match the body")

        target = urlsplit(url)
        canonical = sigv4.canonical_request(
            method, target.path, target.query,
            [(name, sigv4.header_value(values[name])) for name in sorted(set(signed_names))],
            payload_hash)
        expected = sigv4.signature(self.secret_access_key, stamp, region, service, canonical)
        if not hmac.compare_digest(expected, signature):
            raise Refused("InvalidSignatureException",
                          "The request signature we calculated does not match the signature you "
                          "provided.")

    def protect(self, handler: Handler) -> Handler:
        """`handler`, answered only for requests the stack's credentials signed."""

        async def guarded(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            url = f"{request.scheme}://{request.host}{request.raw_path}"
            try:
                self.check(request.method, url, list(request.headers.items()), body)
            except Refused as exc:
                log.warning("refused %s %s: %s", request.method, request.path, exc.error_type)
                return _refusal(exc)
            return await handler(request)

        return guarded
