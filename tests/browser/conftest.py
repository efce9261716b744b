"""Browser fixtures: Debian's chromium driven by Playwright (never `playwright install`), against
the session's devstack, which serves the dashboard from its own origin.

Screenshots of each page land in `test-results/dashboard/` beside the other results.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.services import REPO_ROOT

CHROMIUM = os.environ.get("STOCKPRED_CHROMIUM", "/usr/bin/chromium")
# Off the network: without these chromium keeps trying to reach Google's services.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-default-apps", "--disable-dev-shm-usage"]
SCREENSHOTS = REPO_ROOT / "test-results" / "dashboard"
AXE = REPO_ROOT / "web" / "node_modules" / "axe-core" / "axe.min.js"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run devstack/bootstrap.sh (it installs Debian's chromium)")
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "headless": True,
            "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict[str, Any]) -> dict[str, Any]:
    return {**browser_context_args, "viewport": {"width": 1280, "height": 900}}


class Console:
    """What the page wrote to its console as errors, and its uncaught exceptions."""

    def __init__(self, page: Any) -> None:
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))


@pytest.fixture
def console(page: Any) -> Console:
    return Console(page)


@pytest.fixture(scope="session")
def dashboard(gateway: Any) -> str:
    return gateway.url + "/"


def screenshot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{re.sub(r'[^a-z0-9-]+', '-', name.lower())}.png"),
                    full_page=True)


def sign_in(page: Any, dashboard: str, email: str, password: str) -> None:
    page.goto(dashboard + "#/signin")
    page.fill("#email", email)
    page.fill("#password", password)
    page.click("form button[type=submit]")
    page.wait_for_url(re.compile(r"#/portfolio$"))


@pytest.fixture
def axe_page(browser: Any) -> Iterator[Any]:
    """A page whose Content-Security-Policy lets the test inject axe-core (the dashboard's own
    policy allows no injected script, which is the point of it)."""
    context = browser.new_context(bypass_csp=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    yield page
    context.close()


def axe_violations(page: Any) -> list[dict[str, Any]]:
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [{"id": v["id"], "impact": v["impact"], "help": v["help"],
             "nodes": [n["target"] for n in v["nodes"]][:5]}
            for v in result["violations"] if v["impact"] in ("serious", "critical")]
