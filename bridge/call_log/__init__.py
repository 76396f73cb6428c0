"""The call log: the database (SQLAlchemy async, Alembic migrations in bridge/migrations),
its call tables and store, the batching writer with its crash-safe spool and checks, and
the per-call log lines. Imports the model's records (bridge.calls), nothing above.
"""
