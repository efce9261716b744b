-- Named sets of symbols to rank against each other (stockpred.universes). A universe lists its
-- members; their prices stay where they are (price_history, imported CSVs, the providers).
CREATE TABLE universes (
    name        text        PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$'),
    symbols     text[]      NOT NULL CHECK (cardinality(symbols) BETWEEN 2 AND 5000),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
