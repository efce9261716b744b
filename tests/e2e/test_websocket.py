"""Real time end to end: real WebSocket clients against devstack's WebSocket API.

Rooms per symbol, private trade confirmations, refused tokens, malformed frames, clients that
vanish, and clients that flood or send oversized frames being cut off without harming others.
"""

import asyncio
import json
import os
import time
import uuid

import aiohttp
import boto3
import jwt
import pytest

from devstack.stack_state import redis_client
from stockpred.cloud import secrets

pytestmark = pytest.mark.usefixtures("flush_cache")


def signup(gateway):
    user = gateway.new_user()
    return user.user_id, user.token


def ws_url(stack, token):
    return f"{stack['STOCKPRED_WS_URL']}?token={token}"


async def join(session, stack, token, *symbols):
    ws = await session.ws_connect(ws_url(stack, token))
    for symbol in symbols:
        await ws.send_str(json.dumps({"action": "subscribe", "symbol": symbol}))
        assert json.loads(await ws.receive_str(timeout=10)) == {"type": "subscribed", "symbol": symbol}
    return ws


async def next_json(ws, timeout=10.0):
    return json.loads(await ws.receive_str(timeout=timeout))


async def nothing_arrives(ws, within=1.0):
    try:
        msg = await ws.receive(timeout=within)
    except TimeoutError:
        return True
    raise AssertionError(f"unexpected message: {msg}")


async def off_thread(fn, *args, **kw):
    return await asyncio.get_running_loop().run_in_executor(None, lambda: fn(*args, **kw))


def test_a_prediction_reaches_only_its_symbols_room(gateway, stack):
    _, token = signup(gateway)

    async def scenario():
        async with aiohttp.ClientSession() as s:
            spx = await join(s, stack, token, "SPX")
            ixic = await join(s, stack, token, "IXIC")
            r = await off_thread(gateway.predict, "SPX")
            assert r.status_code == 200
            pushed = await next_json(spx, timeout=30)
            assert pushed["type"] == "prediction" and pushed["symbol"] == "SPX"
            assert pushed["_id"] == r.json()["_id"] and pushed["action"] == r.json()["action"]
            # The request that caused it, so a page can tell its own request's echo from news.
            assert pushed["correlation_id"] == r.headers["X-Correlation-Id"]
            assert await nothing_arrives(ixic)

    asyncio.run(scenario())


def test_a_trade_confirmation_reaches_only_its_user(gateway, stack):
    a, token_a = signup(gateway)
    _, token_b = signup(gateway)

    async def scenario():
        async with aiohttp.ClientSession() as s:
            a1, a2 = await join(s, stack, token_a), await join(s, stack, token_a)
            b = await join(s, stack, token_b, "SPX")
            order = {"user_id": a, "symbol": "SPX", "quantity": 1}
            r = await off_thread(gateway.post, "/api/users/buy", json=order,
                                 headers={"Authorization": f"Bearer {token_a}"})
            assert r.status_code == 200, r.text
            for ws in (a1, a2):
                pushed = await next_json(ws)
                assert pushed["type"] == "trade" and pushed["transaction_id"] == r.json()["transaction_id"]
            assert await nothing_arrives(b)

    asyncio.run(scenario())


@pytest.mark.parametrize("token", ["", "garbage", "expired", "other-secret"])
def test_bad_tokens_are_refused_at_connect(gateway, stack, token):
    user, _ = signup(gateway)
    now = int(time.time())
    claims = {"sub": user, "iat": now - 100, "exp": now - 10, "iss": "stockpred", "aud": "stockpred-api",
              "jti": "x", "tv": 0}
    forged = {"expired": jwt.encode(claims, secrets.jwt_secret(), algorithm="HS256"),
              "other-secret": jwt.encode({**claims, "exp": now + 60}, "x" * 40, algorithm="HS256")}
    token = forged.get(token, token)

    async def scenario():
        async with aiohttp.ClientSession() as s:
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await s.ws_connect(ws_url(stack, token))
            assert refused.value.status == 401

    asyncio.run(scenario())


def test_malformed_frames_and_unknown_actions_get_an_error_and_the_socket_stays_open(gateway, stack):
    _, token = signup(gateway)

    async def scenario():
        async with aiohttp.ClientSession() as s:
            ws = await join(s, stack, token)
            for frame in ["not json", "[1, 2]", json.dumps({"action": "dance"}), "{}",
                          json.dumps({"action": "subscribe", "symbol": "$$$"}),
                          json.dumps({"action": "subscribe", "symbol": {"$ne": 1}}),
                          json.dumps({"action": "subscribe"})]:
                await ws.send_str(frame)
                reply = await next_json(ws)
                assert reply["type"] == "error" and reply["error"], frame
            await ws.send_bytes(b"\x00\xff")
            assert (await next_json(ws))["type"] == "error"
            await ws.send_str(json.dumps({"action": "subscribe", "symbol": "spx"}))
            assert await next_json(ws) == {"type": "subscribed", "symbol": "SPX"}
            assert not ws.closed

    asyncio.run(scenario())


def test_a_vanished_client_is_cleaned_up_at_the_next_broadcast(gateway, stack):
    _, token = signup(gateway)
    state = redis_client(stack)
    ghost = "ghost-" + uuid.uuid4().hex[:8]
    state.sadd("stockpred:ws:room:IXIC", ghost)
    state.sadd(f"stockpred:ws:rooms:{ghost}", "IXIC")

    async def scenario():
        async with aiohttp.ClientSession() as s:
            live = await join(s, stack, token, "IXIC")
            await off_thread(gateway.predict, "IXIC")
            assert (await next_json(live, timeout=30))["symbol"] == "IXIC"

    asyncio.run(scenario())

    def forgotten():
        members = {m.decode() for m in state.smembers("stockpred:ws:room:IXIC")}
        return ghost not in members and not state.exists(f"stockpred:ws:rooms:{ghost}")

    # The ghost's 410 comes back to the fan-out function beside the live delivery, not before it.
    deadline = time.time() + 10
    while not forgotten() and time.time() < deadline:
        time.sleep(0.05)
    assert forgotten()


def test_disconnect_leaves_every_room(gateway, stack):
    _, token = signup(gateway)
    state = redis_client(stack)

    async def scenario():
        async with aiohttp.ClientSession() as s:
            ws = await join(s, stack, token, "SPX", "IXIC")
            mgmt = boto3.client("apigatewaymanagementapi", endpoint_url=stack["WS_MANAGEMENT_URL"],
                                region_name="us-east-1",
                                aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
                                aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"])
            members = {m.decode() for m in state.smembers("stockpred:ws:room:SPX")}
            conn_id = next(c for c in members if state.sismember("stockpred:ws:room:IXIC", c)
                           and not c.startswith("ghost"))
            described = await off_thread(mgmt.get_connection, ConnectionId=conn_id)
            assert described["Identity"]["SourceIp"] == "127.0.0.1"
            await off_thread(mgmt.post_to_connection, ConnectionId=conn_id, Data=b'{"hello": 1}')
            assert await next_json(ws) == {"hello": 1}
            await ws.close()
            await asyncio.sleep(0.5)
            assert not state.sismember("stockpred:ws:room:SPX", conn_id)
            assert not state.sismember("stockpred:ws:room:IXIC", conn_id)
            with pytest.raises(mgmt.exceptions.GoneException):
                await off_thread(mgmt.post_to_connection, ConnectionId=conn_id, Data=b"{}")

    asyncio.run(scenario())


@pytest.mark.slow
def test_flooding_and_oversized_frames_are_cut_off_without_harming_others(gateway, stack):
    _, token = signup(gateway)

    async def scenario():
        async with aiohttp.ClientSession() as s:
            bystander = await join(s, stack, token, "IXIC")
            flooder = await join(s, stack, token)
            for _ in range(200):
                if flooder.closed:
                    break
                await flooder.send_str(json.dumps({"action": "subscribe", "symbol": "IXIC"}))
            while not flooder.closed:
                msg = await flooder.receive(timeout=10)
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                    break
            assert flooder.closed or flooder.close_code is not None

            big = await join(s, stack, token)
            await big.send_str("x" * (40 * 1024))
            msg = await big.receive(timeout=10)
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)

            await off_thread(gateway.predict, "IXIC")
            pushed = await next_json(bystander, timeout=30)
            assert pushed["type"] == "prediction" and not bystander.closed

    asyncio.run(scenario())


def test_a_replayed_idempotent_buy_is_confirmed_once(gateway, stack):
    user, token = signup(gateway)

    async def scenario():
        async with aiohttp.ClientSession() as s:
            ws = await join(s, stack, token)
            headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex}
            order = {"user_id": user, "symbol": "SPX", "quantity": 1}
            for _ in range(3):
                r = await off_thread(gateway.post, "/api/users/buy", json=order, headers=headers)
                assert r.status_code == 200
            assert (await next_json(ws))["type"] == "trade"
            assert await nothing_arrives(ws)

    asyncio.run(scenario())


# ---- pushes leave the request path: the push queue and FanoutFunction ---------------------------
def test_a_room_larger_than_a_chunk_gets_the_prediction_once_each(gateway, stack):
    """11 sockets with WS_PUSH_CHUNK=4: one chunk delivered by the room's invocation, two more by
    chunk events on the queue. Everyone gets the one prediction, no one gets it twice."""
    _, token = signup(gateway)

    async def scenario():
        async with aiohttp.ClientSession() as s:
            sockets = [await join(s, stack, token, "SPX") for _ in range(11)]
            r = await off_thread(gateway.predict, "SPX")
            assert r.status_code == 200
            pushed = await asyncio.gather(*[next_json(ws, timeout=30) for ws in sockets])
            assert {(m["type"], m["_id"]) for m in pushed} == {("prediction", r.json()["_id"])}
            assert all(await asyncio.gather(*[nothing_arrives(ws, within=1.0) for ws in sockets]))

    asyncio.run(scenario())


def test_a_push_that_cannot_be_delivered_is_tried_again_until_it_is(gateway, stack):
    """At least once: while every PostToConnection fails, the event waits on the queue (retried
    after 1, 2, 4 s); once deliveries work again, it arrives."""
    _, token = signup(gateway)
    state = redis_client(stack)

    async def scenario():
        async with aiohttp.ClientSession() as s:
            ws = await join(s, stack, token, "IXIC")
            state.sadd("stockpred:faults", "push.post")
            try:
                r = await off_thread(gateway.predict, "IXIC")
                assert r.status_code == 200
                assert await nothing_arrives(ws, within=2.0)
            finally:
                state.srem("stockpred:faults", "push.post")
            pushed = await next_json(ws, timeout=20)
            assert pushed["type"] == "prediction" and pushed["_id"] == r.json()["_id"]

    asyncio.run(scenario())


@pytest.mark.parametrize("body", ["not json", "[1, 2]", '{"kind": "room"}', '{"kind": "nope", "message": {}}',
                                  '{"kind": "connections", "connections": 7, "message": {}}',
                                  "[" * 5000 + "]" * 5000])
def test_a_malformed_push_event_is_dropped_and_pushes_go_on(gateway, stack, body):
    _, token = signup(gateway)
    sqs = boto3.client("sqs", endpoint_url=stack["AWS_ENDPOINT_URL"], region_name=stack["AWS_DEFAULT_REGION"],
                       aws_access_key_id="test", aws_secret_access_key="test")
    sqs.send_message(QueueUrl=stack["PUSH_QUEUE_URL"], MessageBody=body)

    async def scenario():
        async with aiohttp.ClientSession() as s:
            ws = await join(s, stack, token, "SPX")
            r = await off_thread(gateway.predict, "SPX")
            assert (await next_json(ws, timeout=30))["_id"] == r.json()["_id"]

    asyncio.run(scenario())

    def queue_empty():
        attrs = sqs.get_queue_attributes(QueueUrl=stack["PUSH_QUEUE_URL"],
                                         AttributeNames=["All"])["Attributes"]
        return attrs["ApproximateNumberOfMessages"] == attrs["ApproximateNumberOfMessagesNotVisible"] == "0"

    # Dropped, not retried: nothing of it is left waiting or in flight (a failed record would
    # stay in flight for the queue's 60 s visibility timeout).
    deadline = time.time() + 5
    while not queue_empty() and time.time() < deadline:
        time.sleep(0.1)
    assert queue_empty()
