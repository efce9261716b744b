"""Security regressions: WebSockets and revoked tokens, frames that nest too deep, devstack's
IAM-guarded APIs (Invoke, @connections), and local secrets on disk and on screen.

Each test fails on the code before the fix: sockets outlived logout and password change, a
5,000-deep frame killed devstack's connection handler, anyone could invoke functions or push to
and disconnect sockets, and the stack's secrets were world-readable and printed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import stat
import uuid
from pathlib import Path

import aiohttp
import boto3
import botocore.exceptions
import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from devstack import cli, tls
from devstack.services import Stack
from devstack.sigv4 import Guard, Refused
from devstack.stack_state import redacted
from devstack.wsapi import selection_key

DEEP = "[" * 5000
PASSWORD = "Quiet-harbour-lantern-71"


# ---- helpers ------------------------------------------------------------------------------------
def ws_url(stack, token):
    return f"{stack['STOCKPRED_WS_URL']}?token={token}"


async def off_thread(fn, *args, **kw):
    return await asyncio.get_running_loop().run_in_executor(None, lambda: fn(*args, **kw))


async def closed_by_server(ws, timeout=10.0) -> bool:
    """True once the server closes the socket; fails if a data message arrives first."""
    while True:
        msg = await ws.receive(timeout=timeout)
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
            return True
        raise AssertionError(f"expected the socket closed, got {msg}")


async def next_json(ws, timeout=10.0):
    return json.loads(await ws.receive_str(timeout=timeout))


def buy(gateway, user_id, token):
    return gateway.post("/api/users/buy", json={"user_id": user_id, "symbol": "SPX", "quantity": 1},
                        headers={"Authorization": f"Bearer {token}"})


def login(gateway, email, password=PASSWORD):
    r = gateway.post("/api/users/login", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    return r.json()["token"]


def creds():
    return {"aws_access_key_id": os.environ["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": os.environ["AWS_SECRET_ACCESS_KEY"]}


# ---- finding 6: sockets die with their token ---------------------------------------------------
@pytest.mark.parametrize("how", ["logout", "password change"])
def test_logout_and_password_change_close_the_users_sockets(gateway, stack, how):
    user = gateway.new_user(password=PASSWORD)
    new_password = "Zq7-" + uuid.uuid4().hex

    async def scenario():
        async with aiohttp.ClientSession() as s:
            old = await s.ws_connect(ws_url(stack, user.token))
            if how == "logout":
                r = await off_thread(gateway.post, "/api/users/logout", json={}, headers=user.headers)
            else:
                r = await off_thread(gateway.post, "/api/users/password", headers=user.headers,
                                     json={"current_password": PASSWORD,
                                           "new_password": new_password})
            assert r.status_code == 200, r.text
            assert await closed_by_server(old)
            # Signed in again: the new socket gets the confirmation, the old one got nothing.
            token = await off_thread(login, gateway, user.email,
                                     PASSWORD if how == "logout" else new_password)
            fresh = await s.ws_connect(ws_url(stack, token))
            r = await off_thread(buy, gateway, user.user_id, token)
            assert r.status_code == 200, r.text
            pushed = await next_json(fresh, timeout=30)
            assert pushed["type"] == "trade" and pushed["transaction_id"] == r.json()["transaction_id"]
            assert old.closed

    asyncio.run(scenario())


@pytest.mark.parametrize("revoke", ["jti", "token version"])
def test_a_socket_whose_token_was_revoked_otherwise_is_cut_at_its_next_frame(gateway, stack, revoke):
    from stockpred.identity import auth

    user = gateway.new_user()
    claims = auth.verify(user.token)

    async def scenario():
        async with aiohttp.ClientSession() as s:
            ws = await s.ws_connect(ws_url(stack, user.token))
            await ws.send_str(json.dumps({"action": "subscribe", "symbol": "SPX"}))
            assert await next_json(ws) == {"type": "subscribed", "symbol": "SPX"}
            if revoke == "jti":
                auth.revoke(claims)
            else:
                auth.revoke_all(user.user_id)
            await ws.send_str(json.dumps({"action": "subscribe", "symbol": "IXIC"}))
            assert await closed_by_server(ws)

    asyncio.run(scenario())


def test_a_revoked_socket_gets_no_trade_confirmation_even_before_it_speaks(gateway, stack):
    """Revoked without a close (as if the close had failed): the push itself refuses it."""
    from stockpred.identity import auth

    user = gateway.new_user(password=PASSWORD)
    second = login(gateway, user.email)

    async def scenario():
        async with aiohttp.ClientSession() as s:
            revoked = await s.ws_connect(ws_url(stack, user.token))
            valid = await s.ws_connect(ws_url(stack, second))
            auth.revoke(auth.verify(user.token))
            r = await off_thread(buy, gateway, user.user_id, second)
            assert r.status_code == 200, r.text
            assert (await next_json(valid, timeout=30))["type"] == "trade"
            assert await closed_by_server(revoked)

    asyncio.run(scenario())


# ---- finding 11: frames nested too deep ---------------------------------------------------------
def test_route_selection_survives_any_frame():
    with pytest.raises(RecursionError):
        json.loads(DEEP)  # what killed the handler before
    assert selection_key(DEEP) is None
    assert selection_key('{"action": "subscribe", "x": "[[[[' + "[" * 100 + '"}') == "subscribe"
    assert selection_key('{"action": ' + "[" * 40 + "]" * 40 + "}") is None
    for frame in ("", "null", "[1]", '{"action": 5}', "\x00", '"' * 9):
        assert selection_key(frame) is None


def test_a_deep_frame_gets_an_error_and_the_socket_and_server_live_on(gateway, stack):
    user = gateway.new_user()

    async def scenario():
        async with aiohttp.ClientSession() as s:
            ws = await s.ws_connect(ws_url(stack, user.token))
            other = await s.ws_connect(ws_url(stack, user.token))
            for frame in (DEEP, '{"action": "subscribe", "symbol": ' + DEEP + "}"):
                await ws.send_str(frame)
                reply = await next_json(ws)
                assert reply["type"] == "error" and reply["error"]
            await ws.send_str(json.dumps({"action": "subscribe", "symbol": "SPX"}))
            assert await next_json(ws) == {"type": "subscribed", "symbol": "SPX"}
            await other.send_str(json.dumps({"action": "subscribe", "symbol": "IXIC"}))
            assert await next_json(other) == {"type": "subscribed", "symbol": "IXIC"}
            assert not ws.closed and not other.closed

    asyncio.run(scenario())
    assert gateway.get("/_devstack/health").ok


# ---- finding 10: devstack's Invoke and @connections answer only the stack's credentials ---------
def test_the_stack_has_its_own_credentials(stack):
    assert stack["AWS_ACCESS_KEY_ID"] not in ("test", "ak", "")
    assert len(stack["AWS_SECRET_ACCESS_KEY"]) >= 32


def test_invoke_without_or_with_forged_credentials_is_refused(gateway):
    url = f"{gateway.url}/2015-03-31/functions/AccountStepFunction/invocations"
    r = requests.post(url, data=b'{"step": "debit"}', timeout=10)
    assert r.status_code == 403
    assert r.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
    r = requests.post(url, data=b"{}", timeout=10, headers={"Authorization": "Bearer x"})
    assert r.status_code == 403 and r.headers["x-amzn-ErrorType"] == "IncompleteSignatureException"

    forged = {
        "UnrecognizedClientException": {"aws_access_key_id": "test", "aws_secret_access_key": "test"},
        # moto's engine's own hard-coded pair: public, so refused too
        "UnrecognizedClientException ": {"aws_access_key_id": "ak", "aws_secret_access_key": "sk"},
        "InvalidSignatureException": {"aws_access_key_id": os.environ["AWS_ACCESS_KEY_ID"],
                                      "aws_secret_access_key": "not-the-secret"},
    }
    for expected, keys in forged.items():
        client = boto3.client("lambda", endpoint_url=gateway.url, region_name="us-east-1", **keys)
        with pytest.raises(botocore.exceptions.ClientError) as refused:
            client.invoke(FunctionName="AccountStepFunction", Payload=b"{}")
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        assert refused.value.response["Error"]["Code"] == expected.strip()


def test_invoke_with_the_stacks_credentials_works(gateway):
    client = boto3.client("lambda", endpoint_url=gateway.url, region_name="us-east-1", **creds())
    out = client.invoke(FunctionName="AccountStepFunction", InvocationType="DryRun")
    assert out["StatusCode"] == 204
    arn = "arn:aws:lambda:us-east-1:123456789012:function:AccountStepFunction"
    assert client.invoke(FunctionName=arn, InvocationType="DryRun")["StatusCode"] == 204


def test_trades_still_complete_through_moto_and_the_guarded_invoke_api(gateway):
    """The saga's tasks reach devstack's Invoke API from moto's engine, signed as the stack."""
    user = gateway.new_user()
    r = buy(gateway, user.user_id, user.token)
    assert r.status_code == 200, r.text
    assert r.json()["transaction_id"]


def test_connections_api_refuses_strangers_and_keeps_the_socket(gateway, stack):
    user = gateway.new_user()
    from stockpred.stores import redis_stores

    async def scenario():
        async with aiohttp.ClientSession() as s:
            ws = await s.ws_connect(ws_url(stack, user.token))
            await asyncio.sleep(0.2)
            conn_id = next(c.decode() for c in
                           redis_stores.state().smembers(f"stockpred:ws:user:{user.user_id}"))
            url = f"{stack['WS_MANAGEMENT_URL']}/@connections/{conn_id}"
            for method in ("POST", "GET", "DELETE"):
                r = await off_thread(requests.request, method, url, data=b'{"x": 1}', timeout=10)
                assert r.status_code == 403 and r.headers["x-amzn-ErrorType"], method
            stranger = boto3.client("apigatewaymanagementapi", endpoint_url=stack["WS_MANAGEMENT_URL"],
                                    region_name="us-east-1", aws_access_key_id="t",
                                    aws_secret_access_key="t")
            for call in (lambda: stranger.post_to_connection(ConnectionId=conn_id, Data=b"{}"),
                         lambda: stranger.delete_connection(ConnectionId=conn_id)):
                with pytest.raises(botocore.exceptions.ClientError) as refused:
                    await off_thread(call)
                assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
            assert not ws.closed
            mgmt = boto3.client("apigatewaymanagementapi", endpoint_url=stack["WS_MANAGEMENT_URL"],
                                region_name="us-east-1", **creds())
            await off_thread(mgmt.post_to_connection, ConnectionId=conn_id, Data=b'{"hello": 1}')
            assert await next_json(ws) == {"hello": 1}

    asyncio.run(scenario())


def _signed(method="POST", url="http://127.0.0.1:3000/2015-03-31/functions/"
            "arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3AX/invocations?Qualifier=1",
            body=b'{"a": 1}', key="AKIDLOCAL", secret="s" * 40, service="lambda"):
    request = AWSRequest(method=method, url=url, data=body,
                         headers={"Content-Type": "application/json", "X-Amz-Invocation-Type": "Event"})
    SigV4Auth(Credentials(key, secret), service, "us-east-1").add_auth(request)
    headers = [*request.headers.items(), ("Host", "127.0.0.1:3000")]
    return method, url, headers, body


def test_sigv4_guard_recomputes_the_signature():
    guard = Guard("AKIDLOCAL", "s" * 40)
    guard.check(*_signed())  # botocore's own signature, ARN path and query included
    guard.check(*_signed(method="DELETE", url="http://127.0.0.1:3000/local/@connections/a%3Db",
                         body=b"", service="execute-api"))
    method, url, headers, body = _signed()
    cases = {
        "tampered body": (method, url, headers, b'{"a": 2}'),
        "other function": (method, url.replace("function%3AX", "function%3AY"), headers, body),
        "wrong secret": _signed(secret="t" * 40),
        "other key": _signed(key="AKIDOTHER"),
        "unsigned header changed": (method, url, [(k, "RequestResponse" if k.lower() ==
                                     "x-amz-invocation-type" else v) for k, v in headers], body),
    }
    for name, request in cases.items():
        with pytest.raises(Refused):
            guard.check(*request)
            pytest.fail(name)
    with pytest.raises(Refused, match="expired"):
        guard.check(*_signed(), now=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=16))
    with pytest.raises(Refused):
        Guard(None, None).check(*_signed())


def test_moto_engine_signs_as_the_stack():
    """moto's engine hard-codes "ak"/"sk"; devstack/moto_server.py swaps in the stack's pair."""
    from moto.stepfunctions.parser.asl.utils import boto_client

    from devstack import moto_server

    saved = boto_client.boto3
    try:
        moto_server.sign_engine_calls_as("AKIDSTACK", "secret-of-the-stack")
        client = boto_client.boto_client_for(region="us-east-1", service="lambda")
        got = client._request_signer._credentials
        assert (got.access_key, got.secret_key) == ("AKIDSTACK", "secret-of-the-stack")
    finally:
        boto_client.boto3 = saved


# ---- finding 9: local secrets ---------------------------------------------------------------------
def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_stacks_folder_secrets_and_env_json_are_private(stack):
    root = Path(stack["STOCKPRED_HOME"])
    mode = _mode(root)
    assert mode & 0o077 in (0, 0o010), oct(mode)  # 0700 (0710, group postgres, when run as root)
    if os.geteuid() != 0:
        assert mode == 0o700
    for name in ("env.json", "jwt-secret", "service-token", "pseudonym-key", "aws-secret-access-key",
                 "aws-access-key-id"):
        assert _mode(root / name) == 0o600, name
    env = json.loads((root / "env.json").read_text())
    assert env["AWS_SECRET_ACCESS_KEY"] == stack["AWS_SECRET_ACCESS_KEY"]


def test_secret_files_are_created_private_even_with_a_permissive_umask(tmp_path, monkeypatch):
    root = tmp_path / "home"
    stack = Stack(root, free_ports=True, with_gateway=False, environ={}, log=lambda m: None)
    old = os.umask(0)
    try:
        # Created with their modes: nothing may chmod a secret file after writing it.
        real_chmod = Path.chmod

        def no_file_chmod(self, mode, **kw):
            assert self == root, f"chmod of {self} after creation"
            return real_chmod(self, mode, **kw)

        monkeypatch.setattr(Path, "chmod", no_file_chmod)
        stack.secret("jwt-secret")
        stack.access_key_id()
        tls.write_private(root / "env.json", json.dumps(stack.client_env()))
    finally:
        os.umask(old)
    assert _mode(root) & 0o077 in (0, 0o010)
    for name in ("jwt-secret", "aws-access-key-id", "aws-secret-access-key", "env.json"):
        assert _mode(root / name) == 0o600, name


def test_an_old_world_readable_env_json_and_home_are_made_private(tmp_path):
    root = tmp_path / "home"
    root.mkdir(mode=0o755)
    root.chmod(0o755)
    (root / "env.json").write_text("{}")
    (root / "env.json").chmod(0o644)
    (root / "jwt-secret").write_text("x" * 64)
    (root / "jwt-secret").chmod(0o644)
    stack = Stack(root, free_ports=True, with_gateway=False, environ={}, log=lambda m: None)
    stack.ensure_root()
    tls.write_private(root / "env.json", "{}")
    stack.secret("jwt-secret")
    assert _mode(root) & 0o077 in (0, 0o010)
    assert _mode(root / "env.json") == 0o600 and _mode(root / "jwt-secret") == 0o600


def test_services_up_prints_no_secret(monkeypatch, capsys, tmp_path):
    env = {"STOCKPRED_HOME": str(tmp_path), "AWS_ACCESS_KEY_ID": "AKIDX",
           "AWS_SECRET_ACCESS_KEY": "aws-secret-value", "JWT_SECRET": "jwt-secret-value",
           "SERVICE_TOKEN": "service-token-value", "PSEUDONYM_KEY": "pseudonym-value",
           "JWT_SECRET_ARN": "stockpred/jwt-secret"}

    class FakeStack:
        def up(self):
            return env

        def path(self, *parts):
            return tmp_path.joinpath(*parts)

    monkeypatch.setattr(cli, "_stack", lambda args, with_gateway=True: FakeStack())
    assert cli.cmd_services(type("Args", (), {"action": "up"})()) == 0
    out = capsys.readouterr()
    printed = out.out + out.err
    for var in ("AWS_SECRET_ACCESS_KEY", "JWT_SECRET", "SERVICE_TOKEN", "PSEUDONYM_KEY"):
        assert env[var] not in printed, var
    assert "stockpred/jwt-secret" in printed  # names are fine
    assert redacted(env)["AWS_SECRET_ACCESS_KEY"] != env["AWS_SECRET_ACCESS_KEY"]
