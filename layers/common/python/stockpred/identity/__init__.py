"""Who a caller is: users and their passwords (users), bearer tokens and their revocation (auth),
and device tokens (devices).
"""
