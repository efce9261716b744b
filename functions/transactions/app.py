"""Transactions service: the ledger's internal write endpoint and each user's own ledger."""

from __future__ import annotations

import hmac
import re
from typing import Any

from chalice import Chalice, Response

from stockpred import config, contracts
from stockpred.api.edge import ApiError, bearer_claims, install, json_body, json_response, query_int
from stockpred.cloud import secrets
from stockpred.trading import ledger

app = Chalice(app_name="transactions")
log = install(app, "transactions")

_ASSUMED_ROLE = re.compile(r"^arn:(aws[a-z-]*):sts::(\d{12}):assumed-role/([\w+=,.@-]+)/[\w+=,.@-]+$")
_ROLE = re.compile(r"^arn:(aws[a-z-]*):iam::(\d{12}):role/(?:[\w+=,.@/-]*/)?([\w+=,.@-]+)$")


def _role_of(arn: str) -> tuple[str, str, str] | None:
    """(partition, account, role name) of an IAM role ARN or of a session of that role."""
    match = _ASSUMED_ROLE.match(arn) or _ROLE.match(arn)
    return match.groups() if match else None  # type: ignore[return-value]


def iam_caller_allowed(context: Any, settings: config.Settings) -> bool:
    """Whether the request's IAM identity may write the ledger without the service token.

    `identity.userArn` is trusted only where API Gateway itself put it there: on AWS the /store
    route is AWS_IAM-protected, so API Gateway verifies the SigV4 signature and sets the caller's
    ARN, and the function may be invoked by API Gateway only. Locally nothing verifies anything
    (devstack never sets it, but a hand-made event to the Invoke API could), so in local mode it
    is ignored. Even on AWS the ARN must be one of SERVICE_ROLE_ARNS: being signed by *some*
    principal of the account is not enough.
    """
    if settings.local or not settings.service_role_arns or not isinstance(context, dict):
        return False
    identity = context.get("identity")
    arn = identity.get("userArn") if isinstance(identity, dict) else None
    if not isinstance(arn, str) or not arn:
        return False
    caller = _role_of(arn)
    for allowed in settings.service_role_arns:
        if arn == allowed or (caller is not None and caller == _role_of(allowed)):
            return True
    return False


def _service_caller() -> None:
    """Only other services write the ledger: IAM-signed on AWS by an expected role (see
    iam_caller_allowed), else the service token (its secret)."""
    request = app.current_request
    if iam_caller_allowed(request.context, config.load()):
        return
    given = request.headers.get("x-service-token")
    if not given:
        raise ApiError(401, "Service credentials required")
    expected = secrets.service_token()
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        raise ApiError(403, "Not allowed to write the ledger")


def _record(body: Any) -> dict[str, Any]:
    try:
        record = contracts.parse(contracts.TransactionRecord, body)
    except contracts.Invalid as exc:
        raise ApiError(400, f"Invalid input data: {exc}", details={"fields": exc.fields}) from None
    return {"user_id": record.user_id, "symbol": record.symbol, "quantity": record.quantity,
            "action": record.action, "price_cents": record.price_cents, "timestamp": record.timestamp}


@app.route("/api/transactions/store", methods=["POST"], content_types=["*/*"])
def store() -> Response:
    _service_caller()
    txid = ledger.store(_record(json_body(app.current_request.raw_body)))
    return json_response(201, {"message": "Transaction stored successfully", "transaction_id": txid})


@app.route("/api/transactions", methods=["GET"])
def list_transactions() -> Response:
    claims = bearer_claims(app.current_request)
    params = app.current_request.query_params or {}
    user_id = params.get("user_id") or claims["sub"]
    if user_id != claims["sub"]:
        raise ApiError(403, "You can only read your own transactions")
    limit = query_int(params, "limit", 100, 1, 1000)
    return json_response(200, {"user_id": user_id, "transactions": ledger.for_user(user_id, limit)})
