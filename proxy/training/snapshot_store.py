"""Where training snapshots live, so that any proxy of a fleet can train a job.

A snapshot is a job's `job.json` and its data as Parquet (snapshot.py). The store
is one of:

- the local data directory (the default, one machine): the job directory itself is
  the snapshot, named `local://<host>/<path>`; a proxy on the same data directory
  (restarted after a crash) resumes it;
- a shared directory, `file:///shared/path`, or an object store, `s3://bucket/prefix`
  (through fsspec; s3 needs the `s3fs` package): CREATE MODEL uploads the snapshot
  to `<store>/<database>/<model id>/`, and for s3 `SETTINGS (S3_BUCKET 'b')` puts
  it in bucket `b` under the same prefix. Any proxy with the same kind of store
  can download it and train.

The catalog's job queue records each job's snapshot URL; a proxy claims only jobs
whose URL starts with one of `readable_prefixes()`. Every method here does blocking
IO: call it in a thread.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import socket
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from .snapshot import JobDir

LOCAL_SCHEME = "local"


class SnapshotStoreError(ValueError):
    """A --snapshot-store value that cannot be used (said at startup)."""


def _safe(database: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", database)


class SnapshotStore:
    def __init__(self, url: str | None, data_dir: Path) -> None:
        self.url = (url or "").rstrip("/") or None
        self.data_dir = Path(data_dir).resolve()
        self.host = socket.gethostname()
        self.scheme = urlsplit(self.url).scheme if self.url else LOCAL_SCHEME
        if self.url and self.scheme not in ("file", "s3"):
            raise SnapshotStoreError(f"snapshot store {self.url!r}: expected file:///path or "
                                     "s3://bucket/prefix")
        if self.scheme == "file":
            parts = urlsplit(self.url)
            if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
                raise SnapshotStoreError(f"snapshot store {self.url!r}: a file URL names an "
                                         "absolute path, file:///shared/path")
        self._fs = None
        if self.scheme == "s3":
            try:
                import s3fs  # noqa: F401 - fsspec's s3 implementation
            except ImportError as exc:
                raise SnapshotStoreError("snapshot store s3://: the s3fs package is not installed "
                                         "(pip install s3fs)") from exc

    @property
    def shared(self) -> bool:
        """Whether snapshots leave the data directory (a shared directory, an object store)."""
        return self.url is not None

    def describe(self) -> str:
        return self.url or f"the data directory {self.data_dir}"

    # -- names ------------------------------------------------------------------
    def local_url(self, path: Path) -> str:
        return f"{LOCAL_SCHEME}://{self.host}{Path(path).resolve()}"

    def base_url(self, bucket: str | None = None) -> str:
        """The shared store's root, in `bucket` (S3_BUCKET) when it is s3."""
        assert self.url is not None
        if self.scheme == "s3" and bucket:
            return f"s3://{bucket}{urlsplit(self.url).path.rstrip('/')}"
        return self.url

    def url_for(self, database: str, model_id: int, bucket: str | None = None) -> str:
        """Where the snapshot of model `model_id` of `database` goes."""
        if self.url is None:
            return self.local_url(JobDir.for_model(self.data_dir, database, model_id).path)
        return f"{self.base_url(bucket)}/{_safe(database)}/{model_id}"

    def readable_prefixes(self) -> list[str]:
        """Snapshot URLs this proxy claims jobs of: its own data directory's (jobs of a
        single-machine setup, as before: only a proxy on the same data directory
        resumes them), and its shared store's."""
        prefixes = [f"{self.local_url(self.data_dir / 'jobs')}/"]
        if self.scheme == "file":
            prefixes.append(self.url + "/")
        elif self.scheme == "s3":
            prefixes.append("s3://")  # any bucket: S3_BUCKET chooses one per model
        return prefixes

    def _fs_path(self, url: str):
        """(filesystem, path) of a snapshot URL."""
        parts = urlsplit(url)
        if parts.scheme == LOCAL_SCHEME:
            return None, parts.path
        if parts.scheme == "file":
            return None, parts.path
        import fsspec

        if self._fs is None:
            self._fs = fsspec.filesystem("s3")
        return self._fs, f"{parts.netloc}{parts.path}"

    def data_url(self, url: str, job: JobDir) -> str:
        """Where a training cluster's workers read the Parquet data of the snapshot at
        `url`: the job directory's file for the local store (workers on this host, or
        sharing its path), the store's copy for a shared directory or object store."""
        parts = urlsplit(url)
        if parts.scheme == LOCAL_SCHEME:
            return str(job.parquet_file)
        if parts.scheme == "file":
            return f"{parts.path.rstrip('/')}/{job.parquet_file.name}"
        return f"{url.rstrip('/')}/{job.parquet_file.name}"

    # -- IO (blocking) ----------------------------------------------------------
    def check_writable(self, bucket: str | None = None) -> None:
        """Raise OSError unless a snapshot can be written to the store now (a probe
        file is written and removed): CREATE MODEL says so before exporting."""
        if self.url is None:
            return  # the data directory: the export itself says it (as before)
        fs, path = self._fs_path(self.base_url(bucket))
        probe = f"{path.rstrip('/')}/.mlproxy-probe-{uuid.uuid4().hex}"
        if fs is None:
            Path(path).mkdir(parents=True, exist_ok=True)
            Path(probe).write_bytes(b"")
            os.unlink(probe)
        else:
            try:
                fs.pipe_file(probe, b"")
                fs.rm_file(probe)
            except OSError:
                raise
            except Exception as exc:  # botocore's errors: said as a permission problem
                raise PermissionError(errno.EACCES, f"cannot write to {self.url}: {exc}") from exc

    def publish(self, job: JobDir, url: str) -> None:
        """Copy the snapshot files of `job` to `url` (nothing to do when the job
        directory is the snapshot). The data goes first and job.json last, so a
        snapshot with a job.json is complete."""
        if url == self.local_url(job.path):
            return
        fs, path = self._fs_path(url)
        files = job.snapshot_files()
        ordered = files[1:] + files[:1]
        if fs is None:
            target = Path(path)
            target.mkdir(parents=True, exist_ok=True)
            for f in ordered:
                tmp = target / f".{f.name}.{uuid.uuid4().hex}.tmp"
                shutil.copyfile(f, tmp)
                os.replace(tmp, target / f.name)
        else:
            for f in ordered:
                fs.put_file(str(f), f"{path}/{f.name}")

    def fetch(self, url: str, job: JobDir) -> None:
        """Make `job` hold the snapshot at `url` (downloaded afresh: whatever a
        previous attempt left there goes). FileNotFoundError when it is gone."""
        if url == self.local_url(job.path):
            if not job.has_snapshot():
                raise FileNotFoundError(errno.ENOENT, "training data snapshot is missing", url)
            for stale in (job.progress_file, job.result_file, job.error_file, job.artifact_file):
                stale.unlink(missing_ok=True)
            return
        fs, path = self._fs_path(url)
        job.remove()
        job.path.mkdir(parents=True, exist_ok=True)
        names = ["job.json", "data.parquet", "data.arrow", "data.csv"]
        if fs is None:
            source = Path(path)
            if not (source / "job.json").exists():
                raise FileNotFoundError(errno.ENOENT, "training data snapshot is missing", url)
            for name in names:
                if (source / name).exists():
                    shutil.copyfile(source / name, job.path / name)
        else:
            if not fs.exists(f"{path}/job.json"):
                raise FileNotFoundError(errno.ENOENT, "training data snapshot is missing", url)
            for name in names:
                if fs.exists(f"{path}/{name}"):
                    fs.get_file(f"{path}/{name}", str(job.path / name))
        if not job.has_snapshot():
            raise FileNotFoundError(errno.ENOENT, "training data snapshot has no data file", url)

    def stored(self, database: str) -> list[int]:
        """The model ids with a snapshot of `database` in the shared store (its own
        bucket; others that S3_BUCKET named are not listed)."""
        if self.url is None:
            return []
        fs, path = self._fs_path(f"{self.url}/{_safe(database)}")
        if fs is None:
            root = Path(path)
            names = [p.name for p in root.iterdir()] if root.is_dir() else []
        else:
            try:
                names = [e.rstrip("/").rsplit("/", 1)[-1] for e in fs.ls(path, detail=False)]
            except FileNotFoundError:
                names = []
        return [int(n) for n in names if n.isdigit()]

    def kept(self, url: str) -> bool:
        """Whether the snapshot at `url` is to outlive its job (S3_GARBAGE_COLLECT OFF)."""
        fs, path = self._fs_path(url)
        try:
            text = Path(path, "job.json").read_text() if fs is None else fs.cat_file(f"{path}/job.json").decode()
            return json.loads(text).get("garbage_collect") is False
        except (OSError, ValueError):
            return False

    def remove(self, url: str) -> None:
        """Delete the snapshot at `url` (garbage collection once its model is trained)."""
        fs, path = self._fs_path(url)
        if fs is None:
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                fs.rm(path, recursive=True)
            except FileNotFoundError:
                pass
