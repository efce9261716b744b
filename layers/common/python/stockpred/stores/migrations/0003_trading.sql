-- The ledger: one row per trade, written inside a prepared transaction (two-phase commit) by the
-- saga, or directly by the internal /api/transactions/store endpoint.
CREATE TABLE transactions (
    id                  uuid PRIMARY KEY,
    user_id             text        NOT NULL,
    symbol              text        NOT NULL,
    side                text        NOT NULL CHECK (side IN ('buy', 'sell')),
    quantity            bigint      NOT NULL CHECK (quantity > 0),
    price_cents         bigint      NOT NULL CHECK (price_cents > 0),
    amount_cents        bigint      NOT NULL,
    fee_cents           bigint      NOT NULL DEFAULT 0,
    realised_pnl_cents  bigint,
    source              text        NOT NULL DEFAULT 'saga',
    traded_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX transactions_user ON transactions (user_id, traded_at DESC);

-- What the trade coordinator decided, written once: whoever inserts first decides.
CREATE TABLE trade_decisions (
    transaction_id  uuid PRIMARY KEY,
    decision        text        NOT NULL CHECK (decision IN ('commit', 'abort')),
    decided_by      text        NOT NULL,
    decided_at      timestamptz NOT NULL DEFAULT now()
);

-- Every trade started, so recovery can find and finish the ones a crash left in doubt.
CREATE TABLE trade_intents (
    transaction_id  uuid PRIMARY KEY,
    user_id         text        NOT NULL,
    symbol          text        NOT NULL,
    side            text        NOT NULL,
    quantity        bigint      NOT NULL,
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    outcome         text
);
CREATE INDEX trade_intents_open ON trade_intents (started_at) WHERE finished_at IS NULL;
