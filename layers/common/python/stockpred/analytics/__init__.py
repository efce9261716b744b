"""The data warehouse: the ETL into a star schema of Parquet files on S3 (`etl`), their
compaction (`compaction`), the files and manifest both go through (`lake`), and the analytics read
from them (`reports`).

Layout under `s3://<WAREHOUSE_BUCKET>/warehouse/` (Hive-style partitions, what Glue and Athena read):
    fact_trades/trade_month=YYYY-MM/part-<run>.parquet       new trades of each run, by month
    fact_trades/trade_month=YYYY-MM/compact-<run>.parquet    the month's closed days, compacted
    fact_predictions/as_of_month=YYYY-MM/...                 predictions and outcomes, the same way
    fact_prices/year=YYYY/...                                daily bars, by year
    dim_symbol/, dim_user/, dim_date/  part-<run>.parquet    rebuilt by every run
    _manifest.json                                           what is committed, and the marks

See docs/warehouse.md for the run, the checks and compaction.
"""
