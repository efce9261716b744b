-- Every model the registry has published, with the metadata that makes its signals traceable
-- even if the artifact itself is later gone from the bucket.
CREATE TABLE models (
    version         text PRIMARY KEY,
    symbol          text        NOT NULL,
    kind            text        NOT NULL,
    trained_at      timestamptz NOT NULL,
    sha256          text        NOT NULL,
    metadata        jsonb       NOT NULL
);
CREATE INDEX models_symbol_trained ON models (symbol, trained_at DESC);

-- One row per (symbol, last trading day used, model): asking twice returns the same row.
CREATE TABLE predictions (
    id                  uuid PRIMARY KEY,
    symbol              text        NOT NULL,
    as_of               date        NOT NULL,
    model_version       text        NOT NULL REFERENCES models (version),
    last_close          numeric(18, 6) NOT NULL,
    predicted_close     numeric(18, 6) NOT NULL,
    expected_return     double precision NOT NULL,
    probability_up      double precision NOT NULL,
    action              text        NOT NULL CHECK (action IN ('buy', 'sell')),
    edge                boolean     NOT NULL,
    record              jsonb       NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    outcome_date        date,
    realised_close      numeric(18, 6),
    realised_return     double precision,
    correct             boolean,
    UNIQUE (symbol, as_of, model_version)
);
CREATE INDEX predictions_symbol_asof ON predictions (symbol, as_of DESC, created_at DESC);
