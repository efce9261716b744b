"""Paper trading: the buy and sell saga with two-phase commit (saga), its participants (accounts on
MongoDB, the ledger on PostgreSQL), the portfolio a user sees, money as integer cents, and the
fault hooks of its crash tests.
"""
