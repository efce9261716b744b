"""The fault matrix (issue 24): for each store the system uses, the worst realistic fault
(devstack/chaos.py), made while a mixed workload runs (bench/soak.py's), then what a user and an
auditor care about.

The workload: traders buying and selling with an Idempotency-Key per order, retrying the same key
as a careful client would until a final answer (200 traded, 400 refused); a reader asking for a
quote and a portfolio; and two ended tokens (one logged out, one older than a password change)
tried again and again. The faults, one per store:

- PostgreSQL (the ledger, and FerretDB's backend): every process SIGKILLed mid-trade, restarted;
- the MongoDB store (FerretDB): SIGKILLed, restarted;
- the state Redis: a failover that loses writes (the master-to-replica link cut with iptables
  rules on that one loopback connection, the master SIGKILLed, Sentinel promoting the replica
  that missed them), and a restart with empty memory (FLUSHALL);
- the cache ring: a shard master stalled with SIGSTOP (Sentinel fails it over meanwhile);
- moto (Step Functions, Lambda, Secrets Manager): stalled with SIGSTOP;
- OpenSearch (the logs): stalled with SIGSTOP.

After the fault is healed and Recovery has run, every order is sent once more with its key (the
retry of a client that lost the answer: after a failover that lost the key's Redis record, this
once traded twice), and every case asserts (bench.soak.violations): cash and shares equal to the
ledger, no reservation pending and no transaction left prepared, one outcome per Idempotency-Key
(every answer for a key has one status, every 200 names the same transaction, and the ledger
holds exactly the 200s' transactions), no ended token ever answered 200; and no 5xx or unanswered
request before the fault or after its window (healed + GRACE_S).
"""

from __future__ import annotations

import time
from collections import Counter

import pytest

from bench.soak import (
    GRACE_S,
    Workload,
    ended_tokens,
    failed,
    failed_outside,
    new_trader,
    run_recovery,
    violations,
)
from devstack import chaos

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("flush_cache")]

TRADERS = 3
WARM_S = 2.0   # workload before the fault
AFTER_S = 6.0  # workload after the fault is healed


def _log_errors(gateway, lines: int = 40) -> str:
    """The gateway log's last error lines, for a failure message."""
    text = gateway.log.read_text(errors="replace").splitlines()
    return "\n".join([ln for ln in text if '"level": "ERROR"' in ln or "Traceback" in ln][-lines:])


@pytest.mark.parametrize("fault", list(chaos.FAULTS))
def test_no_fault_loses_money_duplicates_a_trade_or_revives_an_ended_token(
        gateway, stack, stack_handle, fault):
    if fault in chaos.NEEDS_IPTABLES and not chaos.can_cut_links():
        pytest.skip("cutting the replication link needs root and a working iptables")
    load = Workload(gateway.url, [new_trader(gateway.url) for _ in range(TRADERS)],
                    ended_tokens(gateway.url))
    load.start()
    time.sleep(WARM_S)
    began = time.monotonic()
    try:
        with chaos.FAULTS[fault](stack_handle, stack):
            pass
    finally:
        healed = time.monotonic()
        time.sleep(AFTER_S)
        load.stop()  # and settles the orders whose retries ran out during the fault
    run_recovery(gateway.url, stack)
    load.replay()  # every order once more with its key, as a client that lost the answer

    by_route = dict(Counter(r.route for r in load.records))
    failures = failed(load.records)
    last = max((r.at - healed for r in failures), default=None)
    print(f"\n{fault}: fault {healed - began:.1f}s; {len(load.records)} requests {by_route}; "
          f"{len(failures)} failed or unanswered"
          + (f", the last {last:+.1f}s after healing" if last is not None else ""))
    outside = failed_outside(load.records, [(began, healed)])
    assert not outside, (f"{fault}: 5xx outside the fault's window [{began:.1f}, {healed:.1f}"
                         f" + {GRACE_S}]: {outside[:5]}\n{_log_errors(gateway)}")
    assert not violations(stack, load, int(stack.get("STARTING_CASH_CENTS", "10000000")))
    assert sum(len(t.answers) for t in load.traders) >= TRADERS, f"{fault}: the workload did not trade"
