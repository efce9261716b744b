"""moto server, with its Step Functions engine signing as the stack instead of as "ak"/"sk".

moto's engine (moto/stepfunctions/parser/asl/utils/boto_client.py, `boto_client_for`) runs every
task (Lambda invocations included) through a boto3 client pointed at
http://localhost:$MOTO_PORT (devstack's gateway) and signed SigV4 with the hard-coded pair
`ak`/`sk`, whatever the state machine's role. That pair is public, so devstack could not tell
the engine from anyone else. Here the engine's clients get this process's AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY (the stack's credentials, services.Stack._moto), and devstack checks their
signature like any other caller's. Nothing else of moto changes.

Run: python -m devstack.moto_server -H 127.0.0.1 -p 4566 (moto.server's arguments)
"""

from __future__ import annotations

import os
import sys
import types
from typing import Any


def sign_engine_calls_as(access_key_id: str, secret_access_key: str) -> None:
    """Makes moto's Step Functions engine sign its calls with these credentials."""
    import boto3
    from moto.stepfunctions.parser.asl.utils import boto_client

    if not hasattr(boto_client, "boto_client_for") or getattr(boto_client, "boto3", None) is not boto3:
        raise RuntimeError("moto's Step Functions engine no longer builds its clients through "
                           "boto_client.boto3.client: update devstack/moto_server.py")
    real_client = boto3.client

    def client(*args: Any, **kwargs: Any) -> Any:
        kwargs["aws_access_key_id"] = access_key_id
        kwargs["aws_secret_access_key"] = secret_access_key
        return real_client(*args, **kwargs)

    # Only the engine's module sees this boto3; boto3 itself is untouched for the rest of moto.
    boto_client.boto3 = types.SimpleNamespace(client=client)


def main(argv: list[str] | None = None) -> None:
    key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if not key or not secret:
        sys.exit("devstack.moto_server: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set")
    sign_engine_calls_as(key, secret)
    from moto.server import main as moto_main

    moto_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
