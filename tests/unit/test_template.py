"""template.yaml is data the tests read: valid SAM, and the same routes the Chalice apps serve."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from chalice import Chalice

from devstack.runtime import import_handler
from devstack.services import REPO_ROOT
from devstack.template import Template

TEMPLATE = REPO_ROOT / "template.yaml"


def test_cfn_lint_passes():
    exe = str(Path(sys.executable).parent / "cfn-lint")
    result = subprocess.run([exe, str(TEMPLATE)], capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_function_has_code_and_layers_on_disk():
    template = Template.load(TEMPLATE)
    assert template.functions
    for fn in template.functions.values():
        assert (fn.code_dir / (fn.handler.rsplit(".", 1)[0] + ".py")).is_file(), fn.logical_id
        for layer in fn.layer_dirs:
            assert (layer / "Makefile").is_file(), layer


@pytest.mark.parametrize("fn_id", sorted(Template.load(TEMPLATE).functions))
def test_template_routes_equal_the_chalice_routes(fn_id):
    template = Template.load(TEMPLATE)
    handler = import_handler(template.functions[fn_id])
    # A Chalice app, or a plain handler whose module's app serves its API requests.
    apps = [handler] if isinstance(handler, Chalice) else \
        [v for v in getattr(handler, "__globals__", {}).values() if isinstance(v, Chalice)]
    chalice_routes = {(m, path) for app in apps for path, methods in app.routes.items() for m in methods}
    template_routes = {(r.method, r.path) for r in template.routes if r.function == fn_id}
    assert chalice_routes == template_routes


def test_devstack_serves_the_log_search_and_runs_the_shipper_maintenance():
    """The log functions are wired by the template alone: devstack reads the route and schedule."""
    template = Template.load(TEMPLATE)
    assert [(r.method, r.function) for r in template.routes if r.path == "/api/logs"] == \
        [("GET", "LogsFunction")]
    assert not [r for r in template.routes if r.function == "LogShipperFunction"]
    (maintenance,) = [s for s in template.schedules if s.function == "LogShipperFunction"]
    assert maintenance.enabled and json.loads(maintenance.input) == {"action": "maintenance"}
    shipper = template.functions["LogShipperFunction"]
    assert shipper.handler == "shipper.handler" and shipper.code_dir.name == "logs"
    assert template.functions["LogsFunction"].code_dir == shipper.code_dir


def _pins(text: str) -> dict[str, str]:
    found = re.findall(r"^\s*\"?([A-Za-z0-9_.\-\[\]]+)==([^\s\"#,]+)", text, re.MULTILINE)
    return {re.sub(r"\[.*\]", "", name).lower().replace("_", "-"): version for name, version in found}


def test_layer_pins_match_the_local_pins():
    """What ships in a layer is the version the tests ran: every package both pin agrees."""
    local = _pins((REPO_ROOT / "pyproject.toml").read_text())
    for path in REPO_ROOT.glob("layers/*/requirements*.txt"):
        for name, version in _pins(path.read_text()).items():
            if name in local:
                assert local[name] == version, f"{path}: {name}=={version}, pyproject pins {local[name]}"


def test_every_api_route_is_under_api_where_the_dashboard_never_answers():
    """The dashboard owns every other path: devstack's file route refuses /api/, and on AWS
    CloudFront sends only /api/* to the REST API (test_infrastructure.py)."""
    from devstack.dashboard import RESERVED_PREFIXES

    template = Template.load(TEMPLATE)
    assert template.routes
    assert "api" in RESERVED_PREFIXES
    for route in template.routes:
        assert route.path.startswith("/api/"), f"{route.method} {route.path} is outside /api/"
