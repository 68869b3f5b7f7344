"""The embedded Postgres: the default upstream when none is configured.

pgserver ships a complete Postgres build as a wheel; this module starts it on a data
directory (initialising it on first use) listening only on a unix socket, and stops
it cleanly. Starting and stopping block for a second or two, so async callers run
them in a thread.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import platformdirs

from .config import Upstream

log = logging.getLogger("mlproxy.embedded")


def default_data_dir() -> Path:
    """Where `mlproxy serve` keeps its state unless --data-dir says otherwise."""
    return Path(os.environ.get("MLPROXY_DATA_DIR") or platformdirs.user_data_dir("mlproxy"))


def bin_dir() -> Path:
    """Directory of the embedded Postgres programs (psql, pgbench, pg_ctl, ...)."""
    import pgserver
    return Path(pgserver.__file__).parent / "pginstall" / "bin"


class EmbeddedPostgres:
    """A Postgres server process owned by this proxy, on `data_dir/pgdata`."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.pgdata = self.data_dir / "pgdata"
        self._server = None

    def start(self) -> Upstream:
        """Start (or attach to an already running) server; returns its address."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs' XDG_RUNTIME_DIR warning
            import pgserver
            self.pgdata.mkdir(parents=True, exist_ok=True)
            self._server = pgserver.get_server(self.pgdata, cleanup_mode="stop")
        uri = self._server.get_uri()
        log.info("embedded postgres running pgdata=%s uri=%s", self.pgdata, uri)
        return Upstream.from_url(uri)

    @property
    def uri(self) -> str:
        assert self._server is not None, "not started"
        return self._server.get_uri()

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None
            log.info("embedded postgres stopped pgdata=%s", self.pgdata)
