"""The real data services the stack starts: each answers, configured as the later issues need."""

import json
import os
import pwd
import shutil
import signal
import stat
import tempfile
import uuid
from pathlib import Path

import boto3
import psycopg2
import pymongo
import requests
from opensearchpy import OpenSearch

from devstack.binaries import OPENSEARCH_VERSION
from devstack.services import Stack
from devstack.stack_state import DEFAULT_PORTS, redis_client
from devstack.supervisor import pid_alive, wait_until


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
    state = redis_client(stack)
    cache = redis_client(stack, stack["CACHE_REDIS_URLS"].split(",")[0], cache=True)
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


def _uids(pid: int) -> list[int]:
    """Real, effective, saved and filesystem uids of a process."""
    status = Path(f"/proc/{pid}/status").read_text()
    line = next(x for x in status.splitlines() if x.startswith("Uid:"))
    return [int(u) for u in line.split()[1:]]


def test_opensearch_answers_on_loopback_as_its_own_user_with_single_node_indices(stack, stack_handle):
    url = stack["OPENSEARCH_URL"]
    port = stack_handle.ports["opensearch"]
    assert url == f"http://127.0.0.1:{port}" and port != DEFAULT_PORTS["opensearch"]
    assert requests.get(url, timeout=5).json()["version"]["number"] == OPENSEARCH_VERSION
    pid = stack_handle.pid("opensearch")
    assert pid is not None
    if os.geteuid() == 0:  # it refuses to run as root: the stack runs it as `opensearch`
        assert _uids(pid) == [pwd.getpwnam("opensearch").pw_uid] * 4
    client = OpenSearch(url, timeout=30)
    for layer in ("http", "transport"):
        node = next(iter(client.nodes.info(node_id="_local", metric=layer)["nodes"].values()))
        assert {a.rsplit(":", 1)[0] for a in node[layer]["bound_address"]} == {"127.0.0.1"}, node[layer]
    index = f"probe-{uuid.uuid4().hex[:8]}"
    client.indices.create(index=index)
    try:
        settings = client.indices.get_settings(index=index)[index]["settings"]["index"]
        assert settings["number_of_replicas"] == "0"
        health = client.cluster.health(index=index, wait_for_status="green")
        assert health["status"] == "green" and not health["timed_out"]
        client.index(index=index, body={"msg": "hello"}, refresh=True)
        assert client.count(index=index)["count"] == 1
    finally:
        client.indices.delete(index=index)


def test_opensearch_alone_starts_and_down_leaves_no_process():
    """A stack whose other services are external: only OpenSearch runs, and `down` stops it."""
    root = Path(tempfile.mkdtemp(prefix="stockpred-opensearch-"))
    environ = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "HOME")}
    environ.update({"DATABASE_URL": "postgresql://external/db", "REDIS_URL": "redis://external:1/0",
                    "MONGO_URL": "mongodb://external:1/", "AWS_ENDPOINT_URL": "http://external:1"})
    stack = Stack(root, free_ports=True, durable=False, with_gateway=False, environ=environ,
                  log=lambda m: None)
    try:
        assert [s.name for s in stack.services()] == ["opensearch"]
        env = stack.up()
        pid = stack.pid("opensearch")
        assert pid is not None
        assert requests.get(env["OPENSEARCH_URL"] + "/_cluster/health", timeout=5).json()["status"] == "green"
        if os.geteuid() == 0:
            # Its folders are its own; the stack's folder lets it through and shows it nothing.
            for d in ("data/opensearch", "log/opensearch", "data/opensearch-config"):
                st = (root / d).stat()
                assert st.st_uid == pwd.getpwnam("opensearch").pw_uid and stat.S_IMODE(st.st_mode) == 0o700, d
            assert stat.S_IMODE(root.stat().st_mode) == 0o710
            for name in ("env.json", "aws-secret-access-key"):
                assert stat.S_IMODE((root / name).stat().st_mode) == 0o600, name
        stack.down()
        assert not pid_alive(pid)
        assert stack.pid("opensearch") is None and not stack.pidfile("opensearch").exists()
        assert not wait_until(lambda: requests.get(env["OPENSEARCH_URL"], timeout=1).ok, 1)
    finally:
        stack.down()
        shutil.rmtree(root, ignore_errors=True)


def test_an_external_opensearch_is_used_not_started(tmp_path):
    stack = Stack(tmp_path, free_ports=True, with_gateway=False, log=lambda m: None,
                  environ={"OPENSEARCH_URL": "http://search.example:9200"})
    assert "opensearch" not in [s.name for s in stack.services()]
    assert stack.client_env()["OPENSEARCH_URL"] == "http://search.example:9200"
    assert ("OPENSEARCH_URL (external)", "http://search.example:9200", None) in stack.status()


def test_down_stops_every_service_when_its_output_is_gone(tmp_path):
    """A bench piped into `head` loses its stderr; `down` must still stop every process it started."""
    environ = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "HOME")}
    environ.update({"DATABASE_URL": "postgresql://external/db", "MONGO_URL": "mongodb://external:1/",
                    "AWS_ENDPOINT_URL": "http://external:1", "OPENSEARCH_URL": "http://external:1",
                    "STOCKPRED_REDIS_HA": "off"})
    lines: list[str] = []

    def log(line: str) -> None:
        if "stopped" in line:
            raise BrokenPipeError(32, "Broken pipe")
        lines.append(line)

    stack = Stack(tmp_path, free_ports=True, durable=False, with_gateway=False, environ=environ, log=log)
    names = [s.name for s in stack.services()]
    assert len(names) >= 2 and all(n.startswith("redis") for n in names), names
    try:
        stack.up()
        pids = [stack.pid(n) for n in names]
        assert all(pids) and any("ready" in line for line in lines)
        stack.down()
        assert not any(pid_alive(pid) for pid in pids)
    finally:
        for pid in (p for p in (stack.pid(n) for n in names) if p):
            os.kill(pid, signal.SIGTERM)
