"""Market data: symbols, daily bars and quotes (prices), the providers (alphavantage, csv_prices,
sample_data), kept history (price_store), integrity checks (bar_checks), the providers' circuit
breakers, and the chain behind the read-through cache that serves details and history (market_data).
"""
