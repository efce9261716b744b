"""Paper trading: what the buy and sell functions do around a trade (saga: intent, execution,
Idempotency-Keys), the state machine's steps (steps), its participants (accounts on MongoDB, the
ledger on PostgreSQL), recovery of trades in doubt (recovery), the portfolio a user sees, money as
integer cents, and the fault hooks of its crash tests (faults).
"""
