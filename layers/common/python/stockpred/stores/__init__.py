"""One adapter per data store: PostgreSQL and its migrations (postgres), MongoDB (mongo), Redis for
state and the cache ring (redis_stores), and the read-through cache on that ring (cache).
"""
