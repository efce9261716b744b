"""LogShipperFunction: CloudWatch Logs subscription batches into OpenSearch (stockpred.observability.logship).

Invoked by every other function's log group subscription filter on AWS, by devstack with the
same payload locally, and every few minutes with `{"action": "maintenance"}` (re-drive dead
letters, retention). Its own lines are not shipped: no subscription on its own log group.
"""

from __future__ import annotations

from typing import Any

from stockpred.observability import logs, logship


@logs.lambda_handler
def handler(event: Any, context: Any) -> dict[str, Any]:
    if isinstance(event, dict) and event.get("action") == "maintenance":
        return logship.maintenance()
    try:
        return logship.ship(event)
    except logship.BadPayload as exc:
        # Not a subscription batch: retrying it would not help, so it is refused, not raised.
        logship.log.warning("not a log batch: %s", exc)
        return {"error": str(exc), "indexed": 0}
