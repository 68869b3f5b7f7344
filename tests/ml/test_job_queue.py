"""Training jobs are a queue in the catalog shared by a fleet of proxies: claims race
with SKIP LOCKED (exactly one proxy gets each job), a dead proxy's job is taken over
from the shared snapshot store once its lease expires, and a job nobody can resume
is FAILED with the reason."""

from __future__ import annotations

import asyncio
import re
import signal
import time
from pathlib import Path

import asyncpg
import psycopg
import pytest

from proxy.catalog.schema import migrate
from tests.inference.sql.oracle import Model
from tests.ml.conftest import load_dataset, wait_for_state
from tests.support.servers import OwnedPostgres, start_proxy

QUEUE_DB = "mlqueue"
JOBS = 60
CLAIMERS = 8
PREFIX = "local://race-host/"  # a host no running proxy is on: only the test claims these
HOSTILE = "mlq_hostile"


@pytest.fixture
def queue_db(pg, upstream):
    """A database of its own with a migrated catalog and JOBS queued TRAINING models."""
    with psycopg.connect(pg.uri, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {QUEUE_DB} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {QUEUE_DB}")
        admin.execute(f"DROP ROLE IF EXISTS {HOSTILE}")
        admin.execute(f"CREATE ROLE {HOSTILE} LOGIN")

    async def setup() -> None:
        conn = await asyncpg.connect(host=upstream.host, port=upstream.port, user=upstream.user,
                                     database=QUEUE_DB)
        try:
            await migrate(conn)
            await conn.execute(
                "INSERT INTO mlproxy.models (schema_name, model_name, state, create_statement, options,"
                " source_query, function_schema, function_name, function_signature, arg_names,"
                " arg_types, return_type)"
                " SELECT 'public', 'm' || g, 'TRAINING', 'CREATE MODEL', '{}', 'SELECT 1', 'public',"
                " 'f' || g, 'public.f' || g || '()', '{}', '{}', 'integer'"
                " FROM generate_series(1, $1) g", JOBS)
            await conn.execute(
                "INSERT INTO mlproxy.training_jobs (model_id, snapshot)"
                " SELECT id, $1 || id FROM mlproxy.models", PREFIX)
        finally:
            await conn.close()

    asyncio.run(setup())
    yield upstream
    with psycopg.connect(pg.uri, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {QUEUE_DB} WITH (FORCE)")
        admin.execute(f"DROP ROLE IF EXISTS {HOSTILE}")


async def _race(upstream, lease: float) -> dict[str, list[int]]:
    """CLAIMERS connections (proxies) claim until the queue is empty; who got what."""
    got: dict[str, list[int]] = {}
    start = asyncio.Event()

    async def claimer(name: str) -> None:
        conn = await asyncpg.connect(host=upstream.host, port=upstream.port, user=upstream.user,
                                     database=QUEUE_DB)
        try:
            await start.wait()
            mine = got.setdefault(name, [])
            while True:
                row = await conn.fetchrow("SELECT * FROM mlproxy.claim_training_job($1, $2, $3::text[])",
                                          name, lease, [PREFIX])
                if row is None:
                    return
                mine.append(row["job_model_id"])
        finally:
            await conn.close()

    tasks = [asyncio.ensure_future(claimer(f"proxy-{i}")) for i in range(CLAIMERS)]
    await asyncio.sleep(0.3)  # all connected: they start together
    start.set()
    await asyncio.gather(*tasks)
    return got


def test_proxies_racing_for_many_jobs_claim_each_exactly_once(queue_db):
    upstream = queue_db
    got = asyncio.run(_race(upstream, lease=60))
    claimed = sorted(i for ids in got.values() for i in ids)
    assert len(claimed) == JOBS and len(set(claimed)) == JOBS, got
    assert sum(1 for ids in got.values() if ids) > 1, f"one claimer took everything: {got}"
    with psycopg.connect(f"host={upstream.host} port={upstream.port} user=postgres dbname={QUEUE_DB}",
                         autocommit=True) as direct:
        owners = dict(direct.execute("SELECT model_id, claimed_by FROM mlproxy.training_jobs").fetchall())
        assert owners == {i: name for name, ids in got.items() for i in ids}
        # leased: nobody else can claim them
        assert asyncio.run(_race(upstream, lease=60)) == {f"proxy-{i}": [] for i in range(CLAIMERS)}
        # every lease expires (every proxy died): each job is taken over exactly once again
        direct.execute("UPDATE mlproxy.training_jobs SET lease_until = now() - interval '1 second'")
        again = asyncio.run(_race(upstream, lease=60))
        reclaimed = sorted(i for ids in again.values() for i in ids)
        assert reclaimed == sorted(claimed), again
        assert {r[0] for r in direct.execute("SELECT attempts FROM mlproxy.training_jobs")} == {2}
        # a lease renewed by its holder stays; renewal by anyone else is refused
        model_id, owner = direct.execute(
            "SELECT model_id, claimed_by FROM mlproxy.training_jobs ORDER BY model_id LIMIT 1").fetchone()
        assert direct.execute("SELECT mlproxy.renew_training_lease(%s, %s, 60, '{}')",
                              (model_id, owner)).fetchone()[0] is True
        assert direct.execute("SELECT mlproxy.renew_training_lease(%s, 'someone-else', 60, '{}')",
                              (model_id,)).fetchone()[0] is False


def test_the_queue_is_the_service_identity_s_alone(queue_db):
    """A hostile role can neither read the queue, claim or renew a job, fail jobs, nor
    pose as a proxy."""
    upstream = queue_db
    with psycopg.connect(f"host={upstream.host} port={upstream.port} user={HOSTILE} dbname={QUEUE_DB}",
                         autocommit=True) as hostile:
        for sql in ("SELECT * FROM mlproxy.training_jobs",
                    "SELECT * FROM mlproxy.training_proxies",
                    "UPDATE mlproxy.training_jobs SET lease_until = NULL",
                    f"SELECT * FROM mlproxy.claim_training_job('evil', 60, ARRAY['{PREFIX}'])",
                    "SELECT mlproxy.renew_training_lease(1, 'evil', 60, '{}')",
                    "SELECT mlproxy.announce_training_proxy('evil', ARRAY['s3://'])",
                    "SELECT * FROM mlproxy.fail_unresumable_jobs(0)"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                hostile.execute(sql)


def test_a_job_nobody_can_read_is_failed_with_the_reason(queue_db):
    upstream = queue_db
    with psycopg.connect(f"host={upstream.host} port={upstream.port} user=postgres dbname={QUEUE_DB}",
                         autocommit=True) as direct:
        model_id = direct.execute("SELECT min(model_id) FROM mlproxy.training_jobs").fetchone()[0]
        # in one transaction: the row stays locked, so no running proxy's sweep (they
        # all sweep this database too) fails it before the call under test does
        with direct.transaction():
            direct.execute("UPDATE mlproxy.training_jobs SET snapshot = 'file:///gone-host/store/x',"
                           " claimed_by = 'dead:1', last_owner = 'dead:1', lease_until = now() - interval '1 hour'"
                           " WHERE model_id = %s", (model_id,))
            failed = [r[0] for r in direct.execute("SELECT * FROM mlproxy.fail_unresumable_jobs(60)")]
        assert model_id in failed
        state, reason = direct.execute("SELECT state, failure_reason FROM mlproxy.models WHERE id = %s",
                                       (model_id,)).fetchone()
        assert state == "FAILED"
        assert "its data snapshot is not available to any running proxy (file:///gone-host/store/x" in reason
        assert "last run by dead:1" in reason
        # a job a live proxy can read waits for it, however long it has been queued
        # (announced first, so that no other sweep fails them in between either)
        direct.execute("SELECT mlproxy.announce_training_proxy('alive:2', ARRAY[%s])", (PREFIX,))
        waiting = direct.execute("UPDATE mlproxy.training_jobs SET enqueued_at = now() - interval '1 hour'"
                                 " WHERE lease_until IS NULL").rowcount
        assert waiting == JOBS - 1
        assert direct.execute("SELECT count(*) FROM mlproxy.fail_unresumable_jobs(60)").fetchone()[0] == 0
        assert direct.execute("SELECT count(*) FROM mlproxy.models WHERE state = 'TRAINING'").fetchone()[0] == waiting


# -- real proxies ------------------------------------------------------------------------

def _fleet(pg, tmp_path: Path, n: int, *extra: str):
    store = tmp_path / "store"
    store.mkdir(exist_ok=True)
    return [start_proxy(pg.uri, "--data-dir", str(tmp_path / f"p{i}"), "--workers", "1",
                        "--snapshot-store", f"file://{store}", "--job-lease", "2",
                        "--job-sweep", "1", *extra) for i in range(n)], store


def _started(proxies) -> dict[int, list[int]]:
    """model id -> the proxies (by index) that started training it."""
    started: dict[int, list[int]] = {}
    for i, p in enumerate(proxies):
        for model_id in re.findall(r"training started model=\S+ id=(\d+)", p.read_log()):
            started.setdefault(int(model_id), []).append(i)
    return started


def test_a_fleet_trains_each_job_on_exactly_one_proxy(pg, dataset_tables, tmp_path):
    proxies, store = _fleet(pg, tmp_path, 3)
    # (many jobs racing is the catalog test above; this one is kept to one round)
    names = [f"fleet_q{i}" for i in range(3)]
    try:
        for i, name in enumerate(names):
            with psycopg.connect(proxies[i % 3].dsn(), autocommit=True) as conn:
                conn.execute(f"DROP MODEL IF EXISTS {name}")
                conn.execute(f"CREATE MODEL {name} FROM (SELECT f0, f1, f2, f3, species FROM iris) "
                             f"TARGET species FUNCTION predict_{name} MODEL_TYPE LINEAR_LEARNER "
                             "SETTINGS (MAX_RUNTIME 2)")
        with psycopg.connect(proxies[0].dsn(), autocommit=True) as conn:
            ids = {}
            for name in names:
                info = wait_for_state(conn, name, timeout=120)
                assert info["Model State"] == "READY", info
                ids[name] = conn.execute("SELECT id FROM mlproxy.models WHERE model_name = %s",
                                         (name,)).fetchone()[0]
            started = _started(proxies)
            assert all(started.get(i) is not None and len(started[i]) == 1 for i in ids.values()), started
            assert not any(store.rglob("job.json")), "snapshots are garbage collected after training"
            for name in names:
                conn.execute(f"DROP MODEL {name}")
    finally:
        for p in proxies:
            p.stop()


def test_a_killed_proxy_s_job_is_resumed_by_another_from_the_shared_store(pg, dataset_tables, tmp_path):
    (first, second), store = _fleet(pg, tmp_path, 2)
    try:
        with psycopg.connect(first.dsn(), autocommit=True) as conn:
            conn.execute("DROP MODEL IF EXISTS fleet_resumed")
            conn.execute("CREATE MODEL fleet_resumed FROM (SELECT f0, f1, f2, f3, species FROM iris) "
                         "TARGET species FUNCTION predict_fleet_resumed "
                         "SETTINGS (MAX_RUNTIME 6, S3_GARBAGE_COLLECT OFF)")
        # whichever proxy claimed the job (the creator, or the other, told of it by
        # NOTIFY) is killed mid-training; the other must take it over
        deadline = time.monotonic() + 30
        while not any("training started model=public.fleet_resumed" in p.read_log() for p in (first, second)):
            assert time.monotonic() < deadline, first.read_log() + second.read_log()
            time.sleep(0.05)
        if "training started model=public.fleet_resumed" in second.read_log():
            first, second = second, first
        time.sleep(0.5)  # mid-training
        first.stop(signal.SIGKILL)
        assert second.wait_for_log("taking over training job model=public.fleet_resumed", timeout=30), \
            second.read_log()
        with psycopg.connect(second.dsn(), autocommit=True) as conn:
            info = wait_for_state(conn, "fleet_resumed", timeout=120)
            assert info["Model State"] == "READY", info
            assert "training started model=public.fleet_resumed" in second.read_log()
            with psycopg.connect(pg.uri, autocommit=True) as direct:
                model = Model.from_catalog(direct, "fleet_resumed", tmp_path / "oracle-cache")
                expected = model.by_id(direct, "SELECT id, f0, f1, f2, f3 FROM iris")
            got = dict(conn.execute("SELECT id, predict_fleet_resumed(f0, f1, f2, f3) FROM iris").fetchall())
            assert got == expected
            # S3_GARBAGE_COLLECT OFF: the snapshot stays in the store, as Parquet
            kept = list(store.rglob("data.parquet"))
            assert len(kept) == 1 and (kept[0].parent / "job.json").exists()
            conn.execute("DROP MODEL fleet_resumed")
    finally:
        for p in (first, second):
            if p.alive():
                p.stop()


def test_a_proxy_shutting_down_gives_its_job_back_at_once(pg, dataset_tables, tmp_path):
    """SIGTERM: the job is released, not left to its (long) lease: another proxy takes
    it over at once, and the give-back does not count as an interruption."""
    (first, second), _store = _fleet(pg, tmp_path, 2, "--job-lease", "120")
    try:
        with psycopg.connect(first.dsn(), autocommit=True) as conn:
            conn.execute("DROP MODEL IF EXISTS fleet_handed")
            conn.execute("CREATE MODEL fleet_handed FROM (SELECT f0, f1, f2, f3, species FROM iris) "
                         "TARGET species FUNCTION predict_fleet_handed MODEL_TYPE LINEAR_LEARNER "
                         "SETTINGS (MAX_RUNTIME 4)")
        deadline = time.monotonic() + 30
        while not any("training started model=public.fleet_handed" in p.read_log() for p in (first, second)):
            assert time.monotonic() < deadline, first.read_log() + second.read_log()
            time.sleep(0.05)
        if "training started model=public.fleet_handed" in second.read_log():
            first, second = second, first
        stopped = time.monotonic()
        assert first.stop() == 0
        assert second.wait_for_log("taking over training job model=public.fleet_handed", timeout=30), \
            second.read_log()
        assert time.monotonic() - stopped < 60, "waited for the lease instead of the give-back"
        with psycopg.connect(pg.uri, autocommit=True) as direct:
            attempts = direct.execute(
                "SELECT j.attempts FROM mlproxy.training_jobs j JOIN mlproxy.models m ON m.id = j.model_id"
                " WHERE m.model_name = 'fleet_handed'").fetchone()
            assert attempts in (None, (1,)), attempts  # (None: already READY, the row gone)
        with psycopg.connect(second.dsn(), autocommit=True) as conn:
            info = wait_for_state(conn, "fleet_handed", timeout=120)
            assert info["Model State"] == "READY", info
            conn.execute("DROP MODEL fleet_handed")
    finally:
        for p in (first, second):
            if p.alive():
                p.stop()


def test_a_dropped_model_s_snapshot_leaves_the_store_when_its_creator_is_gone(pg, dataset_tables, tmp_path):
    (creator, other), store = _fleet(pg, tmp_path, 2, "--job-lease", "60")
    try:
        with psycopg.connect(creator.dsn(), autocommit=True) as conn:
            conn.execute("DROP MODEL IF EXISTS fleet_dropped")
            conn.execute("CREATE MODEL fleet_dropped FROM (SELECT f0, f1, species FROM iris) "
                         "TARGET species FUNCTION predict_fleet_dropped SETTINGS (MAX_RUNTIME 30)")
        creator.stop(signal.SIGKILL)
        assert len(list(store.rglob("data.parquet"))) == 1
        with psycopg.connect(other.dsn(), autocommit=True) as conn:
            conn.execute("DROP MODEL fleet_dropped")
        deadline = time.monotonic() + 20
        while any(store.rglob("job.json")) or any(store.rglob("data.parquet")):
            assert time.monotonic() < deadline, other.read_log()
            time.sleep(0.1)
        # (by the other proxy's sweep, or by its DROP MODEL's own clean-up of a queued
        # job, whichever comes first: the full suite saw both)
    finally:
        for p in (creator, other):
            if p.alive():
                p.stop()


def test_a_proxy_back_after_a_long_stop_resumes_its_jobs(tmp_path):
    """Default store (the data directory): the job waits for its proxy, however long
    it was away (its snapshot is nowhere else), and is resumed, not failed.

    On a Postgres of its own: this is a single proxy's setup. Any other proxy in front
    of the database rightly fails the job once no running proxy could read its snapshot
    for `orphan_after` (the worker's shared proxies did, when their sweep fell between
    the ageing below and this proxy's start: CI of the seventeenth session)."""
    pg = OwnedPostgres.create()
    pg.start()
    try:
        with psycopg.connect(pg.uri, autocommit=True) as admin:
            load_dataset(admin, "iris")
        data_dir = tmp_path / "away"
        proxy = start_proxy(pg.uri, "--data-dir", str(data_dir))
        try:
            with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
                conn.execute("CREATE MODEL away_model FROM (SELECT f0, f1, f2, f3, species FROM iris) "
                             "TARGET species FUNCTION predict_away MODEL_TYPE LINEAR_LEARNER"
                             " SETTINGS (MAX_RUNTIME 3)")
        finally:
            proxy.stop(signal.SIGKILL)
        with psycopg.connect(pg.uri, autocommit=True) as admin:  # as if it was stopped an hour ago
            admin.execute("UPDATE mlproxy.training_proxies SET seen = now() - interval '1 hour'")
            aged = admin.execute("UPDATE mlproxy.training_jobs SET enqueued_at = now() - interval '1 hour',"
                                 " lease_until = now() - interval '1 hour'").rowcount
            assert aged == 1
        back = start_proxy(pg.uri, "--data-dir", str(data_dir))
        try:
            with psycopg.connect(back.dsn(), autocommit=True) as conn:
                info = wait_for_state(conn, "away_model", timeout=120)
                assert info["Model State"] == "READY", info.get("Failure Reason", info)
        finally:
            back.stop()
    finally:
        pg.stop()
        pg.remove()


def test_create_model_fails_at_once_when_the_snapshot_store_is_not_writable(pg, dataset_tables, tmp_path):
    # sysfs refuses to create anything, whoever asks (root included)
    proxy = start_proxy(pg.uri, "--data-dir", str(tmp_path / "ro"),
                        "--snapshot-store", "file:///sys/fs/mlproxy-store")
    try:
        with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
            with pytest.raises(psycopg.errors.IoError) as raised:
                conn.execute("CREATE MODEL ro_store FROM (SELECT f0, f1, species FROM iris) "
                             "TARGET species FUNCTION predict_ro_store SETTINGS (MAX_RUNTIME 5)")
            message = raised.value.diag.message_primary
            assert "could not write to the snapshot store" in message and "/sys/fs/mlproxy-store" in message
            assert "not permitted" in message or "denied" in message, message
            assert "snapshot-store" in (raised.value.diag.message_hint or "")
            assert "ro_store" not in [r[1] for r in conn.execute("SHOW MODEL ALL").fetchall()]
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert "cannot write to the snapshot store" in proxy.read_log()  # said at startup too
    finally:
        proxy.stop()
