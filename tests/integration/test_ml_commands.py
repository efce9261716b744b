"""`stockpred train` / `evaluate`, the scheduled retrain function, and models kept across restarts."""

import json
import os
import subprocess
import sys

import boto3
import numpy as np
import psycopg2

from devstack.services import REPO_ROOT
from localstack.provision import BUCKETS, provision, snapshot


def cli(stack, *args, timeout=300):
    return subprocess.run([sys.executable, "-m", "devstack.cli", *args], env={**os.environ, **stack},
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=timeout)


def test_evaluate_prints_model_beside_the_four_baselines_and_writes_files(stack, tmp_path):
    out = cli(stack, "evaluate", "ixic", "spx", "--kind", "logreg", "--first-test-date", "2016-01-04",
              "--refit-every", "63", "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "2 symbol(s), 8 tests, every p-value Holm-corrected across all of them" in out.stdout
    spx = json.loads((tmp_path / "evaluate-SPX.json").read_text())
    assert spx["sizing"]["sized_logreg"]["vs_vol_target"]["tests_in_family"] == 8
    for row in ("logreg", "buy_and_hold", "always_up", "yesterday", "sma_20_50"):
        assert f"\n{row} " in out.stdout
    for section in ("volatility forecasts", "QLIKE 1d", "sized strategies", "vol_target", "sized_logreg",
                    "90% interval"):
        assert section in out.stdout, section
    report = json.loads((tmp_path / "evaluate-IXIC.json").read_text())
    assert report["out_of_sample"]["start"] >= "2016-01-04"
    test = report["sizing"]["sized_logreg"]["vs_vol_target"]
    assert report["edge"]["logreg"] is (test["p_value_corrected"] < 0.05)
    assert report["protocol"]["lag"] == 1 and "risk timing" in out.stdout
    assert set(report["baselines"]) == {"buy_and_hold", "always_up", "yesterday", "sma_20_50"}
    assert (tmp_path / "evaluate-IXIC.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_works_on_a_csv_the_user_brings(stack, tmp_path):
    # Six years of a close-only series (no range, no volume), as many downloaded index files are.
    rng = np.random.default_rng(11)
    days = np.busday_offset("2015-01-01", np.arange(1500), roll="forward")
    close = 100 * np.exp(np.cumsum(rng.normal(0.0003, 0.011, len(days))))
    lines = ["Date,Open,High,Low,Close,Volume"]
    lines += [f"{d},{c:.4f},{c:.4f},{c:.4f},{c:.4f},0" for d, c in zip(days, close, strict=True)]
    folder = tmp_path / "csv"
    folder.mkdir()
    (folder / "MYIDX.csv").write_text("\n".join(lines) + "\n")
    assert cli(stack, "import-csv", str(folder)).returncode == 0
    out = cli(stack, "evaluate", "MYIDX", "--kind", "logreg", "--first-test-date", "2018-01-02",
              "--refit-every", "63", "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "evaluate-MYIDX.json").read_text())
    assert report["sizing"]["vol_target"]["sharpe"] is not None
    assert 0.5 < report["sizing"]["vol_target"]["exposure"] <= 1.0
    assert "beats holding the index" in out.stdout


def test_train_publishes_a_model_with_its_record(stack):
    out = cli(stack, "train", "SPX", "--max-exposure", "1.5")
    assert out.returncode == 0, out.stderr
    assert "SPX: model " in out.stdout and "edge=" in out.stdout
    version = out.stdout.split("model ")[1].split()[0]
    conn = psycopg2.connect(stack["DATABASE_URL"])
    with conn.cursor() as cur:
        cur.execute("SELECT metadata FROM models WHERE version = %s", (version,))
        meta = cur.fetchone()[0]
    conn.close()
    for field in ("symbol", "version", "trained_at", "training_window", "features", "params",
                  "metrics", "sklearn_version", "format_version", "sha256", "volatility", "sizing"):
        assert field in meta, field
    record = meta["record"]
    low, high = record["sharpe_difference_interval_90"]
    assert low <= record["sharpe_difference"] <= high
    judgement = record["edge_judgement"]
    assert record["edge"] is (judgement["p_value"] < judgement["alpha"])
    assert judgement["number"] >= 1 and judgement["configurations_tried"] >= 73
    deflated = record["deflated_sharpe"]
    assert deflated["trials"] == judgement["configurations_tried"]
    assert deflated["value"] is None or 0 <= deflated["value"] <= 1
    assert record["p_value"] >= record["p_value_uncorrected"]
    assert record["risk_timing"]["against"] == "holding the index"
    assert record["vs_buy_and_hold"]["against"] == "holding the index"
    assert "plain volatility targeting" in record["verdict"] + record["edge_means"]
    assert f"p = {record['p_value']:.3f}): edge={record['edge']}" in out.stdout
    assert record["verdict"] in out.stdout and "(at most 1.5)" in out.stdout
    assert meta["sizing"]["max_exposure"] == 1.5
    assert cli(stack, "train", "--help").returncode == 0
    for cap in ("9", "0", "lots"):
        refused = cli(stack, "train", "SPX", "--max-exposure", cap)
        assert refused.returncode == 2 and "--max-exposure" in refused.stderr, cap
    bad = cli(stack, "train", "NOPE$")
    assert bad.returncode == 2 and "error" in bad.stderr


def test_scheduled_retrain_trains_what_it_can_and_says_why_not_the_rest(gateway):
    client = boto3.client("lambda", endpoint_url=gateway.url, region_name="us-east-1",
                          aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"])
    from devstack.events import scheduled_event

    out = client.invoke(FunctionName="RetrainFunction", Payload=json.dumps(scheduled_event("AfterClose")))
    assert "FunctionError" not in out
    result = json.loads(out["Payload"].read())
    assert {"SPX", "IXIC"} <= set(result["trained"])
    # Universes stored by other tests are ranked too (or skipped with their reason): symbols here.
    assert all("NotEnoughHistory" in why for name, why in result["skipped"].items()
               if not name.startswith("universe "))


def test_model_bucket_survives_a_restart_through_its_snapshot(stack, tmp_path):
    endpoint = stack["AWS_ENDPOINT_URL"]
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    provision(endpoint)
    bucket = BUCKETS[0]
    s3.put_object(Bucket=bucket, Key="models/TEST/v1/model.npz", Body=b"artifact")
    assert snapshot(endpoint, tmp_path)[bucket] >= 1
    s3.delete_object(Bucket=bucket, Key="models/TEST/v1/model.npz")
    restored = provision(endpoint, tmp_path)
    assert restored[bucket] >= 1
    assert s3.get_object(Bucket=bucket, Key="models/TEST/v1/model.npz")["Body"].read() == b"artifact"
