"""When `Schedule` events fire: EventBridge `rate(...)` and `cron(...)` expressions, locally.

AWS cron has six fields (minutes hours day-of-month month day-of-week year), `?` for "any" and
days of the week numbered 1-7 from Sunday; croniter takes five fields numbered 0-6, so the
expression is translated before croniter computes the next time.
"""

from __future__ import annotations

import datetime as dt
import re

from croniter import croniter

_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_CRON = re.compile(r"^cron\((.+)\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


class ScheduleExpressionError(ValueError):
    """The expression is not a valid EventBridge rate() or cron() expression."""


def _aws_dow_to_cron(field: str) -> str:
    def shift(m: re.Match[str]) -> str:
        n = int(m.group(0))
        if not 1 <= n <= 7:
            raise ScheduleExpressionError(f"day of week {n} is outside 1-7")
        return str(n - 1)

    head, sep, nth = field.partition("#")
    return re.sub(r"\d+", shift, head) + sep + nth


def to_croniter(expression: str) -> str:
    m = _CRON.match(expression.strip())
    if not m:
        raise ScheduleExpressionError(f"not a cron() expression: {expression!r}")
    fields = m.group(1).split()
    if len(fields) != 6:
        raise ScheduleExpressionError(f"cron() needs 6 fields, got {len(fields)}: {expression!r}")
    minute, hour, dom, month, dow, _year = fields
    if dom != "?" and dow != "?":
        raise ScheduleExpressionError("one of day-of-month and day-of-week must be '?'")
    dom = "*" if dom == "?" else dom
    dow = "*" if dow == "?" else _aws_dow_to_cron(dow)
    return " ".join((minute, hour, dom, month, dow))


def interval_seconds(expression: str) -> int | None:
    """The period of a rate() expression, or None for a cron() one."""
    m = _RATE.match(expression.strip())
    if not m:
        return None
    n, unit = int(m.group(1)), m.group(2).rstrip("s")
    if n < 1:
        raise ScheduleExpressionError("rate() needs a positive value")
    return n * _UNIT_SECONDS[unit]


def next_fire(expression: str, after: dt.datetime) -> dt.datetime:
    """The first time strictly after `after` (UTC) at which the expression fires."""
    period = interval_seconds(expression)
    if period is not None:
        return after + dt.timedelta(seconds=period)
    if not expression.strip().startswith("rate("):
        spec = to_croniter(expression)
        if not croniter.is_valid(spec):
            raise ScheduleExpressionError(f"invalid cron() expression: {expression!r}")
        return croniter(spec, after).get_next(dt.datetime)
    raise ScheduleExpressionError(f"invalid rate() expression: {expression!r}")
