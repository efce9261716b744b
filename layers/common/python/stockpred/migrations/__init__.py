"""Numbered SQL migrations, applied in order by stockpred.postgres.migrate."""
