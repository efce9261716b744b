"""What `sam build` made is what deploys: it fits Lambda, and every handler imports as Lambda imports it.

Runs over .aws-sam/build (`make test` builds it first). Each handler is imported by Python 3.13 in
isolated mode with exactly Lambda's import path (devstack.runtime.LambdaPython), so a module that
only the developer's virtualenv has, or a layer laid out where Lambda never looks, fails here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from devstack.runtime import LambdaPython
from devstack.service_specs import BUILT_TEMPLATE
from devstack.template import Function, Template

LAMBDA_UNZIPPED_LIMIT = 262_144_000  # bytes: a function and all its layers, unzipped

if not BUILT_TEMPLATE.is_file():
    if os.environ.get("STOCKPRED_SERVE") == "built":
        raise RuntimeError(f"{BUILT_TEMPLATE} is missing: `make build` (sam build) must run first")
    pytest.skip("no sam build output (make test builds it)", allow_module_level=True)

BUILT = Template.load(BUILT_TEMPLATE)
FUNCTIONS = sorted(BUILT.functions)
# What only the training function may load: the serving path stays numpy-only.
TRAINING_ONLY = {"sklearn", "scipy", "pandas", "joblib"}


def _tree_bytes(root: Path) -> int:
    return sum((Path(d) / f).lstat().st_size for d, _, files in os.walk(root) for f in files)


def _unzipped_bytes(fn: Function) -> tuple[int, dict[str, int]]:
    parts = {fn.code_dir.name: _tree_bytes(fn.code_dir)}
    parts.update({layer.name: _tree_bytes(layer) for layer in fn.layer_dirs})
    return sum(parts.values()), parts


def test_every_function_with_its_layers_fits_lambdas_unzipped_limit(capsys):
    rows = []
    for name in FUNCTIONS:
        total, parts = _unzipped_bytes(BUILT.functions[name])
        rows.append((name, total, parts))
    with capsys.disabled():
        print(f"\n{'function':<24}{'unzipped MiB':>13}{'of limit':>10}  layers")
        for name, total, parts in sorted(rows, key=lambda r: -r[1]):
            layers = ", ".join(f"{k} {v / 2**20:.0f}" for k, v in parts.items() if k != name)
            print(f"{name:<24}{total / 2**20:>13.1f}{total / LAMBDA_UNZIPPED_LIMIT:>10.0%}  {layers}")
    too_big = {name: total for name, total, _ in rows if total > LAMBDA_UNZIPPED_LIMIT}
    assert not too_big, f"over Lambda's {LAMBDA_UNZIPPED_LIMIT} bytes unzipped: {too_big}"


def test_no_layer_ships_what_the_runtime_provides_or_only_deploy_time_code():
    for layer in {d for fn in BUILT.functions.values() for d in fn.layer_dirs}:
        python = layer / "python"
        assert python.is_dir(), f"{layer.name}: Lambda reads a layer's python/ folder"
        shipped = {p.name for p in python.iterdir()}
        assert not shipped & {"boto3", "botocore", "s3transfer"}, f"{layer.name} ships boto3"
        assert not (python / "python").exists(), f"{layer.name}: python/python is never on the path"
        assert not list(python.rglob("tests")), f"{layer.name} ships test suites"
        if (python / "chalice").exists():
            shipped = sorted(p.name for p in (python / "chalice").iterdir() if p.name != "__pycache__")
            assert shipped == ["__init__.py", "app.py"]


@pytest.mark.parametrize("layer", ["CommonLayer", "MlLayer", "WarehouseLayer"])
def test_serving_layers_are_byte_compiled_for_python_313(layer):
    """Lambda's /opt is read-only: a module without its .pyc is compiled again at every cold start."""
    python = BUILT_TEMPLATE.parent / layer / "python"
    sources = [p for p in python.rglob("*.py") if "site-packages" not in p.parts]
    missing = [p for p in sources
               if not (p.parent / "__pycache__" / f"{p.stem}.cpython-313.pyc").is_file()]
    assert sources and not missing, f"{layer}: {len(missing)} of {len(sources)} modules lack a .pyc"


IMPORT_PROBE = """
import importlib, json, sys
module_name, attr = sys.argv[1].rsplit(".", 1)
handler = getattr(importlib.import_module(module_name), attr)
outside = sorted({m.split(".")[0] for m, mod in list(sys.modules.items())
                  if getattr(mod, "__file__", None) and not any(
                      mod.__file__.startswith(p) for p in json.loads(sys.argv[2]))})
print(json.dumps({"callable": callable(handler), "modules": sorted({m.split(".")[0] for m in sys.modules}),
                  "outside": outside}))
"""


@pytest.mark.parametrize("name", FUNCTIONS)
def test_handler_imports_under_python_313_with_lambdas_path_only(name):
    fn = BUILT.functions[name]
    runtime = LambdaPython(built=True)
    path = runtime.import_path(fn)
    stdlib = subprocess.run([*runtime.argv, "-c", "import sysconfig; print(sysconfig.get_path('stdlib'))"],
                            capture_output=True, text=True, check=True).stdout.strip()
    env = {"PATH": "/usr/bin:/bin", "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
           "LAMBDA_TASK_ROOT": str(fn.code_dir), **fn.env}
    probe = [*runtime.argv, "-c", f"import sys; sys.path[:0] = {path!r}\n{IMPORT_PROBE}",
             fn.handler, json.dumps([*path, stdlib])]
    result = subprocess.run(probe, capture_output=True, text=True, env=env, cwd=fn.code_dir, timeout=120)
    assert result.returncode == 0, f"{name} ({fn.handler}) fails to import:\n{result.stderr[-3000:]}"
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["callable"]
    assert report["outside"] == [], f"{name} loaded modules from outside Lambda's path: {report['outside']}"
    if "MlTrainingLayer" not in {d.name for d in fn.layer_dirs}:
        loaded = TRAINING_ONLY & set(report["modules"])
        assert not loaded, f"{name} imports training-only packages at load: {sorted(loaded)}"


def test_the_probe_fails_for_a_module_lambda_would_not_find(tmp_path):
    """The import check above can fail: a handler needing a package from the venv does not load."""
    (tmp_path / "app.py").write_text("import yaml\nhandler = lambda e, c: None\n")
    runtime = LambdaPython(built=True)
    result = subprocess.run([*runtime.argv, "-c", f"import sys; sys.path[:0] = {[str(tmp_path)]!r}\n"
                             "import app"], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode != 0 and "No module named 'yaml'" in result.stderr
    assert sys.modules.get("yaml") is not None  # the venv has it: only Lambda's path lacks it


def test_the_sample_provider_finds_its_files_in_the_built_layer():
    """Lambda has no `arch` package: the sample series must be where sample_data looks, beside it."""
    fn = BUILT.functions["StocksFunction"]
    runtime = LambdaPython(built=True)
    path = runtime.import_path(fn)
    probe = (f"import sys; sys.path[:0] = {path!r}\nfrom stockpred.market import sample_data\n"
             "print(sample_data.SHIPPED_DIR.is_dir(), len(sample_data.load_series('SPX')))")
    result = subprocess.run([*runtime.argv, "-c", probe], capture_output=True, text=True,
                            cwd=fn.code_dir, env={"PATH": "/usr/bin:/bin"}, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    shipped, bars = result.stdout.split()
    assert shipped == "True" and int(bars) > 5000
