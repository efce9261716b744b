"""The Operations page in a real browser: an operator sees each dependency's health, the
template's alarms with their states and the last hour's traffic, as the APIs serve them; anyone
else is told it is for operators; axe finds nothing serious."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import Any

from playwright.sync_api import expect

from devstack.services import REPO_ROOT
from tests.browser.conftest import axe_violations, screenshot, sign_in

PASSWORD = "s3cret-pass-phrase"
DEPENDENCIES = ["postgres", "mongo", "state_redis", "cache_ring", "step_functions", "market_breaker",
                "opensearch"]


def operator(gateway: Any, stack: dict[str, str]) -> Any:
    user = gateway.new_user(password=PASSWORD)
    granted = subprocess.run([sys.executable, "-m", "devstack.cli", "users", "grant", user.email, "admin"],
                             env={**os.environ, **stack}, cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=60)
    assert granted.returncode == 0, granted.stderr
    return user


def test_an_operator_sees_health_alarms_and_traffic_as_the_apis_serve_them(
        page: Any, console: Any, dashboard: str, gateway: Any, stack: dict[str, str]) -> None:
    user = operator(gateway, stack)
    for _ in range(3):
        assert gateway.get("/api/stocks/SPX/details").status_code == 200
    sign_in(page, dashboard, user.email, PASSWORD)
    page.click('a[href="#/operations"]')
    expect(page.locator("h1")).to_have_text("Operations")

    health = page.locator("[data-testid=health] tbody tr")
    expect(health).to_have_count(len(DEPENDENCIES))
    for name in DEPENDENCIES:
        row = page.locator(f"[data-testid=health] tr[data-dependency={name}]")
        expect(row).to_have_attribute("data-state", "up")
        expect(row.locator("td[data-col=status]")).to_have_text("Up")
    expect(page.locator("[data-testid=health-status]")).to_contain_text("Overall: OK")

    served = gateway.get("/api/ops/alarms", headers=user.headers).json()
    counts = served["counts"]
    expect(page.locator("[data-testid=alarms] tbody tr")).to_have_count(counts["OK"] + counts["ALARM"])
    users_errors = page.locator("[data-testid=alarms] tr[data-alarm=local-UsersErrorsAlarm]")
    expect(users_errors).to_have_attribute("data-state", re.compile("OK|ALARM"))
    # The alarms on metrics that exist on AWS only are folded away, and there when opened.
    no_data = page.locator("[data-testid=alarms-no-data] tbody tr")
    expect(no_data).to_have_count(counts["INSUFFICIENT_DATA"])
    page.locator("details summary", has_text="without data here").click()
    rds = page.locator("[data-testid=alarms-no-data] tr[data-alarm=local-DatabaseCpuAlarm]")
    expect(rds.locator("td[data-col=state]")).to_have_text("Insufficient data")
    expect(rds.locator("td[data-col=reason]")).to_contain_text("AWS only")
    expect(page.locator("[data-testid=alarm-status]")).to_contain_text(
        f"{served['counts']['INSUFFICIENT_DATA']} without data here")

    # The details requests above reach the metric indices within seconds; Refresh shows them.
    stocks = page.locator("[data-testid=traffic] tr", has_text="GET /api/stocks/{symbol}/details")
    for _ in range(20):
        if stocks.count():
            break
        page.get_by_role("button", name="Refresh").click()
        page.wait_for_timeout(500)
    expect(stocks.first.locator("td[data-col=function]")).to_have_text("StocksFunction")
    assert int(stocks.first.locator("td[data-col=requests]").inner_text().replace(",", "")) >= 3
    expect(page.locator("[data-testid=counts] tbody tr")).to_have_count(7)
    screenshot(page, "operations")
    assert not console.errors, console.errors


def test_an_open_breaker_shows_as_degraded_in_words_and_the_rest_stays_up(
        page: Any, dashboard: str, gateway: Any, stack: dict[str, str], state: Any) -> None:
    """The provider's breaker opened (its state, as pybreaker keeps it in the state Redis): the
    platform works on the other providers, so the page says Degraded, not Down."""
    user = operator(gateway, stack)
    key = "stockpred:breaker:alphavantage:pybreaker:state"
    before = state.get(key)
    state.set(key, "open")
    try:
        sign_in(page, dashboard, user.email, PASSWORD)
        page.goto(dashboard + "#/operations")
        row = page.locator("[data-testid=health] tr[data-dependency=market_breaker]")
        expect(row).to_have_attribute("data-state", "degraded")
        expect(row.locator("td[data-col=status]")).to_have_text("Degraded")
        expect(row.locator("td[data-col=detail]")).to_contain_text("breaker is open")
        expect(page.locator("[data-testid=health-status]")).to_contain_text("Overall: Degraded")
        expect(page.locator("[data-testid=health] tr[data-state=up]")).to_have_count(len(DEPENDENCIES) - 1)
    finally:
        if before is None:
            state.delete(key)
        else:
            state.set(key, before)


def test_the_operations_page_tells_anyone_else_it_is_for_operators(
        page: Any, dashboard: str, gateway: Any) -> None:
    page.goto(dashboard + "#/operations")
    expect(page.locator("main")).to_contain_text("Operators only")
    user = gateway.new_user(password=PASSWORD)
    sign_in(page, dashboard, user.email, PASSWORD)
    expect(page.locator('a[href="#/operations"]')).to_have_count(0)
    page.goto(dashboard + "#/operations")
    expect(page.locator("main")).to_contain_text("Operators only")
    expect(page.locator("[data-testid=health]")).to_have_count(0)


def test_axe_finds_no_serious_violation_on_the_operations_page(
        axe_page: Any, dashboard: str, gateway: Any, stack: dict[str, str]) -> None:
    user = operator(gateway, stack)
    sign_in(axe_page, dashboard, user.email, PASSWORD)
    axe_page.goto(dashboard + "#/operations")
    expect(axe_page.locator("[data-testid=alarms] tbody tr").first).to_be_visible(timeout=15_000)
    expect(axe_page.locator("[data-testid=health] tbody tr").first).to_be_visible()
    assert axe_violations(axe_page) == []
