"""The event shapes AWS hands to functions, built from local requests and clocks.

API Gateway REST proxy events (and mapping their responses back), EventBridge scheduled events.
Kept apart from the server so the shapes can be tested on their own.
"""

from __future__ import annotations

import base64
import datetime as dt
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from devstack.template import LOCAL_ACCOUNT, LOCAL_REGION

STAGE = "local"
TEXT_TYPES = ("text/", "application/json", "application/x-www-form-urlencoded",
              "application/xml", "application/javascript")


def _single(pairs: Iterable[tuple[str, str]]) -> tuple[dict[str, str] | None, dict[str, list[str]] | None]:
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for k, v in pairs:
        single[k] = v
        multi.setdefault(k, []).append(v)
    return (single or None, multi or None)


def rest_proxy_event(
    *,
    method: str,
    path: str,
    resource: str,
    path_params: Mapping[str, str],
    headers: Iterable[tuple[str, str]],
    query: Iterable[tuple[str, str]],
    body: bytes,
    source_ip: str,
    request_id: str | None = None,
) -> dict[str, Any]:
    """An API Gateway REST API (v1) Lambda proxy event, as API Gateway sends it."""
    header_pairs = list(headers)
    hdr, multi_hdr = _single(header_pairs)
    qs, multi_qs = _single(query)
    content_type = next((v for k, v in header_pairs if k.lower() == "content-type"), "")
    is_text = not body or content_type.startswith(TEXT_TYPES) or not content_type
    if is_text:
        try:
            body_out: str | None = body.decode("utf-8") if body else None
            b64 = False
        except UnicodeDecodeError:
            body_out, b64 = base64.b64encode(body).decode(), True
    else:
        body_out, b64 = base64.b64encode(body).decode(), True
    now = time.time()
    request_id = request_id or str(uuid.uuid4())
    user_agent = next((v for k, v in header_pairs if k.lower() == "user-agent"), None)
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": hdr,
        "multiValueHeaders": multi_hdr,
        "queryStringParameters": qs,
        "multiValueQueryStringParameters": multi_qs,
        "pathParameters": dict(path_params) or None,
        "stageVariables": None,
        "body": body_out,
        "isBase64Encoded": b64,
        "requestContext": {
            "resourceId": "devstack",
            "resourcePath": resource,
            "httpMethod": method,
            "extendedRequestId": request_id,
            "requestTime": dt.datetime.fromtimestamp(now, dt.UTC).strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "path": f"/{STAGE}{path}",
            "accountId": LOCAL_ACCOUNT,
            "protocol": "HTTP/1.1",
            "stage": STAGE,
            "domainPrefix": "localhost",
            "requestTimeEpoch": int(now * 1000),
            "requestId": request_id,
            "identity": {"sourceIp": source_ip, "userAgent": user_agent},
            "domainName": "localhost",
            "apiId": "devstack",
        },
    }


def proxy_response(result: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """Maps a Lambda proxy integration result back to status, headers and body."""
    if not isinstance(result, dict) or "statusCode" not in result:
        raise ValueError("Malformed Lambda proxy response")
    status = int(result["statusCode"])
    headers: list[tuple[str, str]] = [(k, str(v)) for k, v in (result.get("headers") or {}).items()]
    for k, values in (result.get("multiValueHeaders") or {}).items():
        headers += [(k, str(v)) for v in values if (k, str(v)) not in headers]
    body = result.get("body") or ""
    raw = base64.b64decode(body) if result.get("isBase64Encoded") else body.encode("utf-8")
    return status, headers, raw


def scheduled_event(rule_name: str, when: dt.datetime | None = None) -> dict[str, Any]:
    """An EventBridge 'Scheduled Event' as a Schedule event source delivers it."""
    when = when or dt.datetime.now(dt.UTC)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": LOCAL_ACCOUNT,
        "time": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": LOCAL_REGION,
        "resources": [f"arn:aws:events:{LOCAL_REGION}:{LOCAL_ACCOUNT}:rule/{rule_name}"],
        "detail": {},
    }


def websocket_event(
    *,
    event_type: str,
    route_key: str,
    connection_id: str,
    connected_at_ms: int,
    domain: str,
    source_ip: str,
    user_agent: str | None,
    body: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    query: Iterable[tuple[str, str]] = (),
    disconnect_code: int | None = None,
) -> dict[str, Any]:
    """An API Gateway WebSocket API event: CONNECT, MESSAGE or DISCONNECT."""
    now = time.time()
    request_id = str(uuid.uuid4())
    context: dict[str, Any] = {
        "routeKey": route_key,
        "eventType": event_type,
        "extendedRequestId": request_id,
        "requestTime": dt.datetime.fromtimestamp(now, dt.UTC).strftime("%d/%b/%Y:%H:%M:%S +0000"),
        "messageDirection": "IN",
        "stage": STAGE,
        "connectedAt": connected_at_ms,
        "requestTimeEpoch": int(now * 1000),
        "identity": {"sourceIp": source_ip, "userAgent": user_agent},
        "requestId": request_id,
        "domainName": domain,
        "connectionId": connection_id,
        "apiId": "devstack-ws",
    }
    event: dict[str, Any] = {"requestContext": context, "isBase64Encoded": False}
    if event_type == "MESSAGE":
        context["messageId"] = uuid.uuid4().hex[:16]
        event["body"] = body
    else:
        hdr, multi_hdr = _single(headers)
        event.update(headers=hdr, multiValueHeaders=multi_hdr)
    if event_type == "CONNECT":
        qs, multi_qs = _single(query)
        event.update(queryStringParameters=qs, multiValueQueryStringParameters=multi_qs)
    if event_type == "DISCONNECT":
        context.update(disconnectStatusCode=disconnect_code or 1000, disconnectReason="")
    return event
