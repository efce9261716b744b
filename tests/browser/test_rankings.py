"""The Rankings page and a member's universe rank in its signal panel, in a real browser, against a
universe of 30 synthetic stocks imported from CSV files and ranked as a user would."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from devstack.services import REPO_ROOT
from tests.browser.conftest import axe_violations, screenshot, sign_in

PASSWORD = "s3cret-pass-phrase"
MINUS = "\u2212"  # the page's minus sign


def stockpred(stack: dict[str, str], *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "devstack.cli", *args], env={**os.environ, **stack},
                         capture_output=True, text=True, cwd=REPO_ROOT, timeout=timeout)
    assert out.returncode == 0, f"stockpred {' '.join(args)}: {out.stderr[-3000:]}"
    return out


def signed(value: float, digits: int) -> str:
    """As the page writes a signed number: "+0.123", MINUS + "0.123"."""
    return f"{'+' if value > 0 else MINUS if value < 0 else ''}{abs(value):.{digits}f}"


@pytest.fixture(scope="module")
def ranked(stack: dict[str, str], gateway: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A universe of RK00..RK29 (a planted momentum premium) imported, created and ranked, and its
    best-ranked member's own model trained: the ranking the API serves for the universe."""
    from stockml.synthetic import synthetic_panel, to_bars

    planted = synthetic_panel(30, 1000, seed=5, momentum=0.08, start="2012-01-02")
    folder: Path = tmp_path_factory.mktemp("rankings")
    for i, bars in enumerate(to_bars(planted.panel).values()):
        rows = [f"{b.date},{b.open:.4f},{b.high:.4f},{b.low:.4f},{b.close:.4f},{b.volume}" for b in bars]
        (folder / f"RK{i:02d}.csv").write_text("Date,Open,High,Low,Close,Volume\n" + "\n".join(rows) + "\n")
    name = f"rank-{uuid.uuid4().hex[:6]}"
    stockpred(stack, "import-csv", str(folder))
    stockpred(stack, "universe", "create", name, "--from-csv", str(folder))
    stockpred(stack, "train-universe", name)
    served = gateway.get(f"/api/universes/{name}/ranking")
    assert served.status_code == 200, served.text
    ranking = served.json()
    stockpred(stack, "train", ranking["ranking"][0]["symbol"])  # the best-ranked's own model, for its signal
    return ranking


def test_the_rankings_page_lists_the_universe_and_shows_its_ranking_as_the_api_serves_it(
        page: Any, console: Any, dashboard: str, ranked: dict[str, Any]) -> None:
    name = ranked["universe"]
    page.goto(dashboard + "#/market")
    page.locator("nav[aria-label=Main]").get_by_role("link", name="Rankings").click()
    expect(page).to_have_url(re.compile(r"#/rankings$"))
    page.locator(f"[data-testid=universes] tr[data-universe={name}] a").click()
    expect(page).to_have_url(re.compile(rf"#/rankings/{name}$"))
    expect(page.locator("h1")).to_have_text(f"Rankings: {name}")

    rows = page.locator("[data-testid=ranking] tbody tr")
    expect(rows).to_have_count(30, timeout=20_000)
    members = ranked["ranking"]
    shown = [[cell.strip() for cell in row] for row in rows.evaluate_all(
        "rows => rows.map(r => [r.dataset.symbol, ...[...r.cells].map(c => c.innerText)])")]
    assert [row[1] for row in shown] == [str(r) for r in range(1, 31)]
    assert [(row[0], row[2], row[3], row[4]) for row in shown] == [
        (m["symbol"], m["symbol"], f"{m['percentile']:.1f}", str(m["decile"])) for m in members]
    assert shown[0][5] == signed(members[0]["expected_excess_return"] * 100, 3) + "%"

    expect(page.locator("[data-testid=ranking-as-of]")).to_have_text(
        f"Ranked on {ranked['as_of']} by a ridge ranker, next-day horizon.")
    ic = ranked["record"]["ic"]
    expect(page.locator("[data-testid=ranking-record]")).to_contain_text(
        f"Mean daily rank IC {signed(ic['ic_mean'], 3)} "
        f"(Newey-West t = {ic['t_newey_west']:.1f} over {ic['days']:,} days")
    expect(page.locator("[data-testid=ranking-record]")).to_contain_text(
        f"Sharpe ratio {ranked['record']['long_only']['sharpe']:.2f} after costs, against "
        f"{ranked['record']['equal_weight']['sharpe']:.2f} for holding the whole universe")
    verdict = ("Edge: the top-ranked stocks beat" if ranked["record"]["edge"]
               else "No edge: no evidence the top-ranked stocks beat")
    expect(page.locator("[data-testid=ranking-edge]")).to_have_text(
        f"{verdict} the equal-weight universe after costs (corrected p = {ranked['record']['p_value']:.3f}).")
    expect(page.locator("[data-testid=ranking-means]")).to_contain_text(ranked["expected_excess_return_means"])
    screenshot(page, "rankings-universe")

    first = members[0]["symbol"]
    page.locator(f"[data-testid=ranking] tr[data-symbol={first}] a").click()
    expect(page).to_have_url(re.compile(rf"#/market/{first}$"))
    expect(page.locator("h1")).to_have_text(f"Market: {first}")
    assert console.errors == []


def test_a_universe_that_does_not_exist_shows_the_api_message(page: Any, console: Any, dashboard: str,
                                                              gateway: Any) -> None:
    answer = gateway.get("/api/universes/never-made/ranking")
    assert answer.status_code == 404
    page.goto(dashboard + "#/rankings/never-made")
    expect(page.locator("[data-testid=ranking-error]")).to_have_text(answer.json()["error"])
    expect(page.locator("[data-testid=ranking]")).to_have_count(0)
    expect(page.locator("main")).not_to_contain_text("Something went wrong")
    assert [e for e in console.errors if "uncaught" in e] == []


def test_the_rankings_pages_have_no_serious_or_critical_axe_violation(axe_page: Any, dashboard: str,
                                                                       ranked: dict[str, Any]) -> None:
    found = {}
    for route in ("#/rankings", f"#/rankings/{ranked['universe']}"):
        axe_page.goto(dashboard + route)
        axe_page.wait_for_load_state("networkidle")
        expect(axe_page.locator("main")).not_to_contain_text(re.compile("Loading|…"), timeout=20_000)
        found[route] = axe_violations(axe_page)
    assert found == {route: [] for route in found}, json.dumps(found, indent=1)


def test_a_ranked_member_signal_panel_shows_its_universe_rank(page: Any, console: Any, dashboard: str,
                                                               gateway: Any, ranked: dict[str, Any]) -> None:
    name, best = ranked["universe"], ranked["ranking"][0]
    user = gateway.new_user(password=PASSWORD)
    sign_in(page, dashboard, user.email, PASSWORD)
    page.goto(dashboard + f"#/market/{best['symbol']}")
    expect(page.locator("[data-testid=signal]")).to_contain_text(re.compile(r"\b(buy|sell)\b", re.I),
                                                                timeout=30_000)
    line = page.locator("[data-testid=universe-rank]")
    expect(line).to_have_count(1)
    expect(line).to_contain_text(f"Ranked 1 of 30 in {name} on {ranked['as_of']} "
                                 f"({round(best['percentile'])}th percentile, decile 10")
    screenshot(page, "market-ranked-member")
    line.get_by_role("link", name=name).click()
    expect(page).to_have_url(re.compile(rf"#/rankings/{name}$"))
    top = page.locator("[data-testid=ranking] tbody tr").first
    expect(top).to_have_attribute("data-symbol", best["symbol"])
    assert console.errors == []
