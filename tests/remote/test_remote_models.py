"""CREATE MODEL ... SAGEMAKER (BYOM remote inference) against a real HTTP endpoint.

The endpoint (tests/support/endpoints.py) speaks SageMaker's invocation format; its
behaviour is chosen by the URL's path (/sum answers each row's sum of numbers, /slow
waits, /short drops a line...). The proxy maps endpoint names to those URLs
(--endpoint NAME=URL). Calls go through psql (simple protocol) and psycopg
(extended protocol, prepared, text and binary), in the select list (streaming path)
and in WHERE (general path).
"""

from __future__ import annotations

import csv
import io
import json
import signal
import threading
import time

import psycopg
import pytest

from tests.support.endpoints import FakeEndpoint, row_sum
from tests.support.servers import psql, start_proxy

KINDS = ("sum", "json", "sagemaker_xgb", "super", "text", "bool", "short", "words", "fail", "slow", "nap")


@pytest.fixture(scope="module")
def endpoint():
    server = FakeEndpoint(delay=2.0)
    yield server
    server.close()


@pytest.fixture(scope="module")
def rproxy(pg, endpoint):
    args = [a for kind in KINDS for a in ("--endpoint", f"{kind}={endpoint.url(kind)}")]
    process = start_proxy(pg.uri, *args, "--endpoint", "down=http://127.0.0.1:9",
                          "--endpoint-timeout", "0.8")
    yield process
    process.stop()


@pytest.fixture(scope="module")
def data(rproxy):
    """Table rm_t: id, x (NULL for every 5th), s (text with CSV's special characters)."""
    with psycopg.connect(rproxy.dsn(), autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS rm_t")
        conn.execute("""CREATE TABLE rm_t AS SELECT g AS id,
                            CASE WHEN g % 5 = 0 THEN NULL ELSE g * 0.25 END::float8 AS x,
                            (ARRAY['plain', 'a,b', 'say "hi"', 'two' || chr(10) || 'lines', ''])[g % 5 + 1]
                                AS s
                          FROM generate_series(1, 60) g""")
    yield "rm_t"
    with psycopg.connect(rproxy.dsn(), autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS rm_t")


def number(x: float | None) -> str:
    """A float8 argument as the CSV has it: shortest exact form, no ".0"; NULL empty."""
    if x is None:
        return ""
    text = repr(x)
    return text[:-2] if text.endswith(".0") else text


def expected_sum(i: int) -> float:
    x = None if i % 5 == 0 else i * 0.25
    return i + (x or 0.0)


@pytest.fixture
def models(rproxy):
    """Makes models; drops them after the test."""
    made: list[str] = []

    def make(name: str, sql: str) -> None:
        with psycopg.connect(rproxy.dsn(), autocommit=True) as conn:
            conn.execute(f"DROP MODEL IF EXISTS {name}")
            conn.execute(sql)
        made.append(name)

    yield make
    with psycopg.connect(rproxy.dsn(), autocommit=True) as conn:
        for name in made:
            conn.execute(f"DROP MODEL IF EXISTS {name}")


def test_streaming_general_prepared_in_batches(rproxy, endpoint, data, models):
    models("rm_sum", "CREATE MODEL rm_sum FUNCTION rm_fsum (int, float8) RETURNS float8 "
                     "SAGEMAKER 'sum' IAM_ROLE default SETTINGS (MAX_BATCH_ROWS 7)")
    endpoint.taken("sum")
    out = psql(rproxy.host, rproxy.port, "SELECT id, rm_fsum(id, x) FROM rm_t ORDER BY id").stdout
    got = [tuple(line.split("|")) for line in out.split()]
    assert [(int(i), float(v)) for i, v in got] == [(i, expected_sum(i)) for i in range(1, 61)]
    bodies = endpoint.taken("sum")
    assert sum(len(b.splitlines()) for b in bodies) == 60
    assert max(len(b.splitlines()) for b in bodies) == 7  # at most MAX_BATCH_ROWS a request
    # general path (WHERE), simple protocol
    out = psql(rproxy.host, rproxy.port, "SELECT count(*) FROM rm_t WHERE rm_fsum(id, x) > 30").stdout
    assert int(out) == sum(expected_sum(i) > 30 for i in range(1, 61))
    with psycopg.connect(rproxy.dsn(), autocommit=True) as conn:
        for binary in (False, True):
            for limit in (1, 3, 40):  # prepared: the same statement, several executions
                rows = conn.execute("SELECT id, rm_fsum(id, x) FROM rm_t WHERE id <= %s ORDER BY id",
                                    (limit,), prepare=True, binary=binary).fetchall()
                assert rows == [(i, expected_sum(i)) for i in range(1, limit + 1)]
            rows = conn.execute("SELECT id FROM rm_t WHERE rm_fsum(id, x) BETWEEN %s AND %s ORDER BY id",
                                (10, 20), prepare=True, binary=binary).fetchall()
            assert [r[0] for r in rows] == [i for i in range(1, 61) if 10 <= expected_sum(i) <= 20]
        # EXPLAIN (the upstream's plan), and EXPLAIN ANALYZE, which calls the endpoint
        for sql in ("EXPLAIN SELECT id, rm_fsum(id, x) FROM rm_t",
                    "EXPLAIN ANALYZE SELECT id FROM rm_t WHERE rm_fsum(id, x) > 30"):
            plan = "\n".join(r[0] for r in conn.execute(sql).fetchall())
            assert "rm_t" in plan, plan


def test_csv_rows_null_and_quoting(rproxy, endpoint, data, models):
    models("rm_text", "CREATE MODEL rm_text FUNCTION rm_ftext (int, float8, varchar) RETURNS varchar "
                      "SAGEMAKER 'text'")
    endpoint.taken("text")
    with psycopg.connect(rproxy.dsn(), autocommit=True) as conn:
        rows = conn.execute("SELECT id, x, s, rm_ftext(id, x, s) FROM rm_t WHERE id <= 5 ORDER BY id").fetchall()
    body = b"".join(endpoint.taken("text"))
    # the request: one CSV row a row, NULL an empty field, text quoted (quotes doubled)
    expected = "".join(f'{i},{number(x)},"{s.replace(chr(34), 2 * chr(34))}"\n' for i, x, s, _ in rows)
    assert body.decode() == expected
    assert b'"say ""hi"""' in body and b'"a,b"' in body and b'"two\nlines"' in body and b',""\n' in body
    assert list(csv.reader(io.StringIO(body.decode()))) == [[str(i), number(x), s] for i, x, s, _ in rows]
    # the answer (the fields as the endpoint read them) comes back per row
    for i, x, s, answer in rows:
        fields = (str(i), number(x), s)
        assert answer == "|".join(f.replace("\n", "\\n") if f else "<null>" for f in fields), i


def test_return_types_and_answer_forms(rproxy, endpoint, data, models):
    models("rm_json", "CREATE MODEL rm_json FUNCTION rm_fjson (int, float8) RETURNS float8 SAGEMAKER 'json'")
    models("rm_xgb", "CREATE MODEL rm_xgb FUNCTION rm_fxgb (int, float8) RETURNS float8 SAGEMAKER 'sagemaker_xgb'")
    models("rm_int", "CREATE MODEL rm_int FUNCTION rm_fint (int, float8) RETURNS integer SAGEMAKER 'sum'")
    models("rm_num", "CREATE MODEL rm_num FUNCTION rm_fnum (int, float8) RETURNS numeric SAGEMAKER 'sum'")
    models("rm_bool", "CREATE MODEL rm_bool FUNCTION rm_fbool (int, float8) RETURNS boolean SAGEMAKER 'bool'")
    models("rm_small", "CREATE MODEL rm_small FUNCTION rm_fsmall (int, float8) RETURNS smallint SAGEMAKER 'sum'")
    models("rm_big", "CREATE MODEL rm_big FUNCTION rm_fbig (int, float8) RETURNS bigint SAGEMAKER 'sum'")
    models("rm_real", "CREATE MODEL rm_real FUNCTION rm_freal (int, float8) RETURNS real SAGEMAKER 'sum'")
    with psycopg.connect(rproxy.dsn(), autocommit=True) as conn:
        for binary in (False, True):
            rows = conn.execute("SELECT id, rm_fjson(id, x), rm_fxgb(id, x), rm_fint(id, x), rm_fnum(id, x), "
                                "rm_fbool(id - 30, x), rm_fsmall(id, x), rm_fbig(id, x), rm_freal(id, x) "
                                "FROM rm_t ORDER BY id", binary=binary).fetchall()
            for i, js, xgb, integer, num, flag, small, big, real in rows:
                assert js == xgb == expected_sum(i)
                assert integer == small == big == round(expected_sum(i))  # Postgres' rounding, half to even
                assert float(num) == expected_sum(i) == real  # (quarters: exact in a float4)
                assert flag == (expected_sum(i) - 30 > 0)
            # the same values as Postgres' own casts of the double precision answer
            same = conn.execute("SELECT bool_and(rm_fint(id, x) = rm_fjson(id, x)::int AND "
                                "rm_fsmall(id, x) = rm_fjson(id, x)::smallint AND "
                                "rm_freal(id, x) = rm_fjson(id, x)::real) FROM rm_t").fetchone()[0]
            assert same
        # the streaming path's text equals Postgres' own text of the same values
        text = conn.execute("SELECT rm_fint(id, x)::text = (rm_fint(id, x))::text FROM rm_t").fetchall()
        assert all(r[0] for r in text)


def test_multi_model_endpoint_names_its_model(rproxy, endpoint, data, models):
    """SAGEMAKER 'endpoint':'model': each request names the model (SageMaker's
    X-Amzn-SageMaker-Target-Model header), and SHOW MODEL shows it."""
    models("rm_multi", "CREATE MODEL rm_multi FUNCTION rm_fmulti (int, float8) RETURNS float8 "
                       "SAGEMAKER 'sum':'churn-v2.tar.gz'")
    with psycopg.connect(rproxy.dsn(), autocommit=True) as conn:
        endpoint.target_models.clear()
        assert conn.execute("SELECT rm_fmulti(id, x) FROM rm_t WHERE id = 4").fetchall() == [(expected_sum(4),)]
        assert endpoint.target_models == ["churn-v2.tar.gz"]
        assert dict(conn.execute("SHOW MODEL rm_multi").fetchall())["Target Model"] == "churn-v2.tar.gz"


def test_super_is_jsonb_as_postgres_prints_it(rproxy, endpoint, data, models):
    models("rm_super", "CREATE MODEL rm_super FUNCTION rm_fsuper (int, float8) RETURNS SUPER SAGEMAKER 'super'")
    with psycopg.connect(rproxy.dsn(), autocommit=True) as conn:
        assert conn.execute("SELECT pg_typeof(rm_fsuper(1, 2.0))::text").fetchone()[0] == "jsonb"
        streamed = conn.execute("SELECT id, rm_fsuper(id, x) FROM rm_t ORDER BY id").fetchall()
        # in an expression (general path) Postgres itself parses and prints the jsonb
        general = conn.execute("SELECT id, rm_fsuper(id, x)::text FROM rm_t WHERE rm_fsuper(id, x) IS NOT NULL "
                               "ORDER BY id").fetchall()
        raw = conn.execute("SELECT id, rm_fsuper(id, x) FROM rm_t ORDER BY id", binary=True).fetchall()
    assert [(i, json.dumps(v)) for i, v in streamed] and len(general) == 60
    for (i, value), (j, text), (_, binary_value) in zip(streamed, general, raw):
        assert i == j
        assert value == binary_value == {"sum": expected_sum(i), "fields": 2, "first": str(i),
                                          "ok": expected_sum(i) > 0}
    with psycopg.connect(rproxy.dsn(), autocommit=True) as conn:
        conn.adapters.register_loader("jsonb", psycopg.types.string.TextLoader)
        texts = conn.execute("SELECT id, rm_fsuper(id, x) FROM rm_t ORDER BY id").fetchall()
    assert [t for _, t in texts] == [t for _, t in general]  # the bytes Postgres would send


@pytest.mark.parametrize("doc", [
    '{"b": 1, "aa": [1.0, 1e3, -0.0, 12345678901234567890.5], "a": {"zz": null, "é": "x\\ny\\u0001"}}',
    '[true, false, null, "", "\\"quoted\\""]', '1.50', '"plain"', '{"a": 1, "a": 2}',
])
def test_jsonb_text_is_postgres_own(rproxy, doc):
    """RETURNS SUPER on the streaming path: the text the proxy prints is Postgres' jsonb output."""
    from decimal import Decimal

    from proxy.inference.remote import jsonb_text

    with psycopg.connect(rproxy.dsn(), autocommit=True) as conn:
        assert jsonb_text(json.loads(doc, parse_float=Decimal)) == conn.execute(
            "SELECT %s::jsonb::text", (doc,)).fetchone()[0]


def test_privileges_show_and_drop(rproxy, endpoint, data, models):
    models("rm_priv", "CREATE MODEL rm_priv FUNCTION rm_fpriv (int) RETURNS float8 SAGEMAKER 'sum'")
    with psycopg.connect(rproxy.dsn(), autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS rm_bob")
        conn.execute("CREATE ROLE rm_bob LOGIN")
        conn.execute("GRANT SELECT ON rm_t TO rm_bob")
        try:
            show = dict(conn.execute("SHOW MODEL rm_priv").fetchall())
            assert show["Model State"] == "READY" and show["Endpoint"] == "sum"
            assert show["Inference Type"] == "Remote" and show["Function Name"] == "rm_fpriv"
            assert endpoint.url("sum") not in str(show)  # the operator's URL is not shown
            assert ("public", "rm_priv", "READY") in conn.execute("SHOW MODEL ALL").fetchall()
            assert [r[0].strip() for r in conn.execute(
                "SELECT model_state FROM svv_ml_model_info WHERE model_name = 'rm_priv'")] == ["Model is Ready"]
            with psycopg.connect(rproxy.dsn(user="rm_bob"), autocommit=True) as bob:
                with pytest.raises(psycopg.Error) as info:
                    bob.execute("SELECT rm_fpriv(id) FROM rm_t").fetchall()
                assert info.value.sqlstate == "42501"
                with pytest.raises(psycopg.Error) as info:
                    bob.execute("SHOW MODEL rm_priv").fetchall()
                assert info.value.sqlstate == "42501"
                conn.execute("GRANT EXECUTE ON MODEL rm_priv TO rm_bob")
                assert bob.execute("SELECT rm_fpriv(id) FROM rm_t WHERE id = 3").fetchall() == [(3.0,)]
                assert dict(bob.execute("SHOW MODEL rm_priv").fetchall())["Endpoint"] == "sum"
                with pytest.raises(psycopg.Error) as info:  # not bob's to drop
                    bob.execute("DROP MODEL rm_priv")
                assert info.value.sqlstate == "42501"
            conn.execute("DROP MODEL rm_priv")
            for sql in ("SHOW MODEL rm_priv", "SELECT rm_fpriv(1)"):
                with pytest.raises(psycopg.Error) as info:
                    conn.execute(sql).fetchall()
                assert info.value.sqlstate in ("42704", "42883")
        finally:
            conn.execute("REVOKE SELECT ON rm_t FROM rm_bob")
            conn.execute("DROP ROLE rm_bob")


def test_created_by_a_role_owned_by_it(rproxy, data):
    """A role with CREATE MODEL creates a remote model: its stub is the role's, and the
    role may call it, drop it; nobody else may call it."""
    with psycopg.connect(rproxy.dsn(), autocommit=True) as admin:
        for role in ("rm_carol", "rm_dave"):
            admin.execute(f"DROP ROLE IF EXISTS {role}")
            admin.execute(f"CREATE ROLE {role} LOGIN")
            admin.execute(f"GRANT SELECT ON rm_t TO {role}")
        admin.execute("GRANT CREATE MODEL TO rm_carol")
        admin.execute("GRANT CREATE ON SCHEMA public TO rm_carol")
        try:
            with psycopg.connect(rproxy.dsn(user="rm_carol"), autocommit=True) as carol:
                carol.execute("CREATE MODEL rm_carols FUNCTION rm_fcarol (int, float8) RETURNS float8 "
                              "SAGEMAKER 'sum'")
                owner = admin.execute("SELECT proowner::regrole::text, proacl::text FROM pg_proc "
                                      "WHERE proname = 'rm_fcarol'").fetchall()
                acl = owner[0][1].strip("{}").split(",")
                assert owner[0][0] == "rm_carol" and not any(e.startswith("=") for e in acl)  # not PUBLIC's
                assert carol.execute("SELECT rm_fcarol(id, x) FROM rm_t WHERE id = 2").fetchall() == [(2.5,)]
                with psycopg.connect(rproxy.dsn(user="rm_dave"), autocommit=True) as dave:
                    with pytest.raises(psycopg.Error) as info:
                        dave.execute("SELECT rm_fcarol(id, x) FROM rm_t WHERE id = 2").fetchall()
                    assert info.value.sqlstate == "42501"
                    with pytest.raises(psycopg.Error) as info:  # no CREATE MODEL privilege
                        dave.execute("CREATE MODEL rm_daves FUNCTION rm_fdave (int) RETURNS float8 SAGEMAKER 'sum'")
                    assert info.value.sqlstate == "42501"
                carol.execute("DROP MODEL rm_carols")
        finally:
            admin.execute("DROP MODEL IF EXISTS rm_carols")
            admin.execute("REVOKE CREATE ON SCHEMA public FROM rm_carol")
            admin.execute("REVOKE CREATE MODEL FROM rm_carol")
            for role in ("rm_carol", "rm_dave"):
                admin.execute(f"REVOKE SELECT ON rm_t FROM {role}")
                admin.execute(f"DROP ROLE {role}")


@pytest.mark.parametrize("sql, sqlstate", [
    ("CREATE MODEL rm_bad FUNCTION rm_fbad (int) RETURNS float8 SAGEMAKER 'nosuch'", "42704"),
    ("CREATE MODEL rm_bad FUNCTION rm_fbad (int) RETURNS float8 SAGEMAKER 'http://169.254.169.254/'", "42501"),
    ("CREATE MODEL rm_bad FUNCTION rm_fbad (int) RETURNS bytea SAGEMAKER 'sum'", "22023"),
    ("CREATE MODEL rm_bad FUNCTION rm_fbad (nosuchtype) RETURNS float8 SAGEMAKER 'sum'", "42704"),
])
def test_refused_at_create_nothing_registered(rproxy, sql, sqlstate):
    with psycopg.connect(rproxy.dsn(), autocommit=True) as conn:
        with pytest.raises(psycopg.Error) as info:
            conn.execute(sql)
        assert info.value.sqlstate == sqlstate, info.value
        for check in ("SHOW MODEL rm_bad", "SELECT rm_fbad(1)"):
            with pytest.raises(psycopg.Error) as info:
                conn.execute(check).fetchall()
            assert info.value.sqlstate in ("42704", "42883")
        assert conn.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.parametrize("kind, sqlstate, words", [
    ("down", "08001", "could not connect to inference endpoint \"down\": Connection refused"),
    ("slow", "08006", "did not answer within 0.8 s"),
    ("short", "38000", "returned 4 values for 5 rows"),
    ("words", "22P02", 'invalid input syntax for type double precision: "high"'),
    ("fail", "38000", "HTTP 500: model exploded: feature 2 out of range"),
])
def test_bad_endpoint_is_the_statements_error(rproxy, data, models, kind, sqlstate, words):
    models(f"rm_{kind}", f"CREATE MODEL rm_{kind} FUNCTION rm_f{kind} (int, float8) RETURNS float8 "
                         f"SAGEMAKER '{kind}'")
    with psycopg.connect(rproxy.dsn(), autocommit=True) as conn:
        for sql in (f"SELECT id, rm_f{kind}(id, x) FROM rm_t WHERE id <= 5",          # streaming
                    f"SELECT id FROM rm_t WHERE id <= 5 AND rm_f{kind}(id, x) > 0"):  # general
            for prepare in (False, True):
                with pytest.raises(psycopg.Error) as info:
                    conn.execute(sql, prepare=prepare).fetchall()
                assert info.value.sqlstate == sqlstate, info.value
                assert words in str(info.value), info.value
                assert conn.execute("SELECT 1").fetchone() == (1,)  # the session goes on
        conn.execute("BEGIN")  # inside a block too
        with pytest.raises(psycopg.Error):
            conn.execute(f"SELECT rm_f{kind}(id, x) FROM rm_t WHERE id <= 5").fetchall()
        conn.execute("ROLLBACK")
        assert conn.execute("SELECT 1").fetchone() == (1,)
    out = psql(rproxy.host, rproxy.port, f"SELECT rm_f{kind}(id, x) FROM rm_t WHERE id <= 5;", check=False)
    assert sqlstate in out.stderr or words in out.stderr


def test_requests_of_a_statement_go_at_once_over_a_small_pool(rproxy, endpoint, data, models):
    """60 rows at MAX_BATCH_ROWS 6: ten requests, at most --endpoint-connections (4) at
    once, so about three rounds of the endpoint's 0.4 s, not ten."""
    models("rm_nap", "CREATE MODEL rm_nap FUNCTION rm_fnap (int, float8) RETURNS float8 SAGEMAKER 'nap' "
                     "SETTINGS (MAX_BATCH_ROWS 6)")
    with psycopg.connect(rproxy.dsn(), autocommit=True) as conn:
        conn.execute("SELECT id, rm_fnap(id, x) FROM rm_t WHERE id = 1").fetchall()  # planned, client made
        endpoint.taken("nap")
        endpoint.most_in_flight = 0
        started = time.monotonic()
        rows = conn.execute("SELECT id, rm_fnap(id, x) FROM rm_t ORDER BY id").fetchall()
        elapsed = time.monotonic() - started
    assert rows == [(i, expected_sum(i)) for i in range(1, 61)]
    assert [len(b.splitlines()) for b in endpoint.taken("nap")] == [6] * 10
    assert endpoint.most_in_flight == 4
    starts = [round(t - started, 2) for t in endpoint.nap_starts[-10:]]
    assert elapsed < 10 * 0.4 * 0.6, (elapsed, starts)  # (10 requests one after the other: 4 s)


def test_slow_endpoint_blocks_no_one_else(rproxy, data, models):
    """While one session waits for a slow endpoint, others run queries and remote calls."""
    models("rm_slow2", "CREATE MODEL rm_slow2 FUNCTION rm_fslow2 (int, float8) RETURNS float8 SAGEMAKER 'slow'")
    models("rm_fast", "CREATE MODEL rm_fast FUNCTION rm_ffast (int, float8) RETURNS float8 SAGEMAKER 'sum'")
    failed: list[BaseException] = []

    def slow() -> None:
        try:
            with psycopg.connect(rproxy.dsn(), autocommit=True) as conn:
                conn.execute("SELECT rm_fslow2(id, x) FROM rm_t").fetchall()
        except psycopg.Error as exc:
            failed.append(exc)

    waiting = [threading.Thread(target=slow) for _ in range(3)]
    for thread in waiting:
        thread.start()
    time.sleep(0.3)
    with psycopg.connect(rproxy.dsn(), autocommit=True) as conn:
        started = time.monotonic()
        assert conn.execute("SELECT 1").fetchone() == (1,)
        rows = conn.execute("SELECT id, rm_ffast(id, x) FROM rm_t ORDER BY id").fetchall()
        assert rows == [(i, expected_sum(i)) for i in range(1, 61)]
        assert time.monotonic() - started < 1.0
    for thread in waiting:
        thread.join()
    assert [e.sqlstate for e in failed] == ["08006"] * 3  # (the slow endpoint takes 2 s; the limit is 0.8 s)


def test_urls_only_when_the_operator_allows(pg, endpoint, tmp_path):
    url = endpoint.url("sum").replace("http://", "http://user:secret@")
    config = tmp_path / "mlproxy.toml"
    config.write_text("allow_endpoint_urls = true\n")
    process = start_proxy(pg.uri, "--config", str(config))
    try:
        with psycopg.connect(process.dsn(), autocommit=True) as conn:
            conn.execute("DROP MODEL IF EXISTS rm_url")
            conn.execute(f"CREATE MODEL rm_url FUNCTION rm_furl (int) RETURNS float8 SAGEMAKER '{url}'")
            assert conn.execute("SELECT rm_furl(g) FROM generate_series(1, 3) g").fetchall() == [(1.0,), (2.0,), (3.0,)]
            show = dict(conn.execute("SHOW MODEL rm_url").fetchall())
            assert "secret" not in show["Endpoint"] and "***@127.0.0.1" in show["Endpoint"]
            # a reload that disallows URLs applies to the model made while they were allowed
            config.write_text("allow_endpoint_urls = false\n")
            process.proc.send_signal(signal.SIGHUP)
            assert process.wait_for_log("reload: allow_endpoint_urls=false")
            with pytest.raises(psycopg.Error) as info:
                conn.execute("SELECT rm_furl(g) FROM generate_series(1, 3) g").fetchall()
            assert info.value.sqlstate == "42501" and "secret" not in str(info.value)
            conn.execute("DROP MODEL rm_url")
    finally:
        process.stop()


def test_sighup_remaps_an_endpoint_name(pg, endpoint, tmp_path):
    config = tmp_path / "mlproxy.toml"
    config.write_text(f'endpoint = ["scorer={endpoint.url("fail")}"]\n')
    process = start_proxy(pg.uri, "--config", str(config))
    try:
        with psycopg.connect(process.dsn(), autocommit=True) as conn:
            conn.execute("DROP MODEL IF EXISTS rm_scorer")
            conn.execute("CREATE MODEL rm_scorer FUNCTION rm_fscorer (int) RETURNS float8 SAGEMAKER 'scorer'")
            with pytest.raises(psycopg.Error) as info:
                conn.execute("SELECT rm_fscorer(2)").fetchall()
            assert info.value.sqlstate == "38000"
            config.write_text(f'endpoint = ["scorer={endpoint.url("sum")}"]\n')
            process.proc.send_signal(signal.SIGHUP)
            assert process.wait_for_log("reload: endpoint=")
            assert conn.execute("SELECT rm_fscorer(2)").fetchall() == [(2.0,)]
            conn.execute("DROP MODEL rm_scorer")
    finally:
        process.stop()


def test_row_sum_helper():
    assert row_sum(["1", "", "2.5", "x"]) == 3.5
