"""moto server, with its Step Functions engine signing as the stack instead of as "ak"/"sk", and
doing less work per execution.

moto's engine (moto/stepfunctions/parser/asl/utils/boto_client.py, `boto_client_for`) runs every
task (Lambda invocations included) through a boto3 client pointed at
http://localhost:$MOTO_PORT (devstack's gateway) and signed SigV4 with the hard-coded pair
`ak`/`sk`, whatever the state machine's role. That pair is public, so devstack could not tell
the engine from anyone else. Here the engine's clients get this process's AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY (the stack's credentials, service_specs._moto), and devstack checks their
signature like any other caller's.

moto server is one Python process (one GIL) that runs every execution, so its CPU per trade bounds
concurrent trades (bench/trade.py). Profiled under 8 concurrent buys, a third of it went to work
that repeats without need, which this module removes without changing any behaviour:
- a new boto3 client (session, endpoint, SSL context) and a new connection for every Lambda task:
  one client per (service, region, endpoint) is kept, with a pool sized for parallel tasks;
- the definition parsed again (ANTLR, pure Python) for every execution: the parse tree is kept
  per definition, with each node's text (which moto's Preprocessor asks for again and again, and
  ANTLR rebuilds from the leaves each time), and each execution still builds its own program
  from it;
- every JSONPath (`$.trade`, `$.quote`, ...) parsed again, with a new PLY parser, each time a
  state reads or writes one: each parsed path is kept (jsonpath_ng's paths are not changed by
  use);
- werkzeug's access log line for every request (the polls included);
- the listing of moto's package folder (a listdir and a stat per service, ~200) that routing
  does for every request to decide which service a Host names: listed once.

Run: python -m devstack.moto_server -H 127.0.0.1 -p 4566 (moto.server's arguments)
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import threading
import types
from typing import Any

# Clients one engine keeps: Lambda (and any other service) by region and endpoint.
ENGINE_CLIENT_POOL = 64


def sign_engine_calls_as(access_key_id: str, secret_access_key: str) -> None:
    """Makes moto's Step Functions engine sign its calls with these credentials."""
    import boto3
    from moto.stepfunctions.parser.asl.utils import boto_client

    if not hasattr(boto_client, "boto_client_for") or getattr(boto_client, "boto3", None) is not boto3:
        raise RuntimeError("moto's Step Functions engine no longer builds its clients through "
                           "boto_client.boto3.client: update devstack/moto_server.py")
    from botocore.config import Config

    real_client = boto3.client
    clients: dict[tuple[Any, ...], Any] = {}
    lock = threading.Lock()

    def client(*args: Any, **kwargs: Any) -> Any:
        kwargs["aws_access_key_id"] = access_key_id
        kwargs["aws_secret_access_key"] = secret_access_key
        # boto_client_for passes the same Config (no retries, long timeouts) for every client.
        key = (args, kwargs.get("service_name"), kwargs.get("region_name"), kwargs.get("endpoint_url"))
        with lock:  # botocore clients are thread-safe; creating them from one session is not
            if key not in clients:
                config = kwargs.get("config") or Config()
                kwargs["config"] = config.merge(Config(max_pool_connections=ENGINE_CLIENT_POOL))
                clients[key] = real_client(*args, **kwargs)
            return clients[key]

    # Only the engine's module sees this boto3; boto3 itself is untouched for the rest of moto.
    boto_client.boto3 = types.SimpleNamespace(client=client)


def parse_once() -> None:
    """Keeps the ANTLR parse tree of each definition (every execution still gets a fresh program,
    its own evaluation components, from moto's Preprocessor) and each parsed JSONPath."""
    from moto.stepfunctions.parser.asl.component.common.path import result_path
    from moto.stepfunctions.parser.asl.parse import asl_parser
    from moto.stepfunctions.parser.asl.utils import json_path

    for module in (json_path, result_path):
        if not callable(getattr(module, "parse", None)):
            raise RuntimeError(f"{module.__name__} no longer parses through `parse`: "
                               "update devstack/moto_server.py")
        module.parse = functools.lru_cache(maxsize=1024)(module.parse)

    parser = asl_parser.AmazonStateLanguageParser
    if not isinstance(parser.__dict__.get("parse"), staticmethod):
        raise RuntimeError("moto's AmazonStateLanguageParser.parse changed: update devstack/moto_server.py")
    real_parse = parser.parse

    @functools.lru_cache(maxsize=64)
    def tree_of(definition: str) -> Any:
        tree = real_parse(definition)[1]  # raises ASLParserException, which is not cached
        _keep_text(tree)
        return tree

    def parse(definition: str) -> tuple[Any, Any]:
        tree = tree_of(definition)
        return asl_parser.Preprocessor().visit(tree), tree

    parser.parse = staticmethod(parse)


def list_modules_once() -> None:
    """moto's request routing asks `host in list_of_moto_modules()` for every request; the
    folders of an installed package do not change while the server runs."""
    from moto import backends
    from moto.moto_server import werkzeug_app

    if getattr(werkzeug_app, "backends", None) is not backends or \
            not callable(getattr(backends, "list_of_moto_modules", None)):
        raise RuntimeError("moto's router no longer calls backends.list_of_moto_modules: "
                           "update devstack/moto_server.py")
    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules


def _keep_text(node: Any) -> str:
    """Computes the text of every rule node of a kept (never changed) tree once, bottom-up."""
    children = getattr(node, "children", None)
    if not children or not hasattr(node, "__dict__"):
        return node.getText()
    text = "".join(_keep_text(child) for child in children)
    node.getText = lambda: text
    return text


def main(argv: list[str] | None = None) -> None:
    key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if not key or not secret:
        sys.exit("devstack.moto_server: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set")
    sign_engine_calls_as(key, secret)
    parse_once()
    list_modules_once()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log line per request
    from moto.server import main as moto_main

    moto_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
