"""Redshift ML's privileges through the proxy, as Postgres enforces them on the
client's own session: a new model is private; GRANT/REVOKE ... ON MODEL move EXECUTE
on all of its functions together; GRANT CREATE MODEL decides who may create one;
DROP MODEL is for the owner, the schema's owner and superusers; SHOW MODEL shows a
model to whoever may call it. Roles: OWNER (creates `pm`), GRANTEE, STRANGER, THIRD
(member of the group role TEAM)."""

from __future__ import annotations

import asyncio
import string

import asyncpg
import psycopg
import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from tests.drivers.conftest import jdbc  # noqa: F401 - the fixture: java + pgjdbc
from tests.inference.sql.clients import assert_usable, fetch
from tests.ml.conftest import (GRANTEE, OWNER, PM_FUNCTIONS, STRANGER, TEAM, THIRD,
                               wait_for_state)

STREAMING = "SELECT id, pm_predict(a, b) FROM pts WHERE id <= 3 ORDER BY id"
STREAMING_PROB = "SELECT id, pm_predict_prob(a, b) FROM pts WHERE id <= 3 ORDER BY id"
GENERAL = "SELECT id FROM pts WHERE id <= 3 AND pm_predict(a, b) IS NOT NULL ORDER BY id"
MODES = ("simple-text", "extended-binary", "prepared-text")
CALLS = [(sql, mode) for sql in (STREAMING, STREAMING_PROB, GENERAL) for mode in MODES]
CALL_IDS = [f"{kind}-{mode}" for kind in ("streaming", "prob", "general") for mode in MODES]


def _denied(conn, sql: str = STREAMING, mode: str = "simple-text") -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege) as err:
        fetch(conn, sql, mode)
    assert err.value.diag.message_primary.startswith("permission denied for function pm_predict")
    assert_usable(conn)


def _allowed(conn, sql: str = STREAMING, mode: str = "simple-text") -> None:
    assert [r[0] for r in fetch(conn, sql, mode)] == [1, 2, 3]


def _all_functions(world, role: str) -> tuple[bool, ...]:
    return tuple(world.can_execute(role, f) for f in PM_FUNCTIONS)


@pytest.fixture
def world(priv_world):
    """The world, with `pm` private again after each test."""
    yield priv_world
    with priv_world.connect(OWNER) as owner:
        for role in (GRANTEE, STRANGER, THIRD, TEAM, "PUBLIC"):
            owner.execute(f"REVOKE ALL ON MODEL pm FROM {role} CASCADE")


def test_a_new_model_is_private(world):
    assert _all_functions(world, OWNER) == (True,) * len(PM_FUNCTIONS)
    for role in (GRANTEE, STRANGER, THIRD):
        assert _all_functions(world, role) == (False,) * len(PM_FUNCTIONS)
    with world.direct() as d:  # no EXECUTE for PUBLIC on any stub, argument names kept
        rows = d.execute("SELECT proname, proacl::text[], proargnames FROM pg_proc "
                         "WHERE proname LIKE 'pm\\_predict%' ORDER BY proname").fetchall()
    assert [r[0] for r in rows] == list(PM_FUNCTIONS)
    assert all(r[1] == [f"{OWNER}=X/{OWNER}"] for r in rows)
    assert all(r[2] == ["a", "b"] for r in rows)


@pytest.mark.parametrize("sql,mode", CALLS, ids=CALL_IDS)
def test_grant_then_revoke_execute_on_model(world, sql, mode):
    with world.connect(GRANTEE) as grantee, world.connect(OWNER) as owner:
        _allowed(owner, sql, mode)
        _denied(grantee, sql, mode)
        assert owner.execute(f"GRANT EXECUTE ON MODEL pm TO {GRANTEE}").statusmessage == "GRANT"
        _allowed(grantee, sql, mode)
        assert owner.execute(f"REVOKE EXECUTE ON MODEL pm FROM {GRANTEE}").statusmessage == "REVOKE"
        _denied(grantee, sql, mode)


def test_grant_covers_every_function_of_the_model_at_once(world):
    with world.connect(OWNER) as owner:
        owner.execute(f"GRANT ALL PRIVILEGES ON MODEL pm TO {GRANTEE}")
        assert _all_functions(world, GRANTEE) == (True,) * len(PM_FUNCTIONS)
        owner.execute(f"REVOKE ALL ON MODEL pm FROM {GRANTEE} RESTRICT")
        assert _all_functions(world, GRANTEE) == (False,) * len(PM_FUNCTIONS)


def test_asyncpg_prepared_statement_sees_grant_and_revoke(world):
    async def run() -> None:
        conn = await asyncpg.connect(world.dsn(GRANTEE))
        owner = await asyncpg.connect(world.dsn(OWNER))
        try:
            streaming = await conn.prepare(STREAMING)
            general = await conn.prepare(GENERAL)
            for stmt in (streaming, general):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await stmt.fetch()
            assert await owner.execute(f"GRANT EXECUTE ON MODEL pm TO {GRANTEE}") == "GRANT"
            for stmt in (streaming, general):
                assert [r["id"] for r in await stmt.fetch()] == [1, 2, 3]
            # revocation takes effect on statements already prepared (and executed)
            assert await owner.execute(f"REVOKE EXECUTE ON MODEL pm FROM {GRANTEE}") == "REVOKE"
            for stmt in (streaming, general):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await stmt.fetch()
            assert await conn.fetchval("SELECT 1") == 1
        finally:
            await conn.close()
            await owner.close()
    asyncio.run(asyncio.wait_for(run(), 60))


@pytest.mark.parametrize("sql", [STREAMING, GENERAL], ids=["streaming", "general"])
def test_revoke_applies_to_a_psycopg_prepared_statement(world, sql):
    with world.connect(GRANTEE) as grantee, world.connect(OWNER) as owner:
        owner.execute(f"GRANT EXECUTE ON MODEL pm TO {GRANTEE}")
        _allowed(grantee, sql, "prepared-text")
        _allowed(grantee, sql, "prepared-text")  # now Bind/Execute of the named statement
        owner.execute(f"REVOKE EXECUTE ON MODEL pm FROM {GRANTEE}")
        _denied(grantee, sql, "prepared-text")


def test_grant_through_the_extended_protocol(world):
    async def run() -> None:
        owner = await asyncpg.connect(world.dsn(OWNER))
        try:
            stmt = await owner.prepare(f"GRANT EXECUTE ON MODEL pm TO {GRANTEE}")
            await stmt.fetch()
            assert world.can_execute(GRANTEE, "pm_predict")
            await owner.fetch(f"REVOKE EXECUTE ON MODEL pm FROM {GRANTEE}")
            assert not world.can_execute(GRANTEE, "pm_predict")
        finally:
            await owner.close()
    asyncio.run(asyncio.wait_for(run(), 60))


def test_grant_option_chain(world):
    with world.connect(OWNER) as owner, world.connect(GRANTEE) as grantee, \
            world.connect(THIRD) as third:
        # without the grant option, Postgres grants nothing (and says so)
        owner.execute(f"GRANT EXECUTE ON MODEL pm TO {GRANTEE}")
        warnings: list[str] = []
        grantee.add_notice_handler(lambda d: warnings.append(d.message_primary))
        grantee.execute(f"GRANT EXECUTE ON MODEL pm TO {THIRD}")
        assert any("no privileges were granted" in w for w in warnings), warnings
        assert not world.can_execute(THIRD, "pm_predict")
        # with it, the grantee passes EXECUTE on, on every function
        owner.execute(f"GRANT EXECUTE ON MODEL pm TO {GRANTEE} WITH GRANT OPTION")
        grantee.execute(f"GRANT EXECUTE ON MODEL pm TO {THIRD}")
        assert _all_functions(world, THIRD) == (True,) * len(PM_FUNCTIONS)
        _allowed(third)
        # the grant option cannot go while a grant depends on it, unless CASCADE
        with pytest.raises(psycopg.errors.DependentObjectsStillExist):
            owner.execute(f"REVOKE GRANT OPTION FOR EXECUTE ON MODEL pm FROM {GRANTEE}")
        assert_usable(owner)
        owner.execute(f"REVOKE GRANT OPTION FOR EXECUTE ON MODEL pm FROM {GRANTEE} CASCADE")
        assert _all_functions(world, GRANTEE) == (True,) * len(PM_FUNCTIONS)  # EXECUTE itself stays
        assert _all_functions(world, THIRD) == (False,) * len(PM_FUNCTIONS)
        _denied(third)


def test_role_group_and_public_grantees(world):
    with world.connect(OWNER) as owner, world.connect(THIRD) as third, \
            world.connect(STRANGER) as stranger:
        owner.execute(f"GRANT EXECUTE ON MODEL pm TO GROUP {TEAM}")
        _allowed(third)  # a member of the group
        owner.execute(f"REVOKE EXECUTE ON MODEL pm FROM GROUP {TEAM}")
        _denied(third)
        owner.execute(f"GRANT EXECUTE ON MODEL pm TO ROLE {TEAM}")
        _allowed(third, GENERAL)
        owner.execute(f"REVOKE EXECUTE ON MODEL pm FROM ROLE {TEAM}")
        owner.execute("GRANT EXECUTE ON MODEL pm TO PUBLIC")
        _allowed(stranger)
        owner.execute("REVOKE EXECUTE ON MODEL pm FROM PUBLIC")
        _denied(stranger)
        with pytest.raises(psycopg.errors.InvalidGrantOperation):
            owner.execute("GRANT EXECUTE ON MODEL pm TO PUBLIC WITH GRANT OPTION")
        with pytest.raises(psycopg.errors.InvalidGrantOperation):
            owner.execute("GRANT SELECT ON MODEL pm TO PUBLIC")
        assert_usable(owner)


def test_grant_in_a_transaction_block_is_the_transactions(world):
    with world.connect(OWNER, autocommit=False) as owner:
        owner.execute(f"GRANT EXECUTE ON MODEL pm TO {GRANTEE}")
        assert world.can_execute(GRANTEE, "pm_predict") is False  # not committed yet
        owner.rollback()
        assert not world.can_execute(GRANTEE, "pm_predict")
        owner.execute(f"GRANT EXECUTE ON MODEL pm TO {GRANTEE}")
        owner.commit()
        assert world.can_execute(GRANTEE, "pm_predict")


def test_strangers_cannot_grant_or_revoke(world):
    with world.connect(OWNER) as owner, world.connect(STRANGER) as stranger:
        owner.execute(f"GRANT EXECUTE ON MODEL pm TO {GRANTEE}")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            stranger.execute(f"GRANT EXECUTE ON MODEL pm TO {STRANGER}")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            stranger.execute(f"REVOKE EXECUTE ON MODEL pm FROM {GRANTEE}")
        with pytest.raises(psycopg.errors.UndefinedObject):
            stranger.execute(f"GRANT EXECUTE ON MODEL no_such_model TO {STRANGER}")
        assert_usable(stranger)
        assert world.can_execute(GRANTEE, "pm_predict")
        assert not world.can_execute(STRANGER, "pm_predict")


def test_create_model_privilege(world):
    create = ("CREATE MODEL {m} FROM (SELECT a, b, label FROM pts) TARGET label "
              "FUNCTION {m}_fn MODEL_TYPE LINEAR_LEARNER SETTINGS (MAX_RUNTIME 5)")
    with world.direct() as d:
        d.execute(f"GRANT CREATE ON SCHEMA public TO {GRANTEE}, {THIRD}")
    try:
        with world.connect(GRANTEE) as grantee, world.connect(THIRD) as third, \
                world.connect() as su:
            with pytest.raises(psycopg.errors.InsufficientPrivilege) as err:
                grantee.execute(create.format(m="g_model"))
            assert err.value.diag.message_primary == "permission denied to create model"
            assert err.value.diag.message_hint == f"A superuser can grant it: GRANT CREATE MODEL TO {GRANTEE}"
            # nothing was made
            assert grantee.execute("SELECT count(*) FROM pg_proc WHERE proname LIKE 'g\\_model%'"
                                   ).fetchone() == (0,)
            # a role without the privilege cannot give it
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                grantee.execute(f"GRANT CREATE MODEL TO {THIRD}")
            assert su.execute(f"GRANT CREATE MODEL TO {GRANTEE} WITH GRANT OPTION").statusmessage == "GRANT"
            assert grantee.execute(create.format(m="g_model")).statusmessage == "CREATE MODEL"
            grantee.execute(f"GRANT CREATE MODEL TO {THIRD}")
            assert third.execute(create.format(m="t_model")).statusmessage == "CREATE MODEL"
            for conn, model in ((grantee, "g_model"), (third, "t_model")):
                assert dict(conn.execute(f"SHOW MODEL {model}").fetchall())["Owner"] == conn.info.user
                conn.execute(f"DROP MODEL {model}")
            su.execute(f"REVOKE CREATE MODEL FROM {GRANTEE} CASCADE")
            for conn in (grantee, third):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(create.format(m="again"))
            # PUBLIC, and the schema privilege on top of it
            su.execute("GRANT CREATE MODEL TO PUBLIC")
            with world.connect(STRANGER) as stranger:
                with pytest.raises(psycopg.errors.InsufficientPrivilege) as err:
                    stranger.execute(create.format(m="s_model"))
                assert err.value.diag.message_primary == "permission denied for schema public"
            su.execute("REVOKE CREATE MODEL FROM PUBLIC")
    finally:
        with world.direct() as d:
            d.execute(f"REVOKE CREATE ON SCHEMA public FROM {GRANTEE}, {THIRD}")


def test_drop_model_is_for_owner_schema_owner_and_superusers(world):
    create = ("CREATE MODEL {s}.dm FROM (SELECT a, b, label FROM pts) TARGET label "
              "FUNCTION {s}.dm_fn MODEL_TYPE LINEAR_LEARNER SETTINGS (MAX_RUNTIME 5)")
    with world.direct() as d:
        d.execute(f"DROP SCHEMA IF EXISTS team_space CASCADE; CREATE SCHEMA team_space AUTHORIZATION {THIRD}")
        d.execute(f"GRANT USAGE, CREATE ON SCHEMA team_space TO {OWNER}")
    with world.connect(OWNER) as owner, world.connect(GRANTEE) as grantee, \
            world.connect(STRANGER) as stranger, world.connect(THIRD) as third:
        owner.execute(create.format(s="team_space"))
        owner.execute(f"GRANT EXECUTE ON MODEL team_space.dm TO {GRANTEE}")
        for conn in (grantee, stranger):
            with pytest.raises(psycopg.errors.InsufficientPrivilege) as err:
                conn.execute("DROP MODEL team_space.dm")
            assert err.value.diag.message_primary == "must be owner of model dm"
            assert_usable(conn)
        third.execute("DROP MODEL team_space.dm")  # the schema's owner
        assert owner.execute("SELECT count(*) FROM pg_proc WHERE proname LIKE 'dm\\_fn%'").fetchone() == (0,)
        with pytest.raises(psycopg.errors.UndefinedObject):
            owner.execute("SHOW MODEL team_space.dm")
        owner.execute(create.format(s="public"))
        with world.connect() as su:
            su.execute("DROP MODEL public.dm")  # a superuser
        owner.execute(create.format(s="public"))
        owner.execute("DROP MODEL dm")  # the owner


def test_show_model_for_owner_grantee_and_stranger(world):
    with world.connect(OWNER) as owner, world.connect(GRANTEE) as grantee, \
            world.connect(STRANGER) as stranger:
        info = dict(owner.execute("SHOW MODEL pm").fetchall())
        assert info["Model State"] == "READY" and info["Owner"] == OWNER
        assert info["Function Parameters"] == "a b"
        assert ("public", "pm", "READY") in owner.execute("SHOW MODEL ALL").fetchall()
        for conn in (grantee, stranger):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("SHOW MODEL pm")
            assert "pm" not in [r[1] for r in conn.execute("SHOW MODEL ALL").fetchall()]
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("SELECT explain_model('pm')")
        owner.execute(f"GRANT EXECUTE ON MODEL pm TO {GRANTEE}")
        assert dict(grantee.execute("SHOW MODEL pm").fetchall())["Model Name"] == "pm"
        assert ("public", "pm", "READY") in grantee.execute("SHOW MODEL ALL").fetchall()
        assert grantee.execute("SELECT explain_model('pm')").fetchone()[0]["version"] == "1.0"
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            stranger.execute("SHOW MODEL pm")
        with pytest.raises(psycopg.errors.UndefinedObject):
            stranger.execute("SHOW MODEL no_such_model")


def test_show_model_through_asyncpg(world):
    async def run() -> None:
        conn = await asyncpg.connect(world.dsn(OWNER))
        try:
            rows = await conn.fetch("SHOW MODEL pm")
            assert dict((r[0], r[1]) for r in rows)["Model Name"] == "pm"
        finally:
            await conn.close()
    asyncio.run(asyncio.wait_for(run(), 30))


# -- names with any characters round-trip through every statement --------------------
_NAME_CHARS = st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\x00")
_NAMES = st.text(_NAME_CHARS, min_size=1, max_size=12).filter(lambda n: n.strip() == n and n)
_SPICY = st.sampled_from(['select', 'Model', 'a"b', "o'k", "to", "public x", "é∑🙂", "ALL",
                          "role", "group", "x.y", ";drop", "--c", "$1", "Ab C", "%", "100%s"])


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(model=st.one_of(_SPICY, _NAMES), role=st.one_of(_SPICY, _NAMES),
       schema=st.one_of(_SPICY, st.text(string.ascii_letters, min_size=1, max_size=6)))
@example(model="%", role="select", schema="select")  # a % in the stub's message (RAISE's format)
def test_hostile_names_round_trip(priv_world, model, role, schema):
    world = priv_world
    fn = model[:20] + " fn"
    with world.direct() as d:
        d.execute(f"DROP SCHEMA IF EXISTS {_quote(schema)} CASCADE")
        d.execute(f"CREATE SCHEMA {_quote(schema)} AUTHORIZATION {OWNER}")
        d.execute(f"DROP ROLE IF EXISTS {_quote(role)}")
        d.execute(f"CREATE ROLE {_quote(role)} LOGIN")
    qualified = f"{_quote(schema)}.{_quote(model)}"
    try:
        with world.connect(OWNER) as owner:
            owner.execute(f"CREATE MODEL {qualified} FROM (SELECT a, b, label FROM pts) TARGET label "
                          f"FUNCTION {_quote(schema)}.{_quote(fn)} MODEL_TYPE LINEAR_LEARNER "
                          "SETTINGS (MAX_RUNTIME 5)")
            info = dict(owner.execute(f"SHOW MODEL {qualified}").fetchall())
            assert (info["Model Name"], info["Schema Name"], info["Function Name"]) == (model, schema, fn)
            owner.execute(f"GRANT EXECUTE ON MODEL {qualified} TO {_quote(role)}")
            signature = f"{_quote(schema)}.{_quote(fn)}(integer, double precision)"
            for suffix in ("", "_prob", "_probabilities"):
                sig = f"{_quote(schema)}.{_quote(fn + suffix)}(integer, double precision)"
                assert world.can_execute(role, sig)
            owner.execute(f"REVOKE EXECUTE ON MODEL {qualified} FROM {_quote(role)}")
            assert not world.can_execute(role, signature)
            owner.execute(f"DROP MODEL {qualified}")
            with pytest.raises(psycopg.errors.UndefinedObject):
                owner.execute(f"SHOW MODEL {qualified}")
            assert_usable(owner)
    finally:
        with world.direct() as d:
            d.execute(f"DROP SCHEMA IF EXISTS {_quote(schema)} CASCADE")
            d.execute(f"DROP ROLE IF EXISTS {_quote(role)}")


@pytest.mark.timeout(600)  # the jdbc fixture may first have to install java
@pytest.mark.parametrize("mode", ["prepareThreshold=1&binaryTransfer=true", "preferQueryMode=simple"],
                         ids=["extended", "simple"])
def test_pgjdbc_grant_revoke_and_argument_names(world, jdbc, mode):
    import subprocess
    from pathlib import Path

    def url(user: str) -> str:
        return (f"jdbc:postgresql://{world.proxy.host}:{world.proxy.port}/mlpriv"
                f"?user={user}&sslmode=disable&{mode}")

    program = Path(__file__).parent / "jdbc" / "ModelPrivilegesCheck.java"
    done = subprocess.run([jdbc.java, "-cp", str(jdbc.jar), str(program), url(OWNER), url(GRANTEE),
                           GRANTEE], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:5] == ["before error 42501", "granted rows 3", "granted rows 3", "granted rows 3",
                         "revoked error 42501"]
    columns = sorted(line.split()[1:] for line in lines if line.startswith("column "))
    # a function the grantee may not call is still listed (as Postgres lists any)
    assert [c for c in columns if c[2] == "1"] == [
        [f, arg, "1"] for f in sorted(PM_FUNCTIONS)
        for arg in ("a", "b")]
    assert lines[-1] == "after 42"


def test_a_model_created_after_set_role_belongs_to_that_role(world):
    """Like a table, a model belongs to the role in effect (current_user), and the
    session user must be able to act as it; CREATE MODEL is that role's privilege."""
    create = ("CREATE MODEL team_model FROM (SELECT a, b, label FROM pts) TARGET label "
              "FUNCTION team_fn MODEL_TYPE LINEAR_LEARNER SETTINGS (MAX_RUNTIME 5)")
    with world.direct() as d:
        d.execute(f"GRANT CREATE ON SCHEMA public TO {TEAM}")
    try:
        with world.connect(THIRD) as third, world.connect() as su:
            third.execute(f"SET ROLE {TEAM}")
            with pytest.raises(psycopg.errors.InsufficientPrivilege) as err:
                third.execute(create)
            assert err.value.diag.message_hint == f"A superuser can grant it: GRANT CREATE MODEL TO {TEAM}"
            su.execute(f"GRANT CREATE MODEL TO ROLE {TEAM}")
            third.execute(create)
            assert dict(third.execute("SHOW MODEL team_model").fetchall())["Owner"] == TEAM
            third.execute("RESET ROLE")
            assert world.can_execute(THIRD, "team_fn(integer, double precision)")  # as a member
            assert not world.can_execute(GRANTEE, "team_fn(integer, double precision)")
            third.execute("DROP MODEL team_model")  # a member of the owner
            su.execute(f"REVOKE CREATE MODEL FROM ROLE {TEAM}")
    finally:
        with world.direct() as d:
            d.execute(f"REVOKE CREATE ON SCHEMA public FROM {TEAM}")


def test_several_models_in_one_statement_all_or_nothing(world):
    with world.connect(OWNER) as owner:
        owner.execute("DROP MODEL IF EXISTS pm2")
        owner.execute("CREATE MODEL pm2 FROM (SELECT a, label FROM pts) TARGET label FUNCTION pm2_fn "
                      "MODEL_TYPE LINEAR_LEARNER SETTINGS (MAX_RUNTIME 5)")
        try:
            second = ("pm2_fn(integer)", "pm2_fn_prob(integer)", "pm2_fn_probabilities(integer)", "pm2_fn_explain(integer)")
            with pytest.raises(psycopg.errors.UndefinedObject) as err:
                owner.execute(f"GRANT EXECUTE ON MODEL pm, pm2, nope TO {GRANTEE}")
            assert err.value.diag.statement_position == "33"  # at "nope"
            assert not any(world.can_execute(GRANTEE, f) for f in (*PM_FUNCTIONS, *second))
            owner.execute(f"GRANT EXECUTE ON MODEL pm, public.pm2 TO {GRANTEE}, {THIRD}")
            assert all(world.can_execute(r, f) for r in (GRANTEE, THIRD) for f in (*PM_FUNCTIONS, *second))
            owner.execute(f"REVOKE ALL ON MODEL pm2, pm FROM {THIRD}, {GRANTEE}")
            assert not any(world.can_execute(r, f) for r in (GRANTEE, THIRD) for f in (*PM_FUNCTIONS, *second))
        finally:
            owner.execute("DROP MODEL pm2")
