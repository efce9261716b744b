"""stockpred's shared layer: domain logic and one adapter per outside system.

Nothing here imports Chalice except `handlers`, the glue the function apps share; the domain is
testable without any event plumbing.
"""
