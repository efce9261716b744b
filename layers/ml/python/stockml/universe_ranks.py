"""Serving universe rankings: a universe's latest ranking, and a symbol's place in each universe
that ranks it (the predict function's path: boto3 and PostgreSQL only, no scikit-learn).

The rankings are computed after the close by the training job (`stockml.universe_training`) and
read here from the model bucket; a ranking that cannot be read leaves a prediction without its
ranks, never fails it.
"""

from __future__ import annotations

import functools
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from stockml.registry import RankingNotFound, UniverseRankings
from stockpred.cloud import aws
from stockpred.observability.logs import get_logger
from stockpred.predictions import universes

log = get_logger("universe_ranks")


@functools.cache
def rankings() -> UniverseRankings:
    return UniverseRankings(aws.client("s3"), aws.model_bucket())


def ranking(name: str) -> dict[str, Any]:
    """The universe's latest ranking. universes.UniverseError for a malformed name,
    universes.UnknownUniverse for none such, RankingNotFound before its first training."""
    return rankings().latest(universes.get(name)["name"])


def ranks_of(symbol: str) -> list[dict[str, Any]]:
    """The symbol's rank in every universe with a ranking that ranks it, by universe name."""
    found = []
    try:
        names = universes.containing(symbol)
    except Exception as exc:  # the universes' table unreachable: the prediction goes on without
        log.warning("universes not read", extra={"fields": {"error": str(exc)[:300]}})
        return []
    for name in names:
        try:
            latest = rankings().latest(name)
        except RankingNotFound:
            continue
        except (BotoCoreError, ClientError, ValueError) as exc:
            log.warning("ranking not read", extra={"fields": {"universe": name, "error": str(exc)[:300]}})
            continue
        for entry in latest.get("ranking", []):
            if entry.get("symbol") == symbol:
                found.append({"universe": name, "as_of": latest.get("as_of"),
                              "horizon_days": latest.get("horizon_days"),
                              **{k: entry.get(k) for k in ("rank", "of", "percentile", "decile",
                                                           "expected_excess_return")},
                              "edge": bool(latest.get("record", {}).get("edge"))})
                break
    return found
