"""mlproxy: a PostgreSQL wire-protocol proxy that brings Redshift ML to any Postgres."""

__version__ = "0.1.0"
