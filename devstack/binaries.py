"""Where the programs the stack runs are installed, as devstack/bootstrap.sh installs them:
PostgreSQL's bin folder (Debian's newest), FerretDB's binary and OpenSearch's home (their
versions pinned here and in bootstrap.sh) in the cache folder, and the Java 17 runtime OpenSearch
runs on. Each raises a ServiceError that says to run bootstrap.sh when the program is missing.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
from pathlib import Path

from devstack import settings as stack_settings
from devstack.supervisor import ServiceError

FERRETDB_VERSION = stack_settings.FERRETDB_VERSION.read()
OPENSEARCH_VERSION = "2.19.6"  # as devstack/bootstrap.sh installs it; 3.x would need Java 21


def postgres_bindir() -> Path:
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/postgres"),
        key=lambda p: int(Path(p).parent.parent.name),
    )
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("postgres")
    if found:
        return Path(found).resolve().parent
    raise ServiceError("PostgreSQL is not installed (run devstack/bootstrap.sh)")


def cache_dir() -> Path:
    return (
        stack_settings.CACHE_DIR.read()
        or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "stockpred"
    )


def ferretdb_binary() -> Path:
    return cache_dir() / f"ferretdb-{FERRETDB_VERSION}" / "ferretdb"


def opensearch_home() -> Path:
    """Where devstack/bootstrap.sh unpacked OpenSearch: /opt/stockpred as root (root's home is
    closed to the `opensearch` user that runs it), else the cache."""
    if home := stack_settings.OPENSEARCH_HOME.read():
        return home
    if os.geteuid() == 0:
        return Path("/opt/stockpred") / f"opensearch-{OPENSEARCH_VERSION}"
    return cache_dir() / f"opensearch-{OPENSEARCH_VERSION}"


def java17_home() -> Path:
    """A Java 17 runtime's home (OpenSearch 2.x bundles none), found by its release file."""
    for release in sorted(glob.glob("/usr/lib/jvm/*/release")):
        with contextlib.suppress(OSError):
            if re.search(r'^JAVA_VERSION="17[."]', Path(release).read_text(), re.MULTILINE):
                return Path(release).parent.resolve()
    raise ServiceError("Java 17 is not installed (run devstack/bootstrap.sh)")
