"""EXECUTE on a model's function decides who may call it, as Postgres decides for
any function: checked for the role in effect at each call, whatever the session
did before (SET ROLE, SET LOCAL ROLE, set_config) and whatever other sessions
granted or revoked meanwhile."""

from __future__ import annotations

import psycopg
import pytest

from .clients import assert_usable, fetch

READER = "mlsql_reader"
SIGNATURE = "predict_price(integer, double precision, text)"
STREAMING = "SELECT id, predict_price(rooms, area, city) FROM houses WHERE id <= 3 ORDER BY id"
GENERAL = "SELECT id FROM houses WHERE id <= 3 AND predict_price(rooms, area, city) > 0 ORDER BY id"


@pytest.fixture
def reader(suite):
    """A login role with SELECT on the tables and, to begin with, no EXECUTE on
    predict_price (taken from PUBLIC too)."""
    with suite.direct() as d:
        d.execute(f"DO $$BEGIN CREATE ROLE {READER} LOGIN; "
                  "EXCEPTION WHEN duplicate_object THEN NULL; END$$")
        d.execute(f"GRANT SELECT ON houses TO {READER}")
        d.execute(f"REVOKE EXECUTE ON FUNCTION {SIGNATURE} FROM PUBLIC, {READER}")
    yield READER
    with suite.direct() as d:
        d.execute(f"GRANT EXECUTE ON FUNCTION {SIGNATURE} TO PUBLIC")
        d.execute(f"REVOKE ALL ON houses FROM {READER}")
        d.execute(f"REVOKE EXECUTE ON FUNCTION {SIGNATURE} FROM {READER}")


def _grant(suite, grant: bool) -> None:
    with suite.direct() as d:  # another session than the one under test
        verb = "GRANT EXECUTE ON FUNCTION {} TO {}" if grant else "REVOKE EXECUTE ON FUNCTION {} FROM {}"
        d.execute(verb.format(SIGNATURE, READER))


def _denied(conn, sql: str = STREAMING, mode: str = "simple-text") -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege) as err:
        fetch(conn, sql, mode)
    assert err.value.diag.message_primary == "permission denied for function predict_price"
    assert_usable(conn)


def _allowed(conn, sql: str = STREAMING, mode: str = "simple-text") -> None:
    assert [r[0] for r in fetch(conn, sql, mode)] == [1, 2, 3]


def test_postgres_itself_denies_the_stub(suite, reader):
    with psycopg.connect(suite.direct_dsn.replace("user=postgres", f"user={reader}")) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as err:
            conn.execute(STREAMING)
        assert err.value.diag.message_primary == "permission denied for function predict_price"


@pytest.mark.parametrize("sql,mode", [(STREAMING, "simple-text"), (STREAMING, "extended-binary"),
                                      (STREAMING, "prepared-text"), (GENERAL, "simple-text"),
                                      (GENERAL, "extended-binary"), (GENERAL, "prepared-text")],
                         ids=["streaming-simple", "streaming-extended", "streaming-prepared", "general-simple",
                              "general-extended", "general-prepared"])
def test_without_execute_denied_then_granted(suite, reader, sql, mode):
    with suite.connect(user=reader) as conn:
        _denied(conn, sql, mode)
        _grant(suite, True)
        with suite.connect(user=reader) as fresh:
            _allowed(fresh, sql, mode)
        _allowed(conn, sql, mode)  # the session that was denied, after the GRANT elsewhere


def test_revoke_in_another_session_applies_at_the_next_call(suite, reader):
    _grant(suite, True)
    with suite.connect(user=reader) as conn:
        _allowed(conn)
        _allowed(conn, GENERAL)
        _grant(suite, False)
        _denied(conn)
        _denied(conn, GENERAL)


@pytest.mark.parametrize("sql", [STREAMING, GENERAL], ids=["streaming", "general"])
def test_revoke_applies_to_an_already_prepared_statement(suite, reader, sql):
    """Postgres checks EXECUTE at each execution, not when the statement is parsed."""
    _grant(suite, True)
    with suite.connect(user=reader) as conn:
        _allowed(conn, sql, mode="prepared-text")
        _allowed(conn, sql, mode="prepared-text")  # now a named statement, Bind/Execute only
        _grant(suite, False)
        _denied(conn, sql, mode="prepared-text")
        _grant(suite, True)
        _allowed(conn, sql, mode="prepared-text")


def test_set_role_and_reset_role(suite, reader):
    with suite.connect() as conn:
        _allowed(conn)
        conn.execute(f"SET ROLE {reader}")
        _denied(conn)
        _denied(conn, GENERAL)
        conn.execute("RESET ROLE")
        _allowed(conn)
        conn.execute(f"SET SESSION AUTHORIZATION {reader}")
        _denied(conn, mode="extended-binary")
        conn.execute("RESET SESSION AUTHORIZATION")
        _allowed(conn, mode="extended-binary")


def test_role_set_through_a_parameter(suite, reader):
    """set_config('role', $1): the statement text names no role."""
    with suite.connect() as conn:
        _allowed(conn)
        conn.execute("SELECT set_config(%s, %s, false)", ("role", reader))
        assert conn.execute("SELECT current_user").fetchone() == (reader,)
        _denied(conn)
        conn.execute("SELECT set_config(%s, %s, false)", ("role", "none"))
        _allowed(conn)


def test_set_local_role_ends_with_its_transaction(suite, reader):
    with suite.connect(autocommit=False) as conn:
        _allowed(conn)
        conn.commit()
        conn.execute(f"SET LOCAL ROLE {reader}")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(STREAMING)
        conn.rollback()  # the role is postgres again
        assert conn.execute("SELECT current_user").fetchone() == ("postgres",)
        _allowed(conn)
        conn.commit()
        # as for any function, the denial is an error of the statement: it aborts the
        # transaction it happens in, which then rolls back
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            with conn.transaction():
                conn.execute(f"SET LOCAL ROLE {reader}")
                fetch(conn, STREAMING, "simple-text")
        assert conn.execute("SELECT current_user").fetchone() == ("postgres",)
        _allowed(conn)


def test_stub_recreated_behind_the_proxys_back_is_still_checked(suite, reader):
    """Rewritten statements check EXECUTE by the stub's OID as it was when the proxy
    loaded the models; a stub dropped and created again since (a new OID, and no
    catalog change to tell the proxy) is checked by its signature instead."""
    _grant(suite, True)
    with suite.connect(user=reader) as conn:
        _allowed(conn)  # the proxy knows the model, and the stub's OID
        with suite.direct() as d:
            oid = f"SELECT '{SIGNATURE}'::regprocedure::oid"
            before = d.execute(oid).fetchone()[0]
            definition = d.execute(f"SELECT pg_get_functiondef('{SIGNATURE}'::regprocedure)").fetchone()[0]
            with d.transaction():
                d.execute(f"DROP FUNCTION {SIGNATURE}")
                d.execute(definition)
                d.execute(f"REVOKE EXECUTE ON FUNCTION {SIGNATURE} FROM PUBLIC")
            assert d.execute(oid).fetchone()[0] != before
        for mode in ("simple-text", "extended-binary", "prepared-text"):
            _denied(conn, mode=mode)
        _grant(suite, True)
        for mode in ("simple-text", "extended-binary", "prepared-text"):
            _allowed(conn, mode=mode)
