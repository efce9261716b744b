"""`stockpred import-csv`: all files land in PostgreSQL, or none do when any row is bad."""

import os
import subprocess
import sys

import psycopg2

from devstack.services import REPO_ROOT

GOOD = "Date,Open,High,Low,Close,Volume\n2024-01-02,10,11,9,10.5,1000\n2024-01-03,10.5,12,10,11.5,1500\n"


def run_import(folder, env):
    return subprocess.run([sys.executable, "-m", "devstack.cli", "import-csv", str(folder)],
                          env={**os.environ, **env}, capture_output=True, text=True, cwd=REPO_ROOT,
                          timeout=60)


def rows(env, symbol):
    conn = psycopg2.connect(env["DATABASE_URL"])
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM price_history WHERE symbol = %s AND source = 'csv'",
                    (symbol,))
        n = cur.fetchone()[0]
    conn.close()
    return n


def test_good_folder_is_imported(stack, tmp_path):
    (tmp_path / "ACMEA.csv").write_text(GOOD)
    (tmp_path / "acmeb.csv").write_text(GOOD)
    result = run_import(tmp_path, stack)
    assert result.returncode == 0, result.stderr
    assert "imported ACMEA: 2 daily bars" in result.stdout
    assert rows(stack, "ACMEA") == 2 and rows(stack, "ACMEB") == 2
    # Importing again changes nothing: rows are keyed by symbol, source and day.
    assert run_import(tmp_path, stack).returncode == 0
    assert rows(stack, "ACMEA") == 2


def test_one_bad_row_imports_nothing_and_names_the_line(stack, tmp_path):
    (tmp_path / "GOODX.csv").write_text(GOOD)
    (tmp_path / "BADX.csv").write_text(GOOD + "2024-01-04,10,9,11,10,100\n")
    result = run_import(tmp_path, stack)
    assert result.returncode == 1
    assert "BADX.csv:4:" in result.stderr
    assert rows(stack, "GOODX") == 0 and rows(stack, "BADX") == 0


def test_help_and_missing_folder(stack, tmp_path):
    assert "import-csv" in subprocess.run([sys.executable, "-m", "devstack.cli", "--help"],
                                          capture_output=True, text=True).stdout
    result = run_import(tmp_path / "nope", stack)
    assert result.returncode == 2 and "not a folder" in result.stderr


def test_upload_to_the_market_data_bucket_then_the_s3_provider_serves_it(stack, tmp_path):
    """On AWS the database is private: `import-csv --to s3://...` is how imported data reaches it."""
    import boto3

    from stockpred import config
    from stockpred.market.csv_prices import S3CsvProvider

    (tmp_path / "ACMES3.csv").write_text(GOOD)
    result = subprocess.run([sys.executable, "-m", "devstack.cli", "import-csv", str(tmp_path),
                             "--to", "s3://stockpred-market-data"],
                            env={**os.environ, **stack}, capture_output=True, text=True, cwd=REPO_ROOT,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "uploaded ACMES3: 2 daily bars" in result.stdout
    config.load.cache_clear()
    s3 = boto3.client("s3", endpoint_url=stack["AWS_ENDPOINT_URL"], region_name="us-east-1",
                      aws_access_key_id="test", aws_secret_access_key="test")
    provider = S3CsvProvider(s3, "stockpred-market-data")
    assert "ACMES3" in {i.symbol for i in provider.symbols()}
    bars = provider.daily_bars("ACMES3")
    assert [b.close for b in bars] == [10.5, 11.5]
    assert provider.quote("ACMES3").price == 11.5
    assert provider.daily_bars("NOPE") is None


def test_a_bad_file_uploads_nothing(stack, tmp_path):
    import boto3

    (tmp_path / "GOODUP.csv").write_text(GOOD)
    (tmp_path / "BADUP.csv").write_text(GOOD + "2024-01-04,10,9,11,10,5\n")
    result = subprocess.run([sys.executable, "-m", "devstack.cli", "import-csv", str(tmp_path),
                             "--to", "s3://stockpred-market-data/other"],
                            env={**os.environ, **stack}, capture_output=True, text=True, cwd=REPO_ROOT,
                            timeout=60)
    assert result.returncode == 1 and "BADUP.csv:4" in result.stderr
    s3 = boto3.client("s3", endpoint_url=stack["AWS_ENDPOINT_URL"], region_name="us-east-1",
                      aws_access_key_id="test", aws_secret_access_key="test")
    assert s3.list_objects_v2(Bucket="stockpred-market-data", Prefix="other/").get("KeyCount") == 0
