"""The admin console (virtual database `mlproxy`) through psql, psycopg (extended
protocol, text and binary results), asyncpg, pgjdbc and raw messages: its results are
ordinary results, the login is the upstream's (a wrong password is the upstream's
28P01), a role not in admin_users gets 42501 (also when it pipelines a command behind
its login), RELOAD applies a changed config file, SHUTDOWN stops the proxy."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import asyncpg
import psycopg
import pytest

from tests.support import toolchain
from tests.support.clients import run_async, run_psql
from tests.support.servers import AUTH_ROLES, psql as direct_psql, start_proxy
from tests.support.wire import RawConn, error_fields, startup_packet
from proxy import protocol as p

PROGRAM = Path(__file__).parent / "ConsoleCheck.java"
INTRUDER = "console_intruder"  # a role that logs in with trust, never an admin


@pytest.fixture(scope="module")
def console(pg, upstream):
    """A proxy of this module's own: its counters see only this module's traffic."""
    direct_psql(upstream.host, upstream.port,
                f"DO $$BEGIN CREATE ROLE {INTRUDER} LOGIN; "
                f"EXCEPTION WHEN duplicate_object THEN NULL; END$$;")
    process = start_proxy(pg.uri, "--admin-users", "postgres,md5_user")
    yield process
    process.stop()


def show(proxy, command: str, user: str = "postgres") -> list[list[str]]:
    done = run_psql(proxy, "-F", "\t", "-c", command, db="mlproxy")
    assert done.returncode == 0, done.stderr
    return [line.split("\t") for line in done.stdout.splitlines()]


def stats_row(proxy, database: str) -> dict[str, str]:
    done = run_psql(proxy, "-F", "\t", "-P", "tuples_only=off", "-P", "footer=off", "-c",
                    "SHOW STATS", db="mlproxy")
    assert done.returncode == 0, done.stderr
    lines = [line.split("\t") for line in done.stdout.splitlines()]
    header, rows = lines[0], lines[1:]
    for row in rows:
        if row[0] == database:
            return dict(zip(header, row))
    return dict.fromkeys(header, "0") | {"database": database}


def test_psql_show_commands_follow_the_traffic(console):
    help_rows = show(console, "SHOW HELP")
    assert [r[0] for r in help_rows] == ["SHOW HELP", "SHOW STATS", "SHOW SESSIONS", "SHOW MODELS",
                                         "SHOW JOBS", "SHOW CONFIG", "RELOAD", "SHUTDOWN",
                                         "SET name = value"]
    with psycopg.connect(console.dsn(), autocommit=True) as conn:
        def run(i: int) -> None:  # simple protocol: the session stays with the relay pump
            assert conn.pgconn.exec_(f"SELECT {i}".encode()).get_value(0, 0) == str(i).encode()

        def mine() -> list[str]:
            rows = [r for r in show(console, "SHOW SESSIONS") if r[2] == "postgres"]
            assert len(rows) == 1, rows
            return rows[0]
        # Until the registry knows the database has no models, a session is taken
        # back from the pump when it learns so (new triggers): warm up till lent.
        warm, deadline = 0, time.monotonic() + 20
        while mine()[5] != "native" and time.monotonic() < deadline:
            run(warm)
            warm += 1
            time.sleep(0.05)
        before = stats_row(console, "postgres")
        for i in range(5):
            run(i)
        # a live session held by the relay pump: its counts are the pump's
        _, user, database, client, state, relay, age, queries, received, sent = mine()
        assert (user, database, state, relay) == ("postgres", "postgres", "idle", "native")
        assert int(queries) == warm + 5
        sessions = show(console, "SHOW SESSIONS")
        assert client.startswith("127.0.0.1:") and float(age) > 0
        assert int(received) > 0 and int(sent) > 0
        consoles = [r for r in sessions if r[2] == "mlproxy"]
        assert [(r[4], r[5]) for r in consoles] == [("console", "console")]
        live = stats_row(console, "postgres")
        assert int(live["total_query_count"]) - int(before["total_query_count"]) == 5
        assert int(live["sessions"]) == 1
    after = stats_row(console, "postgres")
    assert int(after["total_query_count"]) - int(before["total_query_count"]) == 5
    assert int(after["total_received"]) >= int(live["total_received"])
    assert int(after["sessions"]) == 0
    assert int(after["total_sessions"]) == int(before["total_sessions"])  # live then, closed now
    config = {r[0]: r for r in show(console, "SHOW CONFIG")}
    assert config["admin_users"][1:] == ["postgres, md5_user", "", "flag --admin-users", "yes"]
    assert config["listen"][4] == "no"
    assert show(console, "SHOW JOBS") == [] or all(len(r) == 10 for r in show(console, "SHOW JOBS"))
    assert show(console, "show models;") == []  # nothing predicted through this proxy


def test_psql_unknown_command_and_several_in_one_query(console):
    done = run_psql(console, "-c", "SHOW NONSENSE", db="mlproxy")
    assert done.returncode == 1
    assert "invalid command 'SHOW NONSENSE', use SHOW HELP;" in done.stderr
    done = run_psql(console, "-v", "VERBOSITY=verbose", "-c", "SHOW STATS; SHOW BOGUS", db="mlproxy")
    assert "42601" in done.stderr
    done = run_psql(console, "-c", "SHOW HELP; SHOW CONFIG", db="mlproxy")
    assert done.returncode == 0 and "admin_users" in done.stdout
    # session parameters drivers set are accepted (and mean nothing here); settings are not
    done = run_psql(console, "-c", "SET extra_float_digits = 3; SET application_name TO 'x'",
                    db="mlproxy")
    assert done.returncode == 0, done.stderr
    done = run_psql(console, "-c", "SET workers = 4", db="mlproxy")
    assert done.returncode == 1 and "workers is not changed with SET" in done.stderr


def test_psycopg_extended_protocol_text_and_binary(console):
    with psycopg.connect(console.dsn(db="mlproxy"), autocommit=True) as conn:
        cur = conn.execute("SHOW STATS")
        assert [c.name for c in cur.description][:4] == ["database", "total_query_count",
                                                          "total_received", "total_sent"]
        rows = cur.fetchall()
        assert all(isinstance(r[1], int) for r in rows)
        for prepare in (False, True, True):  # unnamed, then a named statement reused
            with conn.cursor(binary=True) as bcur:
                bcur.execute("SHOW SESSIONS", prepare=prepare)
                rows = bcur.fetchall()
                mine = [r for r in rows if r[2] == "mlproxy"]
                assert mine and isinstance(mine[0][0], int) and isinstance(mine[0][6], float)
                assert mine[0][4:6] == ("console", "console")
        with pytest.raises(psycopg.errors.SyntaxError) as raised:
            conn.execute("SELECT 1")
        assert raised.value.sqlstate == "42601"
        assert "use SHOW HELP" in str(raised.value)
        # the session goes on after the error
        assert [r[0] for r in conn.execute("SHOW HELP").fetchall()][0] == "SHOW HELP"
        conn.pgconn.exec_(b"SHOW CONFIG")  # simple protocol on the same session
        assert conn.execute("SHOW CONFIG").fetchall()


def test_asyncpg_binary_results(console):
    async def body():
        conn = await asyncpg.connect(host=console.host, port=console.port, user="md5_user",
                                     password=AUTH_ROLES["md5_user"][1], database="mlproxy",
                                     ssl=False)
        try:
            rows = await conn.fetch("SHOW SESSIONS")
            mine = [r for r in rows if r["user"] == "md5_user"]
            assert len(mine) == 1 and mine[0]["relay"] == "console" and mine[0]["id"] > 0
            statement = await conn.prepare("SHOW STATS")
            assert [a.name for a in statement.get_attributes()][-2:] == ["sessions", "total_sessions"]
            await statement.fetch()
            with pytest.raises(asyncpg.PostgresSyntaxError):
                await conn.fetch("DROP TABLE x")
            assert len(await conn.fetch("SHOW CONFIG")) > 10
        finally:
            await conn.close()
    run_async(body())


def test_login_is_the_upstreams_and_non_admins_get_42501(console):
    async def body():
        kwargs = dict(host=console.host, port=console.port, database="mlproxy", ssl=False)
        with pytest.raises(asyncpg.InvalidPasswordError):  # 28P01: the upstream's own check
            await asyncpg.connect(user="md5_user", password="wrong", **kwargs)
        with pytest.raises(asyncpg.InsufficientPrivilegeError) as raised:
            await asyncpg.connect(user="scram_user", password=AUTH_ROLES["scram_user"][1], **kwargs)
        assert "not in admin_users" in str(raised.value)
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await asyncpg.connect(user=INTRUDER, **kwargs)
    run_async(body())
    done = run_psql(console, "-U", INTRUDER, "-c", "SHOW STATS", db="mlproxy")
    assert done.returncode == 2 and "permission denied to use the mlproxy admin console" in done.stderr


def test_command_pipelined_behind_a_refused_login_is_never_run(console):
    """A non-admin sends SHUTDOWN in the same write as its StartupMessage: it is
    refused after the login (FATAL 42501) and the proxy goes on."""
    conn = RawConn.to_proxy(console)
    conn.send(startup_packet(INTRUDER, "mlproxy") + p.message(b"Q", p.cstr("SHUTDOWN")))
    messages = conn.read_all(settle=2)
    errors = [error_fields(m) for m in messages if m[0] == b"E"]
    assert [(e["S"], e["C"]) for e in errors] == [("FATAL", "42501")]
    assert not any(m[0] == b"C" for m in messages)
    assert conn.is_closed()
    conn.close()
    assert console.alive()
    assert show(console, "SHOW HELP")


def test_extended_protocol_errors_skip_to_sync(console):
    """Raw extended messages: an unknown command is refused at Parse (42601), what
    follows up to Sync is skipped, and the next batch runs; a row limit suspends."""
    conn = RawConn.to_proxy(console)
    conn.login("postgres", "mlproxy")
    parse = lambda name, sql: p.message(b"P", p.cstr(name) + p.cstr(sql) + b"\x00\x00")  # noqa: E731
    bind = p.message(b"B", b"\x00\x00" + b"\x00\x00" + b"\x00\x00" + b"\x00\x00")
    describe = p.message(b"D", b"P\x00")
    execute = lambda limit: p.message(b"E", b"\x00" + limit.to_bytes(4, "big"))  # noqa: E731
    sync = p.message(b"S")
    conn.send(parse("", "SHOW BOGUS") + bind + execute(0) + sync)
    got = conn.read_until_ready()
    assert [m[0] for m in got] == [b"E", b"Z"] and error_fields(got[0])["C"] == "42601"
    conn.send(parse("", "SHOW HELP") + bind + describe + execute(3) + execute(0) + sync)
    got = conn.read_until_ready()
    kinds = [m[0] for m in got]
    assert kinds == [b"1", b"2", b"T", b"D", b"D", b"D", b"s", *[b"D"] * 6, b"C", b"Z"], kinds
    assert got[-2][1] == p.cstr("SHOW")
    conn.send(p.message(b"X"))
    assert conn.is_closed()
    conn.close()


@pytest.fixture(scope="module")
def jdbc():
    try:
        return toolchain.jdbc()
    except toolchain.ToolMissing as exc:
        message = f"pgjdbc admin console test NOT RUN: {exc}"
        toolchain.NOT_RUN.append(message)
        pytest.skip(message)


@pytest.mark.timeout(600)  # the jdbc fixture may first have to apt-get install java
def test_pgjdbc(jdbc, console):
    with psycopg.connect(console.dsn(), autocommit=True) as conn:
        conn.execute("SELECT 1")
    url = f"jdbc:postgresql://{console.host}:{console.port}/mlproxy?user=postgres&sslmode=disable"
    done = subprocess.run([jdbc.java, "-cp", str(jdbc.jar), str(PROGRAM), url, "postgres"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    results = dict(line.split("=", 1) for line in done.stdout.splitlines())
    assert results["stats_columns"].split(",")[:4] == ["database", "total_query_count",
                                                       "total_received", "total_sent"]
    assert int(results["stats_queries"]) >= 1
    assert results["server_prepared"] == "true"
    assert results["console_sessions"] == "1"
    assert results["unknown_state"] == "42601"
    assert int(results["config_rows"]) > 10


def test_reload_applies_the_config_file_and_shutdown_stops(fresh_proxy, upstream, tmp_path):
    direct_psql(upstream.host, upstream.port,
                f"DO $$BEGIN CREATE ROLE {INTRUDER} LOGIN; "
                f"EXCEPTION WHEN duplicate_object THEN NULL; END$$;")
    config = tmp_path / "mlproxy.toml"
    config.write_text('admin_users = ["postgres"]\n')
    proxy = fresh_proxy("--config", str(config))
    refused = run_psql(proxy, "-U", INTRUDER, "-c", "SHOW HELP", db="mlproxy")
    assert refused.returncode == 2 and "not in admin_users" in refused.stderr
    config.write_text(f'admin_users = ["postgres", "{INTRUDER}"]\nworkers = 2\n')
    done = run_psql(proxy, "-c", "RELOAD", db="mlproxy")
    assert done.returncode == 0, done.stderr
    assert proxy.wait_for_log(f"reload: admin_users=postgres, {INTRUDER} (from file {config}:1)")
    assert proxy.wait_for_log("reload: workers=2")
    allowed = run_psql(proxy, "-U", INTRUDER, "-c", "SHOW CONFIG", db="mlproxy")
    assert allowed.returncode == 0, allowed.stderr
    assert f"admin_users|postgres, {INTRUDER}||file {config}:1|yes" in allowed.stdout
    # SHUTDOWN: as SIGTERM, an idle relayed session is told 57P01, the process ends with 0
    with psycopg.connect(proxy.dsn(), autocommit=True) as relayed:
        relayed.execute("SELECT 1")
        done = run_psql(proxy, "-c", "SHUTDOWN", db="mlproxy")
        assert done.returncode == 0, done.stderr
        assert proxy.proc.wait(30) == 0
        with pytest.raises(psycopg.OperationalError):
            relayed.execute("SELECT 1")
    assert "shutting down" in proxy.read_log()


def test_admin_settings_in_the_config_file(tmp_path):
    from proxy.settings import ConfigError, check_file
    path = tmp_path / "mlproxy.toml"
    path.write_text('workers = 1\nadmin_users = ["alice", " bob "]\nmetrics_listen = "0.0.0.0:9187"\n')
    resolved = check_file(path)
    assert resolved["admin_users"].value == ("alice", "bob")
    assert resolved["metrics_listen"].value == ("0.0.0.0", 9187)
    path.write_text('admin_users = "alice,bob"\n')
    assert check_file(path)["admin_users"].value == ("alice", "bob")
    path.write_text('workers = 1\nadmin_users = [1, 2]\n')
    with pytest.raises(ConfigError, match=rf"{path}:2: bad value for 'admin_users': expected an array of strings"):
        check_file(path)
    path.write_text('metrics_listen = "localhost:99999"\n')
    with pytest.raises(ConfigError, match=r":1: bad value for 'metrics_listen': port 99999 is out of range"):
        check_file(path)
