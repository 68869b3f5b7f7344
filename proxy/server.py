"""The listening server: accepts clients, owns the sessions, shuts down gracefully."""

from __future__ import annotations

import asyncio
import itertools
import logging
import ssl
from collections.abc import Sequence
from dataclasses import replace

from .config import Config
from .intercept import Interceptor
from . import wire_scan
from .pump import RelayPump
from .session import Session

log = logging.getLogger("mlproxy.server")


class ProxyServer:
    def __init__(self, config: Config, interceptors: Sequence[Interceptor] = ()) -> None:
        if config.upstream is None:
            raise ValueError("ProxyServer needs a resolved upstream")
        self.config = config
        self.interceptors = list(interceptors)
        # Per database, the union of the interceptors' triggers (see intercept.py);
        # sessions read this dict on every chunk, so it is cleared, never replaced.
        self.triggers: dict[str, tuple[bytes, ...]] = {}
        for interceptor in self.interceptors:
            interceptor.subscribe(self._triggers_changed)
        self.sessions: set[Session] = set()
        self.pump: RelayPump | None = None  # started with the server (see pump.py)
        # The admin console (proxy/observe/console.py): claims logins to its virtual
        # database; None: every login is relayed.
        self.console = None
        self.ssl_context = _server_ssl_context(config)
        self._ids = itertools.count(1)
        self._server: asyncio.base_events.Server | None = None
        self._empty = asyncio.Event()
        self._empty.set()

    def triggers_for(self, database: str) -> tuple[bytes, ...]:
        found = self.triggers.get(database)
        if found is None:
            found = self.triggers[database] = tuple(dict.fromkeys(
                t for interceptor in self.interceptors for t in interceptor.triggers(database)))
        return found

    def _triggers_changed(self, database: str) -> None:
        self.triggers.pop(database, None)
        # Sessions lent to the pump scan with the old triggers: take them back; each
        # is lent again, with the new ones, after its next chunk.
        if self.pump is not None and self.pump.lent:
            for session in list(self.sessions):
                if session.database == database:
                    session.take_back()

    def next_session_id(self) -> int:
        return next(self._ids)

    def register(self, session: Session) -> None:
        self.sessions.add(session)
        self._empty.clear()

    def unregister(self, session: Session) -> None:
        self.sessions.discard(session)
        if not self.sessions:
            self._empty.set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.pump = RelayPump.start(self.config.relay)
        self._server = await loop.create_server(
            lambda: Session(self), self.config.listen_host, self.config.listen_port,
            backlog=1024, reuse_address=True)
        for sock in self._server.sockets:
            import socket
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        log.info("listening on %s:%d upstream=%s tls=%s relay=%s fastpath=%s",
                 self.config.listen_host, self.port, self.config.upstream.describe(),
                 "on" if self.ssl_context else "off", "native" if self.pump else "python",
                 wire_scan.IMPLEMENTATION)

    def reload_tls(self, cert, key) -> None:
        """Load the certificate again (SIGHUP): connections from now on use it,
        established ones keep theirs. Raises (the old one stays) if it cannot load."""
        self.ssl_context = _server_ssl_context(replace(self.config, tls_cert=cert, tls_key=key))

    async def shutdown(self, grace: float | None = None) -> None:
        """Stop accepting; let requests in flight finish within `grace` seconds; close."""
        grace = self.config.shutdown_grace if grace is None else grace
        if self._server is not None:
            self._server.close()
        if self.pump is not None:  # the sessions' own bookkeeping, current again
            self.pump.reclaim_all()
        busy = [s for s in self.sessions if not s.is_idle()]
        log.info("shutting down: %d sessions (%d busy), grace %.1fs",
                 len(self.sessions), len(busy), grace)
        for session in list(self.sessions):
            session.begin_shutdown()
        try:
            async with asyncio.timeout(grace):
                await self._empty.wait()
        except TimeoutError:
            log.warning("grace period over: closing %d busy sessions", len(self.sessions))
            for session in list(self.sessions):
                session.terminate()
        if self._server is not None:
            await self._server.wait_closed()
        if self.pump is not None:
            self.pump.close()


def _server_ssl_context(config: Config) -> ssl.SSLContext | None:
    if not config.tls_cert:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(config.tls_cert), str(config.tls_key or config.tls_cert))
    return ctx
