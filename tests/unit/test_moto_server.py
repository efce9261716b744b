"""devstack/moto_server.py: what moto's engine keeps between executions is never shared state."""

from __future__ import annotations

import re

import pytest
from moto.stepfunctions.parser.asl.component.common.path import result_path
from moto.stepfunctions.parser.asl.parse import asl_parser
from moto.stepfunctions.parser.asl.utils import boto_client, json_path

from devstack import moto_server
from devstack.services import REPO_ROOT

FRESH_PARSE = asl_parser.AmazonStateLanguageParser.parse


@pytest.fixture
def parse_once(monkeypatch):
    parser = asl_parser.AmazonStateLanguageParser
    monkeypatch.setattr(parser, "parse", parser.__dict__["parse"])  # restored after the test
    monkeypatch.setattr(json_path, "parse", json_path.parse)
    monkeypatch.setattr(result_path, "parse", result_path.parse)
    moto_server.parse_once()
    return parser.parse


def _texts(node, out):
    out.append(node.getText())
    for child in getattr(node, "children", None) or []:
        _texts(child, out)
    return out


def test_each_execution_gets_its_own_program_from_one_parse(parse_once):
    definition = re.sub(r"\$\{\w+\}", "arn:aws:lambda:us-east-1:123456789012:function:Step:live",
                        (REPO_ROOT / "statemachines" / "trade.asl.json").read_text())
    first, first_tree = parse_once(definition)
    second, second_tree = parse_once(definition)
    assert first_tree is second_tree
    assert first is not second and type(first) is type(second)
    _, fresh_tree = FRESH_PARSE(definition)
    assert _texts(first_tree, []) == _texts(fresh_tree, [])


def test_a_malformed_definition_is_refused_every_time(parse_once):
    for _ in range(2):
        with pytest.raises(asl_parser.ASLParserException):
            parse_once('{"StartAt": "A", "States": {"A": {"Type": "Pass", "End": tru')


def test_a_kept_jsonpath_reads_each_document_afresh(parse_once):
    assert json_path.extract_json("$.trade.symbol", {"trade": {"symbol": "SPX"}}) == "SPX"
    assert json_path.extract_json("$.trade.symbol", {"trade": {"symbol": "AAPL"}}) == "AAPL"
    with pytest.raises(json_path.NoSuchJsonPathError):
        json_path.extract_json("$.trade.symbol", {"trade": {}})


def test_the_engine_keeps_one_client_per_service_signed_as_the_stack(monkeypatch):
    monkeypatch.setattr(boto_client, "boto3", boto_client.boto3)
    moto_server.sign_engine_calls_as("AKIDSTACK", "secret-of-the-stack")
    lam = boto_client.boto_client_for(region="us-east-1", service="lambda")
    assert boto_client.boto_client_for(region="us-east-1", service="lambda") is lam
    assert boto_client.boto_client_for(region="eu-west-1", service="lambda") is not lam
    creds = lam._request_signer._credentials
    assert (creds.access_key, creds.secret_key) == ("AKIDSTACK", "secret-of-the-stack")
    assert lam.meta.config.max_pool_connections == moto_server.ENGINE_CLIENT_POOL
