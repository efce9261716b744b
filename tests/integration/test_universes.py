"""`stockpred universe` stores named sets of symbols in PostgreSQL; GET /api/universes lists them."""

import os
import subprocess
import sys
import uuid

import psycopg2

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


def test_a_user_imports_csvs_creates_a_universe_and_evaluates_it(stack, tmp_path):
    import json

    from stockml.synthetic import synthetic_panel, to_bars

    # 30 synthetic stocks over four years with a planted momentum premium, as CSV files.
    planted = synthetic_panel(30, 1000, seed=5, momentum=0.08, start="2012-01-02")
    folder = tmp_path / "universe"
    folder.mkdir()
    names = {}
    for i, (symbol, bars) in enumerate(to_bars(planted.panel).items()):
        name = names[symbol] = f"ZZ{i:02d}"
        rows = [f"{b.date},{b.open:.4f},{b.high:.4f},{b.low:.4f},{b.close:.4f},{b.volume}" for b in bars]
        (folder / f"{name}.csv").write_text("Date,Open,High,Low,Close,Volume\n" + "\n".join(rows) + "\n")
    imported = subprocess.run([sys.executable, "-m", "devstack.cli", "import-csv", str(folder)],
                              env={**os.environ, **stack}, capture_output=True, text=True, cwd=REPO_ROOT)
    assert imported.returncode == 0, imported.stderr
    universe = f"momentum-{uuid.uuid4().hex[:6]}"
    assert cli(stack, "create", universe, "--from-csv", str(folder)).returncode == 0

    out = subprocess.run([sys.executable, "-m", "devstack.cli", "evaluate-universe", universe,
                          "--kind", "ridge", "--refit-every", "126", "--out", str(tmp_path)],
                         env={**os.environ, **stack}, capture_output=True, text=True, cwd=REPO_ROOT,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    print(out.stdout)
    report = json.loads((tmp_path / f"evaluate-universe-{universe}.json").read_text())
    assert report["universe"]["name"] == universe and report["universe"]["symbols"] == 30
    assert report["universe"]["left_out"] == {}
    assert report["models"]["ridge"]["ic"]["ic_mean"] > 0.02  # the planted momentum, found
    assert (tmp_path / f"evaluate-universe-{universe}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "ridge" in out.stdout and "equal" in out.stdout.lower()

    unknown = subprocess.run([sys.executable, "-m", "devstack.cli", "evaluate-universe", "nope-none"],
                             env={**os.environ, **stack}, capture_output=True, text=True, cwd=REPO_ROOT)
    assert unknown.returncode == 2 and "no universe nope-none" in unknown.stderr
