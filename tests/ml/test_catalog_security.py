"""The model catalog as a hostile role sees it: only the proxy's service identity
writes it, the registration functions check every claim, notifications are hints.

STRANGER is the attacker; it connects straight to Postgres where it wants to (it
needs no proxy to send SQL) and holds CREATE MODEL and CREATE on a schema of its own,
so that only the checks under test stand in its way. OWNER's model `pm` is the
victim."""

from __future__ import annotations

import json
import time

import psycopg
import pytest

from tests.inference.sql.clients import assert_usable
from tests.ml.conftest import OWNER, PRIV_DB, STRANGER, wait_for_state

VICTIM_CALL = "SELECT pm_predict(a, b) FROM pts WHERE id <= 3"
EVIL = "evil"


@pytest.fixture
def attacker(priv_world):
    """STRANGER with CREATE MODEL and a schema of its own."""
    with priv_world.direct() as d:
        d.execute(f"DROP SCHEMA IF EXISTS {EVIL} CASCADE; CREATE SCHEMA {EVIL} AUTHORIZATION {STRANGER}")
        d.execute(f"GRANT CREATE ON SCHEMA public TO {STRANGER}")
    with priv_world.connect() as su:
        su.execute(f"GRANT CREATE MODEL TO {STRANGER}")
    yield priv_world
    with priv_world.connect() as su:
        su.execute(f"REVOKE CREATE MODEL FROM {STRANGER}")
    with priv_world.direct() as d:
        d.execute(f"DROP SCHEMA {EVIL} CASCADE; REVOKE CREATE ON SCHEMA public FROM {STRANGER}")


def _victim_intact(world) -> None:
    with world.connect(OWNER) as owner:
        assert dict(owner.execute("SHOW MODEL pm").fetchall())["Model State"] == "READY"
        assert len(owner.execute(VICTIM_CALL).fetchall()) == 3
    with world.direct() as d:
        row = d.execute("SELECT owner, state, function_signature FROM mlproxy.models "
                        "WHERE model_name = 'pm'").fetchone()
    assert row == (OWNER, "READY", "public.pm_predict(integer, double precision)")


def _pm_id(world) -> int:
    with world.direct() as d:
        return d.execute("SELECT id FROM mlproxy.models WHERE model_name = 'pm'").fetchone()[0]


@pytest.mark.parametrize("sql", [
    "INSERT INTO mlproxy.models (schema_name, model_name, state, create_statement, options,"
    " source_query, function_schema, function_name, function_signature, arg_names, arg_types,"
    " return_type) VALUES ('public', 'forged', 'READY', 'x', '{}', 'x', 'public', 'pm_predict',"
    " 'public.pm_predict(integer, double precision)', '{a,b}', '{integer,double precision}', 'text')",
    "UPDATE mlproxy.models SET artifact = 'x', artifact_sha256 = 'y'",
    "UPDATE mlproxy.models SET state = 'FAILED'",
    "DELETE FROM mlproxy.models",
    "TRUNCATE mlproxy.models",
    "SELECT artifact FROM mlproxy.models",
    "SELECT * FROM mlproxy.models",
    "SELECT nextval('mlproxy.models_id_seq')",
], ids=["insert", "artifact-substitution", "update-state", "delete", "truncate", "read-artifact",
        "select-star", "sequence"])
@pytest.mark.parametrize("role", [STRANGER, OWNER])
def test_no_role_writes_the_catalog_or_reads_artifacts(priv_world, role, sql):
    """Not even the owner of a model may touch its row: the service identity alone."""
    with priv_world.direct(role) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(sql)
    with priv_world.connect(role) as conn:  # the same through the proxy
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(sql)
        assert_usable(conn)
    _victim_intact(priv_world)


def test_record_model_refuses_forged_claims(attacker):
    world = attacker
    record = ("SELECT mlproxy.record_model('evil', %s, %s::regprocedure, {prob}, {prob}, 's', '{{}}',"
              " 'q', {target}, 60, 'x')")
    plain = record.format(prob="NULL", target="NULL")
    with world.direct(STRANGER) as evil:
        # the victim's stub: not the attacker's to register
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as err:
            evil.execute(plain, ("stolen", "public.pm_predict(integer, double precision)"))
        assert err.value.diag.message_primary == "must be owner of function pm_predict"
        # a function of its own made earlier, or not a stub: refused
        evil.execute("CREATE FUNCTION evil.old_stub(a integer) RETURNS integer LANGUAGE plpgsql AS "
                     "$$BEGIN RAISE EXCEPTION 'x'; END$$")
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            evil.execute(plain, ("old", "evil.old_stub(integer)"))
        evil.execute("SELECT 1")
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            with evil.transaction():
                evil.execute("CREATE FUNCTION evil.trojan(a integer) RETURNS integer LANGUAGE sql AS 'SELECT 1'")
                evil.execute(plain, ("trojan", "evil.trojan(integer)"))
        # a classifier-capable target needs its probability stubs, made alongside
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            with evil.transaction():
                evil.execute("SELECT mlproxy.make_stub('evil', 'lonely', 'a integer', 'integer', 'text', 'c')")
                evil.execute(record.format(prob="NULL", target="'label'"), ("lonely", "evil.lonely(integer)"))
        # the victim's model cannot be forgotten, nor dropped, by its functions or by id
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            evil.execute("SELECT mlproxy.forget_model(%s)", (_pm_id(world),))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            evil.execute("SELECT mlproxy.drop_model('public', 'pm', false)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            evil.execute("DROP FUNCTION public.pm_predict(integer, double precision)")
        # a legitimate registration by hand is the attacker's own model, nothing more
        with evil.transaction():
            stub = evil.execute("SELECT mlproxy.make_stub('evil', 'mine', 'a integer', 'integer', "
                                "'double precision', 'c')").fetchone()[0]
            model_id = evil.execute(plain, ("mine", stub)).fetchone()[0]
        row = evil.execute("SELECT owner, state FROM mlproxy.visible_models WHERE id = %s",
                           (model_id,)).fetchone()
        assert row == (STRANGER, "TRAINING")
        evil.execute("SELECT mlproxy.drop_model('evil', 'mine', false)")
    _victim_intact(world)


@pytest.mark.parametrize("function,types", [
    ("pm_predict", "a::text, b::text"),            # same name and arity, other types
    ("pm_predict", "a, b"),                         # the very signature
    ("pm_predict_probabilities", "a, b"),           # a name the victim's model holds
    ("pm", "a, b"),                                 # pm_prob would be the victim's? no: harmless
], ids=["overload", "same-signature", "probabilities-name", "free-name"])
def test_signature_collisions_are_refused_up_front(attacker, function, types):
    world = attacker
    sql = (f"CREATE MODEL evil.clash FROM (SELECT {types}, label FROM pts) TARGET label "
           f"FUNCTION public.{function} MODEL_TYPE LINEAR_LEARNER SETTINGS (MAX_RUNTIME 5)")
    with world.connect(STRANGER) as evil:
        if function == "pm":
            evil.execute(sql)
            evil.execute("DROP MODEL evil.clash")
        else:
            with pytest.raises(psycopg.errors.DuplicateFunction) as err:
                evil.execute(sql)
            assert err.value.diag.statement_position == str(sql.index(f"public.{function}") + 1)
            assert evil.execute("SELECT count(*) FROM mlproxy.models WHERE model_name = 'clash'"
                                ).fetchone() == (0,)
            assert_usable(evil)
    with world.direct(STRANGER) as evil:  # the definer checks too, whatever the proxy did
        with pytest.raises(psycopg.errors.DuplicateFunction):
            evil.execute("SELECT mlproxy.register_model('evil', 'clash2', 'public', 'pm_predict', "
                         "ARRAY['x', 'y'], ARRAY['text', 'text'], 'double precision', 's', '{}', "
                         "'q', NULL, 60, 'x')")
        assert evil.execute("SELECT count(*) FROM pg_proc WHERE proname = 'pm_predict'").fetchone() == (1,)
    _victim_intact(world)


def test_forged_notifications_change_nothing(attacker, fresh_proxy, tmp_path):
    """A 'dropped' hint for a job that is running cancels nothing (the catalog still
    has the model); 'ready'/'failed' hints for it neither; a flood of 'created' hints
    costs a replica a bounded number of catalog reloads."""
    world = attacker
    with world.direct() as d:
        d.execute("DROP TABLE IF EXISTS wide; CREATE TABLE wide AS SELECT g AS id, "
                  "(g * 7919) % 1000 AS a, (g * 31) % 97 / 7.0 AS b, sin(g) * 100 AS c, "
                  "((g * 7919) % 1000) * 0.3 + (g * 31) % 97 + sin(g) * 10 AS y "
                  "FROM generate_series(1, 40000) g; GRANT SELECT ON wide TO PUBLIC")
    replica = fresh_proxy("--data-dir", str(tmp_path / "replica"), "--log-level", "debug")
    with psycopg.connect(replica.dsn(user=OWNER, db=PRIV_DB), autocommit=True) as via_replica:
        assert len(via_replica.execute(VICTIM_CALL).fetchall()) == 3  # the replica knows mlpriv
    loads_before = replica.read_log().count(f"model registry loaded database={PRIV_DB}")
    with world.connect(OWNER) as owner:
        owner.execute("DROP MODEL IF EXISTS slow")
        owner.execute("CREATE MODEL slow FROM (SELECT a, b, c, y FROM wide) TARGET y FUNCTION slow_fn "
                      "PROBLEM_TYPE REGRESSION SETTINGS (MAX_RUNTIME 120)")
        with world.direct() as d:
            slow_id = d.execute("SELECT id FROM mlproxy.models WHERE model_name = 'slow'").fetchone()[0]
        try:
            with world.direct(STRANGER) as evil:
                for event in ("dropped", "failed", "ready"):
                    evil.execute("SELECT pg_notify('mlproxy_models', %s)",
                                 (json.dumps({"event": event, "id": slow_id}),))
                evil.execute("SELECT pg_notify('mlproxy_models', json_build_object("
                             "'event', 'created', 'id', g)::text) FROM generate_series(1, 2000) g")
            time.sleep(3)
            with world.direct() as d:
                state, idle = d.execute("SELECT state, extract(epoch FROM now() - heartbeat) "
                                        "FROM mlproxy.models WHERE id = %s", (slow_id,)).fetchone()
            assert state in ("TRAINING", "READY"), state
            if state == "TRAINING":
                assert idle < 3  # still heartbeating: the worker runs
            assert f"training cancelled by DROP MODEL model=public.slow id={slow_id} " not in world.proxy.read_log()
            loads = replica.read_log().count(f"model registry loaded database={PRIV_DB}") - loads_before
            assert loads <= 20, loads  # 2000 hints, one load at a time, coalesced
            with psycopg.connect(replica.dsn(user=OWNER, db=PRIV_DB), autocommit=True) as via_replica:
                assert len(via_replica.execute(VICTIM_CALL).fetchall()) == 3
        finally:
            owner.execute("DROP MODEL slow")
        if state == "TRAINING":  # the real drop's notification does stop the job
            assert world.proxy.wait_for_log(f"training cancelled by DROP MODEL model=public.slow id={slow_id} ")
    _victim_intact(world)


def test_migration_4_on_a_catalog_any_role_could_write(upstream):
    """Rows of catalog versions 1-3 (INSERT was granted to PUBLIC): a forged row that
    claims another role's function is removed; the genuine ones are kept, made private
    (stubs on Postgres' default EXECUTE for PUBLIC), their probability stubs given the
    same privileges and a _probabilities stub, and their owners CREATE MODEL."""
    import asyncio

    import asyncpg

    from proxy.catalog import schema

    database = "mlmigrate"
    roles = ("mlm_alice", "mlm_eve")

    async def connect(user: str = "postgres", db: str = database) -> asyncpg.Connection:
        return await asyncpg.connect(host=upstream.host, port=upstream.port, user=user, database=db)

    async def run() -> None:
        admin = await connect(db="postgres")
        try:
            await admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
            await admin.execute(f"CREATE DATABASE {database}")
            for role in roles:
                await admin.execute(f"DROP ROLE IF EXISTS {role}")
                await admin.execute(f"CREATE ROLE {role} LOGIN")
            su = await connect()
            await su.execute("GRANT ALL ON SCHEMA public TO PUBLIC")
            async with su.transaction():  # the catalog as versions 1-3 left it
                await su.execute("CREATE SCHEMA mlproxy; CREATE TABLE mlproxy.schema_version ("
                                 "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
                for version, sql in enumerate(schema.MIGRATIONS[:3], start=1):
                    await su.execute(sql)
                    await su.execute("INSERT INTO mlproxy.schema_version VALUES ($1)", version)
            alice, eve = await connect("mlm_alice"), await connect("mlm_eve")
            register = ("SELECT mlproxy.register_model('public', $1, NULL, $2, ARRAY['x', 'y'], "
                        "ARRAY['int', 'text'], $3, 'c', '{}', 'q', 't', 60, 'p')")
            await alice.fetchval(register, "classes", "classify", "text")
            await alice.fetchval(register, "numbers", "regress", "float8")
            await alice.execute("GRANT EXECUTE ON FUNCTION classify(integer, text) TO mlm_eve")
            await eve.execute(  # the attack of issue 13: a READY row on alice's function
                "INSERT INTO mlproxy.models (schema_name, model_name, state, create_statement, options,"
                " source_query, function_schema, function_name, function_signature, arg_names,"
                " arg_types, return_type, artifact, artifact_sha256) VALUES ('public', 'forged',"
                " 'READY', 'x', '{}', 'x', 'public', 'regress', 'public.regress(integer, text)',"
                " '{a,b}', '{integer,text}', 'double precision', 'evil', 'sha')")
            assert await schema.migrate(su) == len(schema.MIGRATIONS)
            rows = {r["model_name"]: r for r in await su.fetch(
                "SELECT model_name, owner, prob_signature, probabilities_signature FROM mlproxy.models")}
            assert sorted(rows) == ["classes", "numbers"]
            assert rows["classes"]["probabilities_signature"] == "public.classify_probabilities(integer, text)"
            assert rows["numbers"]["prob_signature"] is None
            acl = {r["proname"]: (r["owner"], sorted(r["acl"])) for r in await su.fetch(
                "SELECT proname, proowner::regrole::text AS owner, proacl::text[] AS acl FROM pg_proc"
                " WHERE proname IN ('classify', 'classify_prob', 'classify_probabilities', 'regress')")}
            shared = ("mlm_alice", ["mlm_alice=X/mlm_alice", "mlm_eve=X/mlm_alice"])
            assert acl == {"classify": shared, "classify_prob": shared, "classify_probabilities": shared,
                           "regress": ("mlm_alice", ["mlm_alice=X/mlm_alice"])}
            assert await su.fetchval("SELECT has_function_privilege('mlm_alice', "
                                     "'mlproxy.create_model_privilege()', 'EXECUTE')")
            assert not await su.fetchval("SELECT has_function_privilege('mlm_eve', "
                                         "'mlproxy.create_model_privilege()', 'EXECUTE')")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await eve.execute("DELETE FROM mlproxy.models")
            assert await schema.migrate(su) == len(schema.MIGRATIONS)  # applied once
            for conn in (alice, eve, su):
                await conn.close()
        finally:
            await admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
            for role in roles:
                await admin.execute(f"DROP ROLE IF EXISTS {role}")
            await admin.close()

    asyncio.run(asyncio.wait_for(run(), 60))
