"""Text arguments and the session's client_encoding.

Postgres sends text in the client's encoding; mlproxy reads model arguments as UTF-8
(the categories a model learned are UTF-8). Under another encoding, ASCII text is the
same bytes and predicts as usual; a non-ASCII value would be another encoding's
bytes, which must not be looked up as an unseen category (a wrong prediction given
silently): the statement fails with Postgres' own kind of error, 22021 with a hint,
in every protocol and result format, and the session goes on."""

from __future__ import annotations

import psycopg
import pytest

from .clients import MODES, assert_usable, fetch

CALL = "predict_price(rooms, area, city)"


@pytest.fixture(scope="module")
def towns(suite):
    with suite.direct() as d:
        d.execute("DROP TABLE IF EXISTS towns")
        d.execute("CREATE TABLE towns (id int PRIMARY KEY, rooms int, area float8, city text)")
        d.execute("INSERT INTO towns VALUES (1, 3, 80, 'paris'), (2, 2, 45, 'lyon'), (3, 4, 99, 'Zürich')")
        expected = suite.price.by_id(d, "SELECT id, rooms, area, city FROM towns")
    yield expected
    with suite.direct() as d:
        d.execute("DROP TABLE towns")


@pytest.mark.parametrize("mode", MODES)
def test_non_utf8_text_argument_is_an_error_not_a_guess(suite, towns, mode):
    with suite.connect() as conn:
        conn.execute("SET client_encoding TO 'LATIN1'")
        # ASCII is the same bytes in both encodings: these predict as usual, one row
        # (the few-rows route) and two (the batch route)
        for ids in ("1", "1, 2"):
            rows = fetch(conn, f"SELECT id, {CALL} FROM towns WHERE id IN ({ids}) ORDER BY id", mode)
            assert rows == [(i, towns[i]) for i in sorted(map(int, ids.split(", ")))]
        for ids in ("3", "1, 2, 3"):
            with pytest.raises(psycopg.Error) as err:
                fetch(conn, f"SELECT id, {CALL} FROM towns WHERE id IN ({ids}) ORDER BY id", mode)
            assert err.value.sqlstate == "22021", err.value
            assert "client_encoding" in (err.value.diag.message_hint or "")
            assert_usable(conn)
        conn.execute("SET client_encoding TO 'UTF8'")
        # in UTF-8 the value is an unseen category: predicted as a SQL function would
        assert fetch(conn, f"SELECT id, {CALL} FROM towns ORDER BY id", mode) == sorted(towns.items())


@pytest.mark.parametrize("mode", MODES)
def test_non_utf8_statement_that_calls_a_model_is_an_error(suite, mode):
    """The statement's own text is parsed and rewritten as UTF-8: a LATIN1 literal
    gets the same error (it was an internal error, and the extended protocol lost
    the session); an ASCII statement works in any encoding."""
    with suite.connect() as conn:
        conn.execute("SET client_encoding TO 'LATIN1'")
        with pytest.raises(psycopg.Error) as err:
            fetch(conn, "SELECT predict_price(3, 50.0, 'Zürich'), 'Zürich' AS town", mode)
        assert err.value.sqlstate == "22021", err.value
        assert "client_encoding" in (err.value.diag.message_hint or "")
        assert_usable(conn)
        assert fetch(conn, "SELECT predict_price(3, 50.0, 'paris') > 0", mode) == [(True,)]
