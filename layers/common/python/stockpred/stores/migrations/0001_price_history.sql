-- Daily bars from providers whose history we keep: Alpha Vantage (built up over time, since its
-- free tier returns only about 100 days) and imported CSV files.
CREATE TABLE price_history (
    symbol      text        NOT NULL,
    source      text        NOT NULL,
    day         date        NOT NULL,
    open        numeric(18, 6) NOT NULL,
    high        numeric(18, 6) NOT NULL,
    low         numeric(18, 6) NOT NULL,
    close       numeric(18, 6) NOT NULL,
    volume      bigint      NOT NULL,
    loaded_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, source, day),
    CHECK (high >= low AND open > 0 AND close > 0 AND volume >= 0)
);

CREATE TABLE symbols (
    symbol      text        NOT NULL,
    source      text        NOT NULL,
    name        text        NOT NULL,
    currency    text        NOT NULL DEFAULT 'USD',
    PRIMARY KEY (symbol, source)
);
