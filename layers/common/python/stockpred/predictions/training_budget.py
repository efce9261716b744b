"""The on-demand training budget: how many trainings requests for symbols without a model may start.

GET /api/predict/X for a symbol with market data but no model starts a training in the retrain
function (2 GB, up to 15 minutes; stockml.training_lease.request_training), and needs no token. So that
asking for many symbols cannot start thousands of them, each training such a request starts is
counted on the state Redis, per fixed hour (the window opens with its first training):

  all     every such training, stack-wide: TRAIN_ON_DEMAND_MAX_PER_HOUR (20)
  client  those started from one client address: TRAIN_ON_DEMAND_MAX_PER_CLIENT_PER_HOUR (3)

A request over either limit is refused (BudgetSpent, the predict route's 429 with Retry-After:
the seconds until that window closes). Only a training that would really start is counted: the
caller takes the symbol's training lock and checks the registry first, so a symbol that has a
model, or whose training already runs, costs nothing. A refused request counts nothing (both
counters are given back in the same script), and `refund` gives back a training that could not be
started after all (its invoke failed).

Every predict request is anonymous here: the predict function's role may not read the JWT
signing secret, so it cannot verify a user's token (see the README, Predictions).
"""

from __future__ import annotations

from stockpred import config
from stockpred.stores import redis_stores

WINDOW_S = 3600

# KEYS: all [, client]; ARGV: max all, max per client, window (s). Both counters are incremented
# before the decision, in one script: concurrent requests cannot all read "under the limit".
# Returns {1, 0, ''} when counted, else {0, seconds until the spent window closes, its scope}.
_SPEND = """
local window = tonumber(ARGV[3])
local function count(key)
  local n = redis.call('INCR', key)
  if n == 1 or redis.call('TTL', key) < 0 then redis.call('EXPIRE', key, window) end
  return n
end
if #KEYS > 1 and count(KEYS[2]) > tonumber(ARGV[2]) then
  redis.call('DECR', KEYS[2])
  return {0, redis.call('TTL', KEYS[2]), 'client'}
end
if count(KEYS[1]) > tonumber(ARGV[1]) then
  for _, key in ipairs(KEYS) do redis.call('DECR', key) end
  return {0, redis.call('TTL', KEYS[1]), 'all'}
end
return {1, 0, ''}
"""
# A key gone since (its window closed) is not given back into a new window.
_REFUND = """
for _, k in ipairs(KEYS) do
  if tonumber(redis.call('GET', k) or '0') > 0 then redis.call('DECR', k) end
end
return 1
"""


class BudgetSpent(Exception):
    """No training may start now: `scope` ("all" or "client") spent its `limit` for the window."""

    def __init__(self, scope: str, limit: int, retry_after_s: int) -> None:
        super().__init__(f"{scope}: {limit} trainings per hour spent, retry after {retry_after_s} s")
        self.scope = scope
        self.limit = limit
        self.retry_after_s = retry_after_s


def _keys(client: str | None) -> list[str]:
    """The counters a training from `client` spends; None (not an HTTP request): the global one."""
    keys = ["stockpred:training-budget:all"]
    if client is not None:
        keys.append(f"stockpred:training-budget:client:{client}")
    return keys


def spend(client: str | None) -> None:
    """Counts one training started for `client`; BudgetSpent (counting nothing) if over a limit."""
    s = config.load()
    allowed, retry_after, scope = redis_stores.state().register_script(_SPEND)(
        keys=_keys(client),
        args=[s.train_on_demand_max_per_hour, s.train_on_demand_max_per_client_per_hour, WINDOW_S])
    if int(allowed):
        return
    scope = scope.decode() if isinstance(scope, bytes) else str(scope)
    limit = (s.train_on_demand_max_per_client_per_hour if scope == "client"
             else s.train_on_demand_max_per_hour)
    retry_after = int(retry_after)
    raise BudgetSpent(scope, limit, retry_after if retry_after > 0 else WINDOW_S)


def refund(client: str | None) -> None:
    """Gives back a training `spend` counted that was not started after all."""
    redis_stores.state().register_script(_REFUND)(keys=_keys(client), args=[])
