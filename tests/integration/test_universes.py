"""`stockpred universe` stores named sets of symbols in PostgreSQL; GET /api/universes lists them."""

import json
import os
import re
import subprocess
import sys
import uuid

import psycopg2
import pytest

from devstack.services import REPO_ROOT


def cli(stack, *args):
    return subprocess.run([sys.executable, "-m", "devstack.cli", "universe", *args],
                          env={**os.environ, **stack}, capture_output=True, text=True, cwd=REPO_ROOT,
                          timeout=120)


def test_a_universe_is_created_listed_shown_and_replaced_only_when_asked(stack, gateway, tmp_path):
    name = f"u-{uuid.uuid4().hex[:8]}"
    made = cli(stack, "create", name, "spx", "IXIC", "SPX")
    assert made.returncode == 0, made.stderr
    assert f"universe {name}: 2 symbols (SPX, IXIC)" in made.stdout

    again = cli(stack, "create", name, "SPX", "AAPL")
    assert again.returncode == 2 and "exists: use --replace" in again.stderr

    for symbol in ("MSFT", "AAPL"):
        (tmp_path / f"{symbol}.csv").write_text("Date,Open,High,Low,Close,Volume\n")
    replaced = cli(stack, "create", name, "SPX", "--from-csv", str(tmp_path), "--replace")
    assert replaced.returncode == 0, replaced.stderr
    assert f"universe {name}: 3 symbols (SPX, AAPL, MSFT)" in replaced.stdout

    shown = cli(stack, "show", name)
    assert shown.returncode == 0 and shown.stdout.splitlines()[1] == "SPX AAPL MSFT"
    assert name in cli(stack, "list").stdout

    listed = gateway.get("/api/universes")
    assert listed.status_code == 200, listed.text
    mine = [u for u in listed.json()["universes"] if u["name"] == name]
    assert mine and mine[0]["symbols"] == ["SPX", "AAPL", "MSFT"] and mine[0]["size"] == 3
    assert mine[0]["created_at"].endswith("Z") and mine[0]["updated_at"] >= mine[0]["created_at"]

    conn = psycopg2.connect(stack["DATABASE_URL"])
    with conn, conn.cursor() as cur:
        cur.execute("SELECT symbols FROM universes WHERE name = %s", (name,))
        assert cur.fetchone()[0] == ["SPX", "AAPL", "MSFT"]
    conn.close()


def test_bad_input_is_refused_with_a_reason_and_stores_nothing(stack):
    for args, reason in [(("create", "bad name", "SPX", "IXIC"), "1-40 letters"),
                         (("create", "ok-name", "SPX"), "2 to 5000 distinct symbols"),
                         (("create", "ok-name", "SPX", "no good"), "not symbols: 'no good'"),
                         (("create",), "1-40 letters"),
                         (("show", "never-made"), "no universe never-made")]:
        out = cli(stack, *args)
        assert out.returncode == 2 and reason in out.stderr, (args, out.stderr)
    assert "ok-name" not in cli(stack, "list").stdout


@pytest.fixture(scope="module")
def momentum_universe(stack, tmp_path_factory):
    """30 synthetic stocks over four years with a planted momentum premium, imported from CSV files
    and made a universe, as a user would: (its name, the folder)."""
    from stockml.synthetic import synthetic_panel, to_bars

    planted = synthetic_panel(30, 1000, seed=5, momentum=0.08, start="2012-01-02")
    folder = tmp_path_factory.mktemp("universe")
    for i, bars in enumerate(to_bars(planted.panel).values()):
        rows = [f"{b.date},{b.open:.4f},{b.high:.4f},{b.low:.4f},{b.close:.4f},{b.volume}" for b in bars]
        (folder / f"ZZ{i:02d}.csv").write_text("Date,Open,High,Low,Close,Volume\n" + "\n".join(rows) + "\n")
    imported = subprocess.run([sys.executable, "-m", "devstack.cli", "import-csv", str(folder)],
                              env={**os.environ, **stack}, capture_output=True, text=True, cwd=REPO_ROOT)
    assert imported.returncode == 0, imported.stderr
    universe = f"momentum-{uuid.uuid4().hex[:6]}"
    assert cli(stack, "create", universe, "--from-csv", str(folder)).returncode == 0
    return universe, folder


def stockpred(stack, *args, timeout=300):
    return subprocess.run([sys.executable, "-m", "devstack.cli", *args], env={**os.environ, **stack},
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=timeout)


def test_a_user_imports_csvs_creates_a_universe_and_evaluates_it(stack, momentum_universe, tmp_path):
    universe, _ = momentum_universe
    out = stockpred(stack, "evaluate-universe", universe, "--kind", "ridge", "--refit-every", "126",
                    "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    print(out.stdout)
    report = json.loads((tmp_path / f"evaluate-universe-{universe}.json").read_text())
    assert report["universe"]["name"] == universe and report["universe"]["symbols"] == 30
    assert report["universe"]["left_out"] == {}
    assert report["models"]["ridge"]["ic"]["ic_mean"] > 0.02  # the planted momentum, found
    assert (tmp_path / f"evaluate-universe-{universe}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "ridge" in out.stdout and "equal" in out.stdout.lower()

    unknown = stockpred(stack, "evaluate-universe", "nope-none")
    assert unknown.returncode == 2 and "no universe nope-none" in unknown.stderr


def test_a_trained_universe_ranking_is_served_and_each_member_prediction_carries_its_rank(
        stack, gateway, momentum_universe):
    universe, _ = momentum_universe
    before = gateway.get(f"/api/universes/{universe}/ranking")
    assert before.status_code == 404 and "train-universe" in before.json()["error"]

    trained = stockpred(stack, "train-universe", universe)
    assert trained.returncode == 0, trained.stderr
    print(trained.stdout)
    assert f"universe {universe}: ridge ranker, 30 members ranked on 2015-10-30" in trained.stdout

    served = gateway.get(f"/api/universes/{universe}/ranking")
    assert served.status_code == 200, served.text
    ranking = served.json()
    assert ranking["universe"] == universe and ranking["as_of"] == "2015-10-30"
    members = ranking["ranking"]
    assert [m["rank"] for m in members] == list(range(1, 31))
    assert {m["symbol"] for m in members} == {f"ZZ{i:02d}" for i in range(30)}
    assert ranking["record"]["ic"]["ic_mean"] > 0.02  # the planted momentum, in the served record
    assert members[0]["expected_excess_return"] > members[-1]["expected_excess_return"]

    # A member's prediction says where it stands (its own model trained first, as a user would).
    symbol = members[0]["symbol"]
    assert stockpred(stack, "train", symbol).returncode == 0
    predicted = gateway.predict(symbol)
    assert predicted.status_code == 200, predicted.text
    ranks = [r for r in predicted.json()["universe_ranks"] if r["universe"] == universe]
    assert ranks == [{"universe": universe, "as_of": "2015-10-30", "horizon_days": 1, "rank": 1,
                      "of": 30, "percentile": members[0]["percentile"], "decile": 10,
                      "expected_excess_return": members[0]["expected_excess_return"],
                      "edge": ranking["record"]["edge"]}]

    for path, status in ((f"/api/universes/never-{uuid.uuid4().hex[:6]}/ranking", 404),
                         ("/api/universes/bad%20name/ranking", 400),
                         ("/api/universes/%E2%80%8Bzero-width/ranking", 400)):
        answer = gateway.get(path)
        assert answer.status_code == status, (path, answer.text)


def test_the_retrain_function_ranks_a_universe_when_asked(gateway, momentum_universe):
    import boto3

    from devstack.events import scheduled_event

    universe, _ = momentum_universe
    client = boto3.client("lambda", endpoint_url=gateway.url, region_name="us-east-1",
                          aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"])
    unknown = f"never-{uuid.uuid4().hex[:6]}"
    event = {**scheduled_event("AfterClose"), "universes": [universe, unknown]}
    out = client.invoke(FunctionName="RetrainFunction", Payload=json.dumps(event))
    assert "FunctionError" not in out
    result = json.loads(out["Payload"].read())
    assert result["trained"] == {}  # named universes only: no symbol retrained
    assert result["ranked"] == {universe: "2015-10-30"}
    assert "UnknownUniverse" in result["skipped"][f"universe {unknown}"]
    served = gateway.get(f"/api/universes/{universe}/ranking").json()
    assert served["as_of"] == "2015-10-30" and len(served["ranking"]) == 30


def test_every_configuration_tried_on_a_universe_is_counted_and_its_edge_is_not_rejudged_daily(
        stack, gateway, momentum_universe, tmp_path):
    _, folder = momentum_universe
    universe = f"counted-{uuid.uuid4().hex[:6]}"
    assert cli(stack, "create", universe, "--from-csv", str(folder)).returncode == 0
    said = re.compile(r"judgement (\d+) of this universe, made (now|earlier) .*; (\d+) configurations")

    def train() -> tuple[int, str, int]:
        out = stockpred(stack, "train-universe", universe)
        assert out.returncode == 0, out.stderr
        number, when, counted = said.search(out.stdout).groups()
        return int(number), when, int(counted)

    assert train() == (1, "now", 1)  # one ridge configuration a run
    record = gateway.get(f"/api/universes/{universe}/ranking").json()["record"]
    assert record["trials"] == record["trials_counted"] == 1
    assert record["edge_judgement"]["number"] == 1 and record["edge"] is record["edge_judgement"]["edge"]
    # The same record retrained (as the schedule does daily): counted again, the verdict kept.
    assert train() == (1, "earlier", 2)
    # A user's evaluation counts too, and the deflated Sharpe takes every one.
    out = stockpred(stack, "evaluate-universe", universe, "--kind", "ridge", "--refit-every", "126",
                    "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / f"evaluate-universe-{universe}.json").read_text())
    assert report["trials"] == 1 and report["trials_counted"] == 3
    assert train() == (1, "earlier", 4)
