import datetime as dt

import pytest

from devstack.schedules import ScheduleExpressionError, next_fire, to_croniter

T0 = dt.datetime(2026, 11, 24, 10, 7, 30, tzinfo=dt.UTC)  # a Tuesday


def test_rate_expressions():
    assert next_fire("rate(5 minutes)", T0) == T0 + dt.timedelta(minutes=5)
    assert next_fire("rate(1 hour)", T0) == T0 + dt.timedelta(hours=1)
    assert next_fire("rate(2 days)", T0) == T0 + dt.timedelta(days=2)


def test_cron_expressions_use_aws_fields():
    assert next_fire("cron(0 22 ? * MON-FRI *)", T0) == T0.replace(hour=22, minute=0, second=0)
    # AWS numbers days from Sunday=1: 7 is Saturday.
    assert next_fire("cron(0 6 ? * 7 *)", T0).date() == dt.date(2026, 11, 28)
    assert to_croniter("cron(15 10 * * ? *)") == "15 10 * * *"


@pytest.mark.parametrize("bad", ["rate(0 minutes)", "rate(5 weeks)", "cron(0 10 * * *)",
                                 "cron(0 10 1 * MON *)", "every day", "cron(0 10 ? * 9 *)"])
def test_invalid_expressions_are_refused(bad):
    with pytest.raises(ScheduleExpressionError):
        next_fire(bad, T0)
