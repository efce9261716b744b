"""The analytics read from the warehouse (the ETL function's GET routes and `stockpred report`):
each query reads only the partitions and columns it needs, through an in-process DuckDB.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from stockpred.analytics import lake


def signals(symbol: str | None, start: dt.date | None, end: dt.date | None) -> list[dict[str, Any]]:
    """Per symbol and month: predictions with an outcome, hit rate, mean realised return after buy
    and after sell (reading only the months asked for, and only the columns needed)."""
    where, params = ["correct IS NOT NULL"], []
    if symbol:
        where.append("symbol = ?")
        params.append(symbol)
    if start:
        where.append("CAST(as_of AS DATE) >= ?")
        params.append(start)
    if end:
        where.append("CAST(as_of AS DATE) <= ?")
        params.append(end)
    manifest = lake.read_manifest() or lake.empty_manifest()
    keys = lake.committed_keys(manifest, "fact_predictions", start and start.strftime("%Y-%m"),
                 end and end.strftime("%Y-%m"))
    columns = ["prediction_id", "updated_at", "symbol", "as_of", "action", "correct", "realised_return"]
    rows = lake.connect(manifest, ("fact_predictions",), columns={"fact_predictions": columns},
                   keys={"fact_predictions": keys}).execute(f"""
        SELECT symbol, substr(as_of, 1, 7) AS month, count(*) AS predictions,
               avg(CAST(correct AS DOUBLE)) AS hit_rate,
               avg(realised_return) FILTER (WHERE action = 'buy') AS mean_return_after_buy,
               avg(realised_return) FILTER (WHERE action = 'sell') AS mean_return_after_sell,
               count(*) FILTER (WHERE action = 'buy') AS buys,
               count(*) FILTER (WHERE action = 'sell') AS sells
        FROM fact_predictions WHERE {' AND '.join(where)}
        GROUP BY 1, 2 ORDER BY 1, 2""", params).fetchall()
    cols = ("symbol", "month", "predictions", "hit_rate", "mean_return_after_buy",
            "mean_return_after_sell", "buys", "sells")
    return [dict(zip(cols, r, strict=True)) for r in rows]


def trading() -> list[dict[str, Any]]:
    """Per day: trades, volume and realised P&L (sells), in cents (reading only those columns)."""
    columns = ["trade_date", "quantity", "amount_cents", "realised_pnl_cents"]
    rows = lake.connect(tables=("fact_trades",), columns={"fact_trades": columns}).execute("""
        SELECT trade_date, count(*) AS trades, sum(quantity) AS shares,
               sum(amount_cents) AS volume_cents,
               coalesce(sum(realised_pnl_cents), 0) AS realised_pnl_cents
        FROM fact_trades GROUP BY 1 ORDER BY 1""").fetchall()
    cols = ("date", "trades", "shares", "volume_cents", "realised_pnl_cents")
    return [dict(zip(cols, (str(r[0]), *map(int, r[1:])), strict=True)) for r in rows]
