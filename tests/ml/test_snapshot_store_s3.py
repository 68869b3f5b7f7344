"""--snapshot-store s3://bucket/prefix, against a real S3 API server on localhost
(moto's server: S3 over HTTP, as MinIO would serve it): CREATE MODEL's S3_BUCKET
names the bucket of the model's snapshot, S3_GARBAGE_COLLECT OFF keeps it after
training (as Parquet), and a bucket the proxy cannot write to is CREATE MODEL's
error at once."""

from __future__ import annotations

import io

import psycopg
import pyarrow.parquet as pq
import pytest

from tests.ml.conftest import wait_for_state
from tests.support.servers import start_proxy

STORE_BUCKET = "mlproxy-snaps"
MODEL_BUCKET = "team-bucket"


@pytest.fixture
def s3(tmp_path):
    """A local S3 endpoint with two buckets; the environment a proxy needs to use it."""
    from moto.server import ThreadedMotoServer
    import s3fs

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL_S3": f"http://{host}:{port}"}
    fs = s3fs.S3FileSystem(key="test", secret="test", endpoint_url=env["AWS_ENDPOINT_URL_S3"],
                           skip_instance_cache=True)
    for bucket in (STORE_BUCKET, MODEL_BUCKET):
        fs.mkdir(bucket)
    yield env, fs
    server.stop()


def test_s3_bucket_and_garbage_collect_off_keep_the_snapshot_in_that_bucket(pg, dataset_tables, s3, tmp_path):
    env, fs = s3
    proxy = start_proxy(pg.uri, "--data-dir", str(tmp_path / "s3proxy"),
                        "--snapshot-store", f"s3://{STORE_BUCKET}/snaps", "--job-lease", "2", env=env)
    try:
        with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
            conn.execute("DROP MODEL IF EXISTS s3_model")
            conn.execute(f"CREATE MODEL s3_model FROM (SELECT f0, f1, f2, f3, species FROM iris) "
                         f"TARGET species FUNCTION predict_s3 MODEL_TYPE LINEAR_LEARNER "
                         f"SETTINGS (S3_BUCKET '{MODEL_BUCKET}', S3_GARBAGE_COLLECT OFF, MAX_RUNTIME 3)")
            model_id = conn.execute("SELECT id FROM mlproxy.models WHERE model_name = 's3_model'").fetchone()[0]
            info = wait_for_state(conn, "s3_model", timeout=120)
            assert info["Model State"] == "READY", info
            fs.invalidate_cache()
            kept = f"{MODEL_BUCKET}/snaps/postgres/{model_id}"
            assert sorted(p.rsplit("/", 1)[-1] for p in fs.ls(kept)) == ["data.parquet", "job.json"]
            table = pq.read_table(io.BytesIO(fs.cat_file(f"{kept}/data.parquet")))
            assert table.num_rows == 150 and table.column_names == ["f0", "f1", "f2", "f3", "species"]
            assert fs.find(STORE_BUCKET) == []  # S3_BUCKET chose the other bucket
            # a bucket the proxy cannot write to: said at once, nothing created
            with pytest.raises(psycopg.errors.IoError) as raised:
                conn.execute("CREATE MODEL s3_nowhere FROM (SELECT f0, f1, species FROM iris) "
                             "TARGET species FUNCTION predict_s3_nowhere "
                             "SETTINGS (S3_BUCKET 'no-such-bucket', MAX_RUNTIME 3)")
            message = raised.value.diag.message_primary
            assert "could not write to the snapshot store" in message and "no-such-bucket" in message, message
            assert "s3_nowhere" not in [r[1] for r in conn.execute("SHOW MODEL ALL").fetchall()]
            conn.execute("DROP MODEL s3_model")
    finally:
        proxy.stop()
