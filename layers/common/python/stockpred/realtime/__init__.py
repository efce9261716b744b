"""Pushes over the WebSocket API: rooms per symbol and each user's connections (rooms), the
`@connections` management API (connections_api), and its keep-alive HTTP connections (keepalive).
"""
