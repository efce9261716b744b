"""The real data services the stack starts: each answers, configured as the later issues need."""

import json
import uuid

import boto3
import psycopg2
import pymongo
import redis

from devstack.services import wait_until


def test_postgres_allows_two_phase_commit_for_every_connection(stack):
    conn = psycopg2.connect(stack["DATABASE_URL"])
    with conn.cursor() as cur:
        cur.execute("SHOW max_prepared_transactions")
        prepared = int(cur.fetchone()[0])
        cur.execute("SHOW max_connections")
        assert prepared >= int(cur.fetchone()[0])
        cur.execute("SHOW listen_addresses")
        assert cur.fetchone()[0] == "127.0.0.1"
    conn.close()


def test_prepared_transaction_is_invisible_until_committed(stack):
    admin = psycopg2.connect(stack["DATABASE_URL"])
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS tpc_probe (id text PRIMARY KEY)")
    row_id, gid = str(uuid.uuid4()), f"probe-{uuid.uuid4()}"
    conn = psycopg2.connect(stack["DATABASE_URL"])
    conn.tpc_begin(gid)
    with conn.cursor() as cur:
        cur.execute("INSERT INTO tpc_probe VALUES (%s)", (row_id,))
    conn.tpc_prepare()
    with admin.cursor() as cur:
        cur.execute("SELECT count(*) FROM tpc_probe WHERE id = %s", (row_id,))
        assert cur.fetchone()[0] == 0
        cur.execute("SELECT count(*) FROM pg_prepared_xacts WHERE gid = %s", (gid,))
        assert cur.fetchone()[0] == 1
    conn.tpc_commit()
    with admin.cursor() as cur:
        cur.execute("SELECT count(*) FROM tpc_probe WHERE id = %s", (row_id,))
        assert cur.fetchone()[0] == 1
    conn.close()
    admin.close()


def test_ferretdb_speaks_the_mongodb_wire_protocol(stack):
    client = pymongo.MongoClient(stack["MONGO_URL"], serverSelectionTimeoutMS=3000)
    coll = client["stockpred_test"]["roundtrip"]
    doc_id = str(uuid.uuid4())
    coll.insert_one({"_id": doc_id, "cash_cents": 10_000_000, "tags": ["a", "b"]})
    assert coll.find_one({"_id": doc_id}) == {"_id": doc_id, "cash_cents": 10_000_000,
                                              "tags": ["a", "b"]}
    with pytest_raises_duplicate():
        coll.insert_one({"_id": doc_id})
    client.close()


class pytest_raises_duplicate:
    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        assert exc_type is pymongo.errors.DuplicateKeyError, f"expected a duplicate key, got {exc!r}"
        return True


def test_state_and_cache_are_separate_redis_servers(stack):
    state = redis.Redis.from_url(stack["REDIS_URL"])
    cache = redis.Redis.from_url(stack["CACHE_REDIS_URLS"].split(",")[0])
    key = f"probe:{uuid.uuid4()}"
    state.set(key, "state")
    assert cache.get(key) is None
    assert state.info("server")["tcp_port"] != cache.info("server")["tcp_port"]


def test_moto_serves_s3_and_executes_state_machines(stack):
    s3 = boto3.client("s3", endpoint_url=stack["AWS_ENDPOINT_URL"], region_name="us-east-1")
    bucket = f"probe-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"v")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"
    sfn = boto3.client("stepfunctions", endpoint_url=stack["AWS_ENDPOINT_URL"], region_name="us-east-1")
    definition = {"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": {"x": 1}, "End": True}}}
    arn = sfn.create_state_machine(name=f"probe-{uuid.uuid4().hex[:8]}", definition=json.dumps(definition),
                                   roleArn="arn:aws:iam::123456789012:role/probe")["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=arn, input="{}")["executionArn"]
    assert wait_until(lambda: sfn.describe_execution(executionArn=execution)["status"] == "SUCCEEDED", 10)
    assert json.loads(sfn.describe_execution(executionArn=execution)["output"]) == {"x": 1}
