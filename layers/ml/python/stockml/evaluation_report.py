"""Presentation of an evaluation (stockml.evaluation): its plain-text tables and its chart.

`format_table` prints the models beside the baselines, then `volatility_table` (the volatility
forecasts' scores) and `sizing_table` (the sized strategies, their tests and the verdicts in plain
words); `plot_report` draws the equity curves, exposures and volatility forecast to a PNG.
Training-side tooling: numpy, no pandas; `plot_report` imports matplotlib only when called.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from stockml.features import rolling_mean
from stockml.scoring import strategy_returns
from stockml.text_tables import aligned, cell
from stockml.walk_forward import executed

if TYPE_CHECKING:
    from stockml.evaluation import Evaluation


TABLE_COLUMNS = (
    ("accuracy", "accuracy", "pct"),
    ("balanced acc", "balanced_accuracy", "pct"),
    ("Brier", "brier", ".4f"),
    ("IC mean", "ic_mean", "+.3f"),
    ("IC IR", "ic_ir", "+.2f"),
    ("ann. return", "annual_return", "pct"),
    ("Sharpe", "sharpe", ".2f"),
    ("max DD", "max_drawdown", "pct"),
    ("turnover", "turnover", ".1f"),
)


def format_table(report: dict[str, Any]) -> str:
    """Plain-text table: models and baselines (rows) against the headline metrics (columns)."""
    p, period = report["protocol"], report["out_of_sample"]
    rows = [(kind, m) for kind, m in report["models"].items()]
    rows += [(name, m) for name, m in report["baselines"].items()]
    header = ["", *(title for title, _, _ in TABLE_COLUMNS)]
    body = [[name, *(cell(m.get(key), style) for _, key, style in TABLE_COLUMNS)] for name, m in rows]
    table = aligned(header, body)
    models = len(report["models"])
    out = [
        f"{report['symbol']}: out-of-sample {period['start']} to {period['end']} ({period['days']} days)",
        f"{p['validation']}; {p['strategy']}, {p['trade_cost_bps']:g} bps per unit traded "
        f"({p['cost_bps']:g} cost + half a {p['spread_bps']:g} bps spread); {p['execution']}",
        f"first test date {p['first_test_date']}: {p['first_test_date_reason']}",
        *table[: 3 + models], table[0], *table[3 + models:],  # a rule between models and baselines
    ]
    out += ["", *volatility_table(report), "", *sizing_table(report)]
    return "\n".join(out)


def volatility_table(report: dict[str, Any]) -> list[str]:
    """Lines: each volatility model's QLIKE and MSE per horizon, with Diebold-Mariano p-values of
    beating the naive 21-day forecast (one-sided; small means better than naive)."""
    scores = report["volatility"]
    horizons = list(next(iter(scores.values())))
    header = [""]
    for h in horizons:
        header += [f"QLIKE {h}d", "p", f"MSE {h}d", "p"]
    body = []
    for kind, by_h in scores.items():
        row = [kind]
        for h in horizons:
            s = by_h[h]
            row += [cell(s["qlike"], ".4f"), cell(s.get("dm_qlike_p"), ".3f"), cell(s["mse"], ".3f"),
                    cell(s.get("dm_mse_p"), ".3f")]
        body.append(row)
    return [f"volatility forecasts (variance of percent returns; target: mean squared return of the next "
            f"h days; p: Diebold-Mariano, beats naive), {report['protocol']['volatility']}",
            *aligned(header, body)]


def sizing_table(report: dict[str, Any]) -> list[str]:
    """Lines: the sized strategies beside buy and hold, each Sharpe difference with its 90%
    interval and Holm-corrected p-value, against holding and against plain volatility targeting;
    then the verdicts in plain words: edge (direction skill) apart from risk timing."""
    header = ["", "ann. return", "Sharpe", "max DD", "exposure", "turnover", "dSharpe vs hold",
              "90% interval", "p (corr.)", "dSharpe vs vol target", "90% interval", "p (corr.)"]
    body = []

    def cells(test: dict[str, Any]) -> list[str]:
        if not test:
            return ["", "", ""]
        low, high = test.get("interval_90") or (None, None)
        return [cell(test.get("difference"), "+.3f"), f"[{cell(low, '+.3f')}, {cell(high, '+.3f')}]",
                cell(test.get("p_value_corrected"), ".3f")]

    for name, m in report["sizing"].items():
        body.append([name, cell(m["annual_return"], "pct"), cell(m["sharpe"], ".2f"),
                     cell(m["max_drawdown"], "pct"), cell(m["exposure"], ".2f"), cell(m["turnover"], ".1f"),
                     *cells(m.get("vs_buy_and_hold") or {}), *cells(m.get("vs_vol_target") or {})])
    words = []
    timing = report.get("risk_timing")
    if timing:
        words.append(f"risk timing (vol_target against holding): {'yes' if timing['edge'] else 'no'}, "
                     f"{timing['words']}")
    for kind, edge in report.get("edge", {}).items():
        test = report["sizing"][f"sized_{kind}"]["vs_vol_target"]
        words.append(f"edge of {kind} (direction skill: sized_{kind} against vol_target): "
                     f"{'EDGE' if edge else 'no edge'}, {test['words']}")
    for kind, m in report["models"].items():
        test = m.get("vs_buy_and_hold") or {}
        if test:
            words.append(f"{kind} long/flat: Sharpe {cell(m['sharpe'], '.2f')}, difference "
                         f"{cell(test['difference'], '+.3f')}, {test['words']}")
    p = report["protocol"]
    risk_header = ["", "Sortino", "Calmar", "max DD days", "IR vs hold", "beta", "alpha", "PSR",
                   f"DSR ({p['configurations']} trials)"]
    risk_body = [[name, cell(m.get("sortino"), ".2f"), cell(m.get("calmar"), ".2f"),
                  cell(m.get("max_drawdown_days"), "d"), cell(m.get("information_ratio"), "+.2f"),
                  cell(m.get("beta"), ".2f"), cell(m.get("alpha"), "pct"), cell(m.get("psr"), ".3f"),
                  cell(m.get("deflated_sharpe"), ".3f")] for name, m in report["sizing"].items()]
    by_year = {name: {row["year"]: row["return"] for row in m.get("yearly") or []}
               for name, m in report["sizing"].items()}
    years = sorted({year for returns in by_year.values() for year in returns})
    year_body = [[str(year), *(cell(returns.get(year), "pct") for returns in by_year.values())]
                 for year in years]
    words += ["", "risk and performance (IR, beta, alpha against holding; PSR: chance the true Sharpe is "
              "above 0; DSR: the same against the best of the trials an evaluation makes)",
              *aligned(risk_header, risk_body), "", "return by calendar year",
              *aligned(["year", *by_year], year_body)]
    return [f"sized strategies: exposure in [0, {p['max_exposure']:g}], {p['trade_cost_bps']:g} bps per "
            f"unit of turnover, traded {p['lag']} bar(s) late; p: studentised bootstrap, Holm-corrected "
            f"across the evaluation's tests; edge = corrected p < 0.05 against vol_target",
            *aligned(header, body), *words]


def plot_report(report: dict[str, Any], series: Evaluation, path: str | Path) -> Path:
    """PNG: after-cost equity curves (buy and hold, volatility-targeted, each model sized and
    long/flat), the exposures, and the forecast against the realised 21-day volatility."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    cost = report["protocol"]["trade_cost_bps"]
    fig = Figure(figsize=(11, 10), layout="constrained")
    equity_ax, exposure_ax, vol_ax = fig.subplots(3, 1, sharex=True, height_ratios=[2.2, 1, 1])
    dates = series.dates
    styles = {"buy_and_hold": {"color": "black", "lw": 1.4}, "vol_target": {"lw": 1.4}}
    for name, pos in series.positions.items():
        curve = (1 + strategy_returns(pos, series.realised, cost)).cumprod()
        m = report["sizing"][name]
        p_value = (m.get("vs_buy_and_hold") or {}).get("p_value_corrected")
        label = f"{name} (Sharpe {cell(m['sharpe'], '.2f')}" + (f", p = {p_value:.2f})" if p_value is not None
                                                                 else ")")
        equity_ax.plot(dates, curve, label=label, **styles.get(name, {"lw": 1}))
        if name != "buy_and_hold":
            exposure_ax.plot(dates, pos, label=name, **styles.get(name, {"lw": 0.8}))
    for kind, oos in series.models.items():
        held = executed(oos.buy.astype(float), report["protocol"]["lag"])
        curve = (1 + strategy_returns(held, oos.realised_return, cost)).cumprod()
        equity_ax.plot(oos.dates, curve, lw=0.8, ls="--",
                       label=f"{kind} long/flat (Sharpe {cell(report['models'][kind]['sharpe'], '.2f')})")
    equity_ax.set_yscale("log")
    plain = FuncFormatter(lambda y, _: f"{y:g}")
    equity_ax.yaxis.set_major_formatter(plain)
    equity_ax.yaxis.set_minor_formatter(plain)
    equity_ax.set_ylabel(f"growth of 1 (after {cost:g} bps per unit traded)")
    equity_ax.set_title(f"{report['symbol']}: out-of-sample walk-forward")
    equity_ax.legend(loc="upper left", fontsize=8)
    exposure_ax.set_ylabel("exposure")
    exposure_ax.legend(loc="lower left", fontsize=8)
    realised = np.sqrt(rolling_mean(series.realised ** 2, 21) * 252)
    vol_ax.plot(dates, np.sqrt(series.volatility[21] * 252) / 100, lw=1,
                label="forecast, next 21 days (selected model)")
    vol_ax.plot(dates, realised, lw=0.8, color="grey", label="realised, last 21 days")
    vol_ax.set_ylabel("annualised volatility")
    vol_ax.legend(loc="upper right", fontsize=8)
    for ax in (equity_ax, exposure_ax, vol_ax):
        ax.grid(alpha=0.3)
    path = Path(path)
    fig.savefig(path, dpi=110)
    return path
