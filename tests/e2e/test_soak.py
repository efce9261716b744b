"""The soak's short version (bench/soak.py): users browse, predict, subscribe and trade for 30 s
while three faults are made on a schedule (at 8, 16 and 24 s); the invariants must hold and the
report must count what was served."""

import pytest

from bench.soak import soak
from devstack import chaos

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("flush_cache")]

FAULTS = ["postgres SIGKILL mid-trade", "cache shard master SIGSTOP", "state redis emptied"]


def test_a_short_soak_with_faults_keeps_every_invariant(gateway, stack, stack_handle):
    assert set(FAULTS) <= set(chaos.FAULTS)
    load, found, text = soak(stack_handle, stack, seconds=30, users=4, fault_every=8,
                             faults=FAULTS)
    print("\n" + text)
    assert not found, found
    served = {r.route for r in load.records if 0 < r.status < 500}
    assert {"buy", "details", "predict", "portfolio", "stocks", "ws subscribe"} <= served
    assert "3 faults" in text.splitlines()[0]
