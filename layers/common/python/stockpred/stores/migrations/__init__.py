"""Numbered SQL migrations, applied in order by stockpred.stores.postgres.migrate."""
