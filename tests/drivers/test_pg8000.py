"""pg8000 (pure Python, its own protocol code) through the proxy, native API."""

from __future__ import annotations

import pg8000.native
import pytest


@pytest.fixture
def conn(proxy):
    conn = pg8000.native.Connection("postgres", host=proxy.host, port=proxy.port,
                                    database="postgres", timeout=30)
    yield conn
    conn.close()


def test_queries_with_parameters(table, conn):
    conn.run(f"CREATE TABLE {table} (id int PRIMARY KEY, name text, tags text[])")
    for i in range(50):
        conn.run(f"INSERT INTO {table} VALUES (:id, :name, :tags)",
                 id=i, name=f"n{i}", tags=[f"t{i}", None])
    rows = conn.run(f"SELECT id, name, tags FROM {table} WHERE id >= :low ORDER BY id", low=48)
    assert rows == [[48, "n48", ["t48", None]], [49, "n49", ["t49", None]]]
    assert [c["name"] for c in conn.columns] == ["id", "name", "tags"]
    assert conn.run("SELECT :a::int + :b::int", a=40, b=2) == [[42]]
    assert conn.row_count == 1


def test_errors_then_usable(conn):
    with pytest.raises(pg8000.native.DatabaseError) as failed:
        conn.run("SELECT * FROM drv_nowhere")
    assert failed.value.args[0]["C"] == "42P01"
    with pytest.raises(pg8000.native.DatabaseError) as failed:
        conn.run("SELECT 1/:zero", zero=0)
    assert failed.value.args[0]["C"] == "22012"
    assert conn.run("SELECT 'fine'") == [["fine"]]


def test_unicode(conn):
    text = "naïve café 日本語 Ελληνικά 🎉 \u200b end"
    assert conn.run("SELECT :t::text, length(:t::text)", t=text) == [[text, len(text)]]
    assert conn.run("SELECT '🐘' || :t", t="é") == [["🐘é"]]
