"""Database layer: connections per backend, schema and migrations, statement shapes."""

from tiered.db.driver import Connection, Result, Statement, StatementStats, backend_of, connect
from tiered.db.schema import SCHEMA_VERSION, migrate

__all__ = [
    "SCHEMA_VERSION",
    "Connection",
    "Result",
    "Statement",
    "StatementStats",
    "backend_of",
    "connect",
    "migrate",
]
