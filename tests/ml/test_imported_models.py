"""Bring your own model (local): CREATE MODEL ... FROM 'location' | (query) FUNCTION f
(types) RETURNS t imports a model trained elsewhere, and its function answers through
SQL exactly what the library that trained it predicts (XGBoost to float32 precision,
as for trained XGBoost models; LightGBM to float64 rounding).

Real Postgres, real proxy, real libraries: xgboost and lightgbm train the models in
the test; s3:// is read through s3fs from a moto S3 server on localhost (no network),
with the standard credential chain (environment variables) and AWS_ENDPOINT_URL."""

from __future__ import annotations

import asyncio
import gzip
import io
import os
import pickle
import tarfile

import asyncpg
import lightgbm as lgb
import numpy as np
import psycopg
import pytest
import xgboost as xgb

from tests.inference.sql.clients import assert_usable, fetch
from tests.support.servers import start_proxy

DB = "byom"
OWNER, HOSTILE = "byom_owner", "byom_hostile"
N_ROWS = 300
MAX_BYTES = 3_000_000
FEATURES = ("a", "b", "c", "d")
ARGS = "(real, double precision, integer, double precision)"


def _rows(seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = np.column_stack([rng.normal(size=N_ROWS).astype(np.float32), rng.normal(size=N_ROWS),
                         rng.integers(0, 5, N_ROWS), rng.uniform(-2, 2, N_ROWS)]).astype(np.float64)
    X[::17, 1] = np.nan  # NULLs: the model's missing value
    return X


X_ROWS = _rows()


def _labels(X: np.ndarray, classes: int) -> np.ndarray:
    score = np.nan_to_num(X[:, 0] + 0.5 * X[:, 1]) + 0.3 * X[:, 2] - X[:, 3]
    return np.digitize(score, np.quantile(score, np.linspace(0, 1, classes + 1)[1:-1]))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Model files trained here: XGBoost (JSON, UBJSON, model.tar.gz) and LightGBM."""
    rng = np.random.default_rng(3)
    X = np.column_stack([rng.normal(size=800), rng.normal(size=800), rng.integers(0, 5, 800),
                         rng.uniform(-2, 2, 800)])
    X[::13, 1] = np.nan
    binary = xgb.train({"objective": "binary:logistic", "max_depth": 3, "eta": 0.3},
                       xgb.DMatrix(X, _labels(X, 2)), 25)
    multi = xgb.train({"objective": "multi:softprob", "num_class": 3, "max_depth": 3},
                      xgb.DMatrix(X, _labels(X, 3)), 15)
    y_reg = np.nan_to_num(X[:, 1]) * 3 + X[:, 2] - X[:, 0] ** 2
    lgb_reg = lgb.train({"objective": "regression", "verbose": -1, "num_leaves": 15},
                        lgb.Dataset(X, y_reg), num_boost_round=30)
    lgb_bin = lgb.train({"objective": "binary", "verbose": -1, "num_leaves": 7},
                        lgb.Dataset(X, _labels(X, 2)), num_boost_round=20)
    directory = tmp_path_factory.mktemp("import-dir")
    (directory / "sub").mkdir()
    binary.save_model(str(directory / "binary.json"))
    multi.save_model(str(directory / "multi.ubj"))
    lgb_reg.save_model(str(directory / "sub" / "regression.txt"))
    lgb_bin.save_model(str(directory / "lgb_binary.txt"))
    archive = io.BytesIO()  # SageMaker's XGBoost container: model.tar.gz holding xgboost-model
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        data = (directory / "multi.ubj").read_bytes()
        info = tarfile.TarInfo("xgboost-model")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    (directory / "model.tar.gz").write_bytes(archive.getvalue())
    # bad files
    (directory / "model.pkl").write_bytes(pickle.dumps({"not": "a model"}, protocol=4))
    (directory / "truncated.json").write_bytes((directory / "binary.json").read_bytes()[:5000])
    (directory / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    (directory / "huge.json").write_bytes(b"{" + b" " * MAX_BYTES + b"}")
    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w:gz") as tar:
        info = tarfile.TarInfo("../../etc/evil")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    (directory / "traversal.tar.gz").write_bytes(evil.getvalue())
    bomb = gzip.compress(b"\0" * (MAX_BYTES * 3))  # small on disk, huge once decompressed
    (directory / "bomb.tar.gz").write_bytes(bomb)
    outside = tmp_path_factory.mktemp("outside")
    binary.save_model(str(outside / "secret.json"))
    os.symlink(outside / "secret.json", directory / "link.json")
    return {"dir": directory, "outside": outside, "binary": binary, "multi": multi, "lgb_reg": lgb_reg,
            "lgb_bin": lgb_bin}


@pytest.fixture(scope="module")
def s3():
    """A moto S3 server on localhost, and the environment that points s3fs at it."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://{host}:{port}"}
    import boto3

    client = boto3.client("s3", aws_access_key_id="testing", aws_secret_access_key="testing",
                          region_name="us-east-1", endpoint_url=env["AWS_ENDPOINT_URL"])
    client.create_bucket(Bucket="models")
    yield client, env
    server.stop()


@pytest.fixture(scope="module")
def byom(pg, upstream, models, s3, tmp_path_factory):
    client, env = s3
    client.put_object(Bucket="models", Key="team/lgb_binary.txt", Body=(models["dir"] / "lgb_binary.txt").read_bytes())
    client.put_object(Bucket="models", Key="team/huge.json", Body=(models["dir"] / "huge.json").read_bytes())
    proxy = start_proxy(pg.uri, "--data-dir", str(tmp_path_factory.mktemp("byom-data")),
                        "--import-dir", str(models["dir"]), "--import-max-bytes", str(MAX_BYTES),
                        "--import-urls", "s3://models/team/,s3://other/", env=env)
    admin_dsn = f"host={upstream.host} port={upstream.port} user=postgres dbname=postgres"
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        for role in (OWNER, HOSTILE):
            admin.execute(f"DROP ROLE IF EXISTS {role}")
            admin.execute(f"CREATE ROLE {role} LOGIN")
        admin.execute(f"CREATE DATABASE {DB}")
    direct = admin_dsn.replace("dbname=postgres", f"dbname={DB}")
    with psycopg.connect(direct, autocommit=True) as d:
        d.execute("CREATE TABLE pts (id int PRIMARY KEY, a real, b double precision, c integer, d double precision)")
        with d.cursor().copy("COPY pts FROM STDIN") as copy:
            for i, row in enumerate(X_ROWS):
                copy.write_row([i + 1, float(row[0]), None if np.isnan(row[1]) else float(row[1]),
                                int(row[2]), float(row[3])])
        d.execute(f"GRANT SELECT ON pts TO PUBLIC; GRANT CREATE ON SCHEMA public TO {OWNER}, {HOSTILE}")
        d.execute("CREATE TABLE model_files (name text PRIMARY KEY, body bytea)")
        d.cursor().executemany("INSERT INTO model_files VALUES (%s, %s)",
                      [(name, (models["dir"] / name).read_bytes()) for name in ("model.tar.gz", "binary.json")])
        d.execute(f"ALTER TABLE model_files OWNER TO {OWNER}")
    with psycopg.connect(proxy.dsn(db=DB), autocommit=True) as su:
        su.execute(f"GRANT CREATE MODEL TO {OWNER}, {HOSTILE}")
    yield proxy
    proxy.stop()
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        for role in (OWNER, HOSTILE):
            admin.execute(f"DROP ROLE IF EXISTS {role}")


def _connect(proxy, user: str = OWNER) -> psycopg.Connection:
    return psycopg.connect(proxy.dsn(user=user, db=DB), autocommit=True)


def _create(conn, sql: str) -> None:
    name = sql.split()[2]
    conn.execute(f"DROP MODEL IF EXISTS {name}")
    conn.execute(sql)


def _column(conn, sql: str, mode: str = "simple-text") -> list:
    return [r[1] for r in fetch(conn, sql, mode)]


def _proba(conn, fn: str, labels: list, mode: str = "simple-text") -> np.ndarray:
    """`<fn>_probabilities` per row ({"labels": [...], "probabilities": [...]}, as
    Redshift gives them), as columns in the order of `labels`."""
    rows = fetch(conn, f"SELECT id, {fn}_probabilities(a, b, c, d) FROM pts ORDER BY id", mode)
    out = []
    for _, doc in rows:
        by_label = dict(zip(doc["labels"], doc["probabilities"]))
        out.append([by_label[label] for label in labels])
    return np.array(out)


def test_xgboost_json_binary_matches_xgboost_on_every_path(byom, models):
    expected = models["binary"].predict(xgb.DMatrix(X_ROWS))  # P(class 1)
    with _connect(byom) as conn:
        _create(conn, f"CREATE MODEL imp_bin FROM 'binary.json' FUNCTION imp_bin {ARGS} RETURNS integer "
                      "IAM_ROLE default SETTINGS (S3_BUCKET 'ignored')")
        labels = (expected >= 0.5).astype(int).tolist()
        streaming = "SELECT id, imp_bin(a, b, c, d) FROM pts ORDER BY id"
        for mode in ("simple-text", "extended-binary", "prepared-text"):
            assert _column(conn, streaming, mode) == labels, mode
        # the general path: the call in WHERE
        ids = [r[0] for r in fetch(conn, "SELECT id FROM pts WHERE imp_bin(a, b, c, d) = 1 ORDER BY id",
                                   "simple-text")]
        assert ids == [i + 1 for i, v in enumerate(labels) if v == 1]
        proba = _proba(conn, "imp_bin", [0, 1], "extended-binary")
        np.testing.assert_allclose(proba[:, 1], expected, rtol=0, atol=2e-6)
        # per-row Shapley values: they add up to xgboost's margin
        doc, = conn.execute("SELECT imp_bin_explain(a, b, c, d) FROM pts WHERE id = 2").fetchone()
        assert set(doc) == {"f0", "f1", "f2", "f3", "expected_value"}
        margin = models["binary"].predict(xgb.DMatrix(X_ROWS[1:2]), output_margin=True)[0]
        assert abs(sum(doc.values()) - margin) < 1e-4
        # asyncpg: named prepared statements, binary results, a parameter
        dsn = byom.dsn(user=OWNER, db=DB)

        async def with_asyncpg() -> list:
            aconn = await asyncpg.connect(dsn)
            try:
                return [r[1] for r in await aconn.fetch(
                    "SELECT id, imp_bin(a, b, c, d) FROM pts WHERE id <= $1 ORDER BY id", 50)]
            finally:
                await aconn.close()

        assert asyncio.run(with_asyncpg()) == labels[:50]
        # with RETURNS double precision the function is the probability, as xgboost predicts it
        _create(conn, f"CREATE MODEL imp_bin_p FROM 'binary.json' FUNCTION imp_bin_p {ARGS} RETURNS float8")
        values = np.array(_column(conn, "SELECT id, imp_bin_p(a, b, c, d) FROM pts ORDER BY id", "extended-binary"))
        np.testing.assert_allclose(values, expected, rtol=0, atol=2e-6)
        info = dict(conn.execute("SHOW MODEL imp_bin").fetchall())
        assert info["Model State"] == "READY" and info["Model Type"] == "XGBOOST"
        assert info["Problem Type"] == "BINARY_CLASSIFICATION" and info["Objective"] == "binary:logistic"
        assert info["Query"] == "'binary.json'"  # where it came from (owner only)
        assert any(v.startswith("imported, not trained by mlproxy: XGBoost JSON") for v in info.values())
        assert info["Function Parameters"] == "f0 f1 f2 f3"
        conn.execute("DROP MODEL imp_bin_p")
        assert conn.execute("SELECT count(*) FROM pg_proc WHERE proname ~ '^imp_bin_p(_|$)'").fetchone() == (0,)


def test_sagemaker_tar_gz_from_a_query_multiclass(byom, models):
    expected = models["multi"].predict(xgb.DMatrix(X_ROWS))  # (n, 3) softprob
    with _connect(byom) as conn:
        _create(conn, "CREATE MODEL imp_multi FROM (SELECT body FROM model_files WHERE name = 'model.tar.gz') "
                      f"FUNCTION imp_multi {ARGS} RETURNS text")
        labels = [str(k) for k in expected.argmax(axis=1)]
        for mode in ("simple-text", "extended-binary", "prepared-text"):
            assert _column(conn, "SELECT id, imp_multi(a, b, c, d) FROM pts ORDER BY id", mode) == labels
        proba = _proba(conn, "imp_multi", ["0", "1", "2"])
        np.testing.assert_allclose(proba, expected, rtol=0, atol=2e-6)
        info = dict(conn.execute("SHOW MODEL imp_multi").fetchall())
        assert info["Problem Type"] == "MULTICLASS_CLASSIFICATION"
        assert any("XGBoost UBJSON in a model.tar.gz" in v for v in info.values())


def test_lightgbm_regression_and_binary_from_path_and_s3(byom, models):
    with _connect(byom) as conn:
        conn.execute("DROP MODEL IF EXISTS imp_lreg")
        conn.cursor().execute(f"CREATE MODEL imp_lreg FROM 'sub/../sub/regression.txt' FUNCTION imp_lreg {ARGS} "
                              "RETURNS double precision", binary=True)  # the extended protocol
        values = np.array(_column(conn, "SELECT id, imp_lreg(a, b, c, d) FROM pts ORDER BY id", "extended-binary"))
        np.testing.assert_allclose(values, models["lgb_reg"].predict(X_ROWS), rtol=1e-12, atol=1e-12)
        _create(conn, f"CREATE MODEL imp_lbin FROM 's3://models/team/lgb_binary.txt' FUNCTION imp_lbin {ARGS} "
                      "RETURNS boolean")
        expected = models["lgb_bin"].predict(X_ROWS)
        assert _column(conn, "SELECT id, imp_lbin(a, b, c, d) FROM pts ORDER BY id", "prepared-text") \
            == (expected >= 0.5).tolist()
        np.testing.assert_allclose(_proba(conn, "imp_lbin", [True])[:, 0], expected, rtol=1e-12, atol=1e-12)
        assert dict(conn.execute("SHOW MODEL imp_lbin").fetchall())["Model Type"] == "LIGHTGBM"


BAD = [
    # (FROM, RETURNS, arguments, SQLSTATE, message fragment)
    ("'model.pkl'", "integer", ARGS, "0A000", "is a Python pickle"),
    ("'truncated.json'", "integer", ARGS, "XX001", "cannot be read"),
    ("'image.png'", "integer", ARGS, "22023", "not a model format"),
    ("'huge.json'", "integer", ARGS, "54000", f"at most {MAX_BYTES} are imported"),
    ("'bomb.tar.gz'", "integer", ARGS, "54000", "once decompressed"),
    ("'traversal.tar.gz'", "integer", ARGS, "22023", "holds no XGBoost models"),
    ("'binary.json'", "integer", "(real, double precision, integer)", "22023",
     "the model takes 4 features, more than the 3 argument types"),
    ("'binary.json'", "integer", "(real, real, real, real, real)", "22023", "fewer than the 5"),
    ("'binary.json'", "integer", "(real, text, integer, real)", "22023", "argument type text is not one"),
    ("'multi.ubj'", "double precision", ARGS, "22023", "classifier with 3 classes; RETURNS double precision"),
    ("'multi.ubj'", "boolean", ARGS, "22023", "RETURNS boolean fits two"),
    ("'sub/regression.txt'", "integer", ARGS, "22023", "predicts numbers (a regression)"),
    ("'../outside/secret.json'", "integer", ARGS, "42501", "outside the proxy's import directory"),
    ("'/etc/passwd'", "integer", ARGS, "42501", "outside the proxy's import directory"),
    ("'link.json'", "integer", ARGS, "42501", "outside the proxy's import directory"),
    ("'missing.json'", "integer", ARGS, "58P01", "No such file"),
    ("'sub'", "integer", ARGS, "0A000", "SageMaker training jobs have no meaning here"),
    ("'sub/'", "integer", ARGS, "22023", "is a directory"),
    ("'training-job-2024'", "integer", ARGS, "0A000", "SageMaker training jobs"),
    ("'https://example.com/m.json'", "integer", ARGS, "0A000", "https:// URLs are not read"),
    ("'s3://models/team/none.json'", "integer", ARGS, "58P01", "no such object"),
    ("'s3://models/team/huge.json'", "integer", ARGS, "54000", f"has {MAX_BYTES + 2} bytes"),
    ("'s3://models/secret.json'", "integer", ARGS, "42501", "outside the prefixes this proxy imports from"),
    ("'s3://models/team/../secret.json'", "integer", ARGS, "42501", "outside the prefixes"),
    ("'s3://other/m.json'", "integer", ARGS, "58P01", "no such object"),
    ("(SELECT body FROM model_files)", "integer", ARGS, "22023", "returned more than one row"),
    ("(SELECT body FROM model_files WHERE false)", "integer", ARGS, "22023", "returned no rows"),
    ("(SELECT name FROM model_files)", "integer", ARGS, "22023", "must return one bytea column"),
    ("(SELECT NULL::bytea)", "integer", ARGS, "22023", "returned NULL"),
    (f"(SELECT decode(repeat('00', {MAX_BYTES + 1}), 'hex'))", "integer", ARGS, "54000",
     f"has {MAX_BYTES + 1} bytes; at most {MAX_BYTES}"),
    ("(SELECT body FROM no_such_table)", "integer", ARGS, "42P01", 'relation "no_such_table" does not exist'),
    ("(SELECT 'x'::bytea, 1)", "integer", ARGS, "22023", "must return one bytea column"),
]


@pytest.mark.parametrize("source, returns, args, sqlstate, fragment", BAD,
                         ids=[f"{b[0]}-{b[1]}" for b in BAD])
def test_bad_input_is_a_clear_error_and_leaves_nothing(byom, source, returns, args, sqlstate, fragment):
    with _connect(byom) as conn:
        with pytest.raises(psycopg.Error) as err:
            conn.execute(f"CREATE MODEL imp_bad FROM {source} FUNCTION imp_bad {args} RETURNS {returns}")
        assert err.value.sqlstate == sqlstate, err.value
        assert fragment in err.value.diag.message_primary, err.value.diag.message_primary
        assert_usable(conn)
        assert conn.execute("SELECT count(*) FROM pg_proc WHERE proname ~ '^imp_bad'").fetchone() == (0,)
        assert conn.execute("SHOW MODEL ALL").fetchall() == [r for r in conn.execute("SHOW MODEL ALL").fetchall()
                                                            if r[1] != "imp_bad"]


def test_paths_and_urls_need_the_operators_leave(ml_proxy, models):
    """The shared proxy has no --import-dir nor --import-urls: a client cannot make it
    read files or objects with the proxy's own identity."""
    with psycopg.connect(ml_proxy.dsn(), autocommit=True) as conn:
        for location in (models["dir"] / "binary.json", "s3://models/team/lgb_binary.txt"):
            with pytest.raises(psycopg.errors.FeatureNotSupported) as err:
                conn.execute(f"CREATE MODEL imp_nodir FROM '{location}' FUNCTION imp_nodir {ARGS} RETURNS integer")
            assert "not enabled on this proxy" in err.value.diag.message_primary
            assert_usable(conn)


def test_a_hostile_role_cannot_use_or_read_what_it_was_not_granted(byom, models):
    with _connect(byom) as owner:
        _create(owner, f"CREATE MODEL imp_priv FROM 'binary.json' FUNCTION imp_priv {ARGS} RETURNS integer")
    with _connect(byom, HOSTILE) as hostile:
        for sql in ("SELECT id, imp_priv(a, b, c, d) FROM pts ORDER BY id LIMIT 3",
                    "SELECT id, imp_priv_probabilities(a, b, c, d) FROM pts ORDER BY id LIMIT 3",
                    "SELECT id FROM pts WHERE imp_priv(a, b, c, d) = 1"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                fetch(hostile, sql, "simple-text")
            assert_usable(hostile)
        # the owner's model table is not the hostile role's to import from
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            hostile.execute("CREATE MODEL imp_stolen FROM (SELECT body FROM model_files WHERE name = 'binary.json') "
                            f"FUNCTION imp_stolen {ARGS} RETURNS integer")
        assert_usable(hostile)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            hostile.execute("DROP MODEL imp_priv")
    with _connect(byom) as owner:
        owner.execute(f"GRANT EXECUTE ON MODEL imp_priv TO {HOSTILE}")
    expected = (models["binary"].predict(xgb.DMatrix(X_ROWS[:3])) >= 0.5).astype(int).tolist()
    with _connect(byom, HOSTILE) as hostile:
        assert _column(hostile, "SELECT id, imp_priv(a, b, c, d) FROM pts ORDER BY id LIMIT 3") == expected
        info = dict(hostile.execute("SHOW MODEL imp_priv").fetchall())
        assert info["Model State"] == "READY" and "Query" not in info  # the location is the owner's
