"""stockpred's shared layer: domain logic and one adapter per outside system, by feature.

market (prices, providers, the cache they sit behind), trading (the buy and sell saga, accounts,
the ledger), identity (users, tokens), realtime (WebSocket pushes), predictions (universes, the
training budget; the models are stockml's), analytics (the warehouse), observability (logs,
metrics, health, alarms), stores and cloud (the adapters), api (the HTTP edge); and two modules
every part may use: config (every setting) and contracts (the API's bodies). Nothing imports
Chalice except `api.edge`; the domain is testable without any event plumbing.
"""
