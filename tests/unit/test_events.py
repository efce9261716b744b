"""The API Gateway proxy event devstack builds has the shape API Gateway sends."""

import base64
import json

import pytest

from devstack.events import proxy_response, rest_proxy_event, scheduled_event


def event(**over):
    args = dict(method="GET", path="/api/stocks/SPX/details", resource="/api/stocks/{symbol}/details",
                path_params={"symbol": "SPX"}, headers=[("Accept", "a"), ("X-Multi", "1"), ("X-Multi", "2")],
                query=[("q", "1"), ("q", "2")], body=b"", source_ip="10.0.0.1")
    args.update(over)
    return rest_proxy_event(**args)


def test_rest_proxy_event_fields():
    e = event()
    assert {"resource", "path", "httpMethod", "headers", "multiValueHeaders", "queryStringParameters",
            "multiValueQueryStringParameters", "pathParameters", "body", "isBase64Encoded",
            "requestContext", "stageVariables"} <= set(e)
    assert e["headers"]["X-Multi"] == "2" and e["multiValueHeaders"]["X-Multi"] == ["1", "2"]
    assert e["queryStringParameters"] == {"q": "2"}
    assert e["multiValueQueryStringParameters"] == {"q": ["1", "2"]}
    ctx = e["requestContext"]
    assert ctx["resourcePath"] == "/api/stocks/{symbol}/details" and ctx["stage"] == "local"
    assert ctx["identity"]["sourceIp"] == "10.0.0.1" and ctx["requestId"]
    assert e["body"] is None and e["isBase64Encoded"] is False


def test_no_params_are_null_like_api_gateway():
    e = event(path_params={}, query=[])
    assert e["pathParameters"] is None and e["queryStringParameters"] is None


def test_binary_bodies_are_base64():
    e = event(method="POST", body=b"\xff\x00", headers=[("Content-Type", "application/octet-stream")])
    assert e["isBase64Encoded"] and base64.b64decode(e["body"]) == b"\xff\x00"
    e = event(method="POST", body=b'{"a": 1}', headers=[("Content-Type", "application/json")])
    assert not e["isBase64Encoded"] and json.loads(e["body"]) == {"a": 1}


def test_proxy_response_mapping():
    status, headers, body = proxy_response({"statusCode": 201, "headers": {"A": "1"},
                                            "multiValueHeaders": {"B": ["x", "y"]}, "body": "hi"})
    assert status == 201 and body == b"hi" and ("B", "y") in headers and ("A", "1") in headers
    with pytest.raises(ValueError):
        proxy_response({"body": "no status"})


def test_scheduled_event_shape():
    e = scheduled_event("Retrain")
    assert e["detail-type"] == "Scheduled Event" and e["source"] == "aws.events"
    assert e["resources"][0].endswith("rule/Retrain")
