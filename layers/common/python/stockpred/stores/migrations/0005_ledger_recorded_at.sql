-- When the ledger wrote a row, by the server's clock: the warehouse's high-water mark for trades.
-- `traded_at` may come from a client (the internal /api/transactions/store), so it must never
-- decide what the ETL reads. Existing rows keep their trade time (or now, if it was in the
-- future), which matches the high-water marks already committed.
ALTER TABLE transactions ADD COLUMN recorded_at timestamptz NOT NULL DEFAULT now();
UPDATE transactions SET recorded_at = LEAST(traded_at, recorded_at);
CREATE INDEX transactions_recorded ON transactions (recorded_at);

-- The quote a trade's participants must use, written once by the saga's Quote step: the account
-- and ledger steps refuse any other price, amount or cost basis.
ALTER TABLE trade_intents ADD COLUMN price_cents bigint CHECK (price_cents > 0),
                          ADD COLUMN cost_cents bigint CHECK (cost_cents >= 0),
                          ADD COLUMN as_of text;
