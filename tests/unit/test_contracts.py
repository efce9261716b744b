"""The API's models: requests refused with the words users read, and the OpenAPI document made
from the same models, with the answer checker the e2e suite runs shown to catch a wrong answer."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from stockpred import contracts
from stockpred.api import openapi
from tests.answers import Received, violations

NOW = dt.datetime.now(dt.UTC)


def fields(model: type[contracts.Request], body: object) -> dict[str, str]:
    with pytest.raises(contracts.Invalid) as caught:
        contracts.parse(model, body)
    return caught.value.fields


@pytest.mark.parametrize("body", [[], "order", 3, None, [{"user_id": "u"}]], ids=repr)
def test_a_body_that_is_not_an_object_is_refused_as_a_whole(body):
    assert fields(contracts.Order, body) == {"body": "must be a JSON object"}


def test_an_order_names_every_wrong_field():
    assert fields(contracts.Order, {"user_id": "", "symbol": "1X", "quantity": 1.0}) == {
        "user_id": "required, as a string of 1 to 64 characters",
        "symbol": "symbol must be 1-10 characters: a letter, then letters, digits, '.' or '-'",
        "quantity": "a whole number from 1 to 1000000"}
    assert fields(contracts.Order, {}) == {
        "user_id": "required, as a string of 1 to 64 characters", "symbol": "symbol must be a string",
        "quantity": "a whole number from 1 to 1000000"}


@pytest.mark.parametrize("quantity", [True, 0, 1_000_001, "3", 2.5, None, {"$gt": 0}], ids=repr)
def test_a_quantity_is_a_whole_json_number_in_range(quantity):
    body = {"user_id": "u", "symbol": "IBM", "quantity": quantity}
    assert set(fields(contracts.Order, body)) == {"quantity"}


def test_an_order_comes_normalised_and_ignores_unknown_fields():
    order = contracts.parse(contracts.Order, {"user_id": "u", "symbol": " ibm ", "quantity": 7, "x": 1})
    assert (order.user_id, order.symbol, order.quantity) == ("u", "IBM", 7)


def test_a_ledger_record_checks_side_price_and_time():
    good = {"user_id": "u", "symbol": "IBM", "quantity": 1, "action": "buy", "price": 12.5,
            "timestamp": NOW.isoformat()}
    record = contracts.parse(contracts.TransactionRecord, good)
    assert record.price_cents == 1250 and record.timestamp.tzinfo is not None
    wrong = fields(contracts.TransactionRecord, {**good, "action": "hold", "price": True,
                                                 "timestamp": "10000-01-01T00:00:00Z"})
    assert wrong == {"action": "buy or sell", "price": "a positive number: a number",
                     "timestamp": "an ISO 8601 date-time"}
    old = (NOW - dt.timedelta(days=2)).isoformat()
    refused = fields(contracts.TransactionRecord, {**good, "timestamp": old})
    assert "within the last 24 hours" in refused["timestamp"]


def test_a_profile_change_refuses_null_unknown_fields_and_an_empty_body():
    assert fields(contracts.ProfileChange, {"name": None}) == {"name": "required, as a string"}
    assert fields(contracts.ProfileChange, {"b": 1, "a": 2}) == {"body": "unknown field(s): a, b"}
    assert fields(contracts.ProfileChange, {}) == {"body": "give name and/or email"}
    change = contracts.parse(contracts.ProfileChange, {"email": " ada@example.com "})
    assert change.model_fields_set == {"email"} and change.email == "ada@example.com"


def test_the_document_says_what_the_models_enforce():
    """The drift the issue found: the document said passwords need 10 characters, users.py 12."""
    schemas = openapi.document()["components"]["schemas"]
    assert schemas["Registration"]["properties"]["password"]["minLength"] == contracts.PASSWORD_MIN == 12
    assert schemas["Order"]["properties"]["quantity"]["maximum"] == contracts.MAX_QUANTITY
    assert schemas["ProfileChange"]["additionalProperties"] is False
    assert len(fields(contracts.Registration, {"name": "Ada", "email": "ada@example.com",
                                               "password": "x" * 11})) == 1


def test_every_reference_in_the_document_resolves_to_a_model():
    doc = openapi.document()
    refs = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.add(node["$ref"].rsplit("/", 1)[1])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    models = {m.__name__ for m in (*contracts.ANSWERS, *contracts.REQUESTS)}
    assert refs and refs <= set(doc["components"]["schemas"]) and refs <= models


def answer(method: str, path: str, status: int, body: object, kind: str = "application/json") -> Received:
    return Received(method, path, status, kind, json.dumps(body).encode())


def test_the_answer_checker_passes_answers_as_documented():
    assert violations([
        answer("GET", "/api/users/profile", 200, {"user_id": "u", "name": "Ada", "email": "a@b.co",
                                                  "roles": [], "something_new": 1}),
        answer("GET", "/api/users/profile", 401, {"error": "Invalid or missing token"}),
        answer("GET", "/api/users/profile", 418, {"error": "undocumented, but an error"}),
        answer("GET", "/api/nowhere", 404, {"message": "not ours"}),
        answer("OPTIONS", "/api/users/buy", 200, {}),  # a CORS preflight: API Gateway's own
    ]) == []


@pytest.mark.parametrize("received,why", [
    (answer("GET", "/api/users/profile", 200, {"user_id": 1, "name": "Ada", "email": "a@b.co"}),
     "user_id: 1"),
    (answer("GET", "/api/users/profile", 200, {"name": "Ada", "email": "a@b.co"}), "'user_id' is a required"),
    (answer("POST", "/api/users/buy", 200, {"message": "Done", "transaction_id": "t", "price": None}),
     "Done"),
    (answer("GET", "/api/users/portfolio", 200, {"cash": "12.3", "cash_cents": 1230, "holdings": [],
                                                 "total_value": "12.30"}), "cash"),
    (answer("GET", "/api/users/profile", 503, {"message": "Service Unavailable"}), "'error' is a required"),
    (answer("GET", "/api/users/profile", 204, {}), "does not give"),
    (answer("GET", "/api/stocks", 200, "<html>", "text/html"), "not JSON"),
], ids=["wrong type", "missing field", "not an allowed message", "money without cents",
        "an error without error", "undocumented success", "not json"])
def test_the_answer_checker_catches_a_wrong_answer(received, why):
    found = violations([received])
    assert len(found) == 1 and why in found[0], found
