"""A connection straight to the upstream Postgres with the rewrite test schema."""

from __future__ import annotations

import psycopg
import pytest

from .harness import setup_schema


@pytest.fixture(scope="session")
def conn(upstream):
    connection = psycopg.connect(host=upstream.host, port=upstream.port, user="postgres", dbname="postgres",
                                 autocommit=True)
    setup_schema(connection)
    yield connection
    connection.close()
