-- What each Idempotency-Key was used for, written in the same transaction as the trade's intent
-- (trade_intents), so a retry is answered from here even when the state Redis, the fast path in
-- front, lost its copy (failover, eviction, flush). A key's short `claimed` phase, before any
-- intent exists, lives in Redis only: nothing has happened yet, and this row's uniqueness decides
-- which request starts a trade. Rows older than a day (trading.KEY_TTL_S) are deleted by recovery.
CREATE TABLE idempotency_keys (
    user_id         text        NOT NULL,
    key_hash        text        NOT NULL,  -- sha256 of the Idempotency-Key, hex
    symbol          text        NOT NULL,  -- the request's fingerprint: symbol, side, quantity
    side            text        NOT NULL CHECK (side IN ('buy', 'sell')),
    quantity        bigint      NOT NULL CHECK (quantity > 0),
    transaction_id  uuid        NOT NULL,
    phase           text        NOT NULL CHECK (phase IN ('started', 'failed', 'done')),
    result          jsonb,                 -- the TradeResult once known (failed or done)
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key_hash)
);
CREATE INDEX idempotency_keys_updated ON idempotency_keys (updated_at);
CREATE INDEX idempotency_keys_transaction ON idempotency_keys (transaction_id);
