"""Run fuzz cases: the same bytes to Postgres and to the proxy, side by side.

A case is (seed name, case number); case number -1 is the seed unmutated. Each side
gets a fresh connection, logs in with the same user, sends the case's writes and
reads until the server closes or falls silent. A difference is run again alone,
with longer timeouts, before it counts (a slow moment on a busy machine is not a
bug), and the proxy's log is searched for tracebacks after each case.
"""

from __future__ import annotations

import asyncio
import random
import re
import socket
import struct
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.wire import startup_packet

from .env import FuzzEnv, Target
from .mutate import Case, mutate, split_messages
from .oracle import CLASSES, Transcript, classify, parse_transcript, seed_kind

SEEDS = Path(__file__).with_name("seeds")
CRASH = re.compile(r"Traceback \(most recent call last\)|Task exception was never retrieved"
                   r"|Exception in callback|unhandled exception", re.I)


def traceback_causes(log: str) -> Counter:
    """The log's tracebacks by where they were raised: the innermost frame of the
    project's own code and the exception (numbers blanked), with how many."""
    causes: Counter = Counter()
    for block in re.split(r"\n(?=\d{4}-\d\d-\d\d )", log):
        if "Traceback (most recent call last)" not in block:
            continue
        lines = [line.strip() for line in block.splitlines() if line.strip()]
        frames = [line for line in lines if line.startswith("File ") and "/proxy/" in line]
        where = re.sub(r'File ".*?/(proxy/[^"]+)", line (\d+), in (\S+)', r"\1:\2 \3",
                       frames[-1]) if frames else "?"
        causes[(where, re.sub(r"\d+", "N", lines[-1])[:120])] += 1
    return causes


def load_seeds() -> dict[str, bytes]:
    return {path.stem: path.read_bytes() for path in sorted(SEEDS.glob("*.bin"))}


@dataclass
class Timeouts:
    login: float = 10.0
    pg_idle: float = 0.3      # Postgres' silence that counts as "waiting for more input"
    proxy_idle: float = 0.8   # the proxy's, when Postgres also waits
    proxy_close: float = 3.0  # how long the proxy may take to close after Postgres did
    write_gap: float = 0.002  # pause between a case's writes, so they arrive as separate reads

    def slow(self) -> "Timeouts":
        return Timeouts(self.login, 0.6, 1.5, 4.0, self.write_gap)


@dataclass
class Result:
    seed: str
    case: int
    klass: str | None
    steps: list[str]
    postgres: str = ""
    mlproxy: str = ""
    log: str = ""
    crash: bool | None = None  # whether it logged a traceback, when run alone (None: not run alone)
    causes: list[str] = field(default_factory=list)  # where those tracebacks were raised

    def reproduce(self) -> str:
        return f"python -m tests.fuzz --seed {self.seed} --case {self.case}"

    def describe(self) -> str:
        crash = {None: "", True: " + traceback in the log", False: ""}[self.crash]
        return (f"[{self.klass}{crash}] {self.seed}#{self.case}: {'; '.join(self.steps) or 'unmutated'}\n"
                f"    postgres: {self.postgres}\n    mlproxy:  {self.mlproxy}"
                + "".join(f"\n    traceback at {cause}" for cause in self.causes)
                + f"\n    reproduce: {self.reproduce()}")


def make_case(seeds: dict[str, bytes], seed: str, number: int) -> Case:
    if number < 0:
        return Case(seeds[seed])
    # ML statements spliced into a session compared message by message would differ for
    # the good reason that Postgres has no such statements: only ml_ seeds take them
    donors = [(name, split_messages(data)[0]) for name, data in seeds.items()
              if name != seed and (seed_kind(seed) == "ml" or seed_kind(name) != "ml")]
    return mutate(seeds[seed], donors, random.Random(f"{seed}:{number}"))


def case_kind(seed: str, case: Case) -> str:
    """How the oracle compares a case: as its seed, or as a model-call session when
    one of its messages came from one (the model's values are not Postgres')."""
    kinds = {seed_kind(seed), *(seed_kind(name) for name in case.spliced)}
    return "ml" if "ml" in kinds else "model" if "model" in kinds else "plain"


async def _open(target: Target) -> socket.socket:
    family = socket.AF_UNIX if target.family == "unix" else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    if family == socket.AF_INET:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    await asyncio.get_running_loop().sock_connect(sock, target.address)
    return sock


async def _read_login(sock: socket.socket) -> bytes:
    """Read up to the first ReadyForQuery; what came after it."""
    loop, buf = asyncio.get_running_loop(), b""
    while True:
        while len(buf) >= 5 and len(buf) >= 1 + struct.unpack_from("!I", buf, 1)[0]:
            length = struct.unpack_from("!I", buf, 1)[0]
            kind, buf = buf[:1], buf[1 + length:]
            if kind == b"E":
                raise ConnectionError("login refused")
            if kind == b"Z":
                return buf
        chunk = await loop.sock_recv(sock, 65536)
        if not chunk:
            raise ConnectionError("closed during login")
        buf += chunk


async def run_side(target: Target, case: Case, idle: float, close_wait,
                   timeouts: Timeouts) -> Transcript:
    """Log in, send the case, read until close or silence.

    Reads raw sockets (asyncio's StreamReader drops buffered replies once the
    peer resets). `idle` is the silence that ends the read with the socket open;
    `close_wait()`, when given, says how long to wait instead (it depends on how
    the other side ended)."""
    loop = asyncio.get_running_loop()
    sock = await asyncio.wait_for(_open(target), timeouts.login)
    try:
        await loop.sock_sendall(sock, startup_packet(target.user, target.database))
        data = bytearray(await asyncio.wait_for(_read_login(sock), timeouts.login))
        chunks = case.chunks()
        for n, chunk in enumerate(chunks):
            try:
                await loop.sock_sendall(sock, chunk)
            except OSError:
                break
            if n + 1 < len(chunks):
                await asyncio.sleep(timeouts.write_gap)
        end = "open"
        while True:
            wait = close_wait() if close_wait else idle
            try:
                chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), wait)
            except asyncio.TimeoutError:
                break
            except OSError:
                end = "closed"
                break
            if not chunk:
                end = "closed"
                break
            data += chunk
        return parse_transcript(bytes(data), end)
    finally:
        sock.close()


async def run_case(env: FuzzEnv, case: Case, timeouts: Timeouts) -> tuple[Transcript, Transcript]:
    """Both sides at once; the proxy's silence limit depends on how Postgres ended."""
    pg_task = asyncio.ensure_future(run_side(env.postgres, case, timeouts.pg_idle, None, timeouts))

    def proxy_wait() -> float:
        if not pg_task.done():
            return timeouts.proxy_close
        return timeouts.proxy_close if pg_task.result().end == "closed" else timeouts.proxy_idle

    px = await run_side(env.mlproxy, case, timeouts.proxy_idle, proxy_wait, timeouts)
    pg = await pg_task
    return pg, px


@dataclass
class Fuzzer:
    env: FuzzEnv
    seeds: dict[str, bytes] = field(default_factory=load_seeds)
    timeouts: Timeouts = field(default_factory=Timeouts)
    log_offset: int = 0
    restart: object = None  # a callable that brings a dead proxy back

    def _new_log(self) -> str:
        text = self.env.proxy.read_log()
        new, self.log_offset = text[self.log_offset:], len(text)
        return new

    async def one(self, seed: str, number: int, timeouts: Timeouts | None = None,
                  case: Case | None = None) -> Result:
        case = case or make_case(self.seeds, seed, number)
        timeouts = timeouts or self.timeouts
        try:
            pg, px = await run_case(self.env, case, timeouts)
        except (OSError, asyncio.TimeoutError) as exc:
            if not self.env.proxy.alive():
                return Result(seed, number, "crash", case.steps, log=f"proxy died: {exc!r}",
                              crash=True)
            return Result(seed, number, "no login", case.steps, log=repr(exc))
        klass = classify(pg, px, case_kind(seed, case))
        return Result(seed, number, klass, case.steps, pg.summary(), px.summary())

    async def alone(self, result: Result, case: Case | None = None) -> Result:
        """Run a case (again) by itself and read the proxy's log for it alone."""
        await asyncio.sleep(0.2)
        self._new_log()
        again = await self.one(result.seed, result.case, self.timeouts.slow(), case)
        await asyncio.sleep(0.3)
        new = self._new_log()
        crash = [line for line in new.splitlines() if CRASH.search(line)]
        again.causes = [f"{where}: {exc}" for where, exc in traceback_causes(new)]
        again.crash = bool(crash) or not self.env.proxy.alive()
        again.log = "\n".join(crash) or ("" if self.env.proxy.alive() else "the proxy process died")
        if not self.env.proxy.alive() and self.restart:
            self.restart()
        return again

    async def run(self, cases: list[tuple[str, int]], concurrency: int = 3,
                  deadline: float | None = None, progress=None, alone_limit: int = 40) -> "Report":
        """Run the cases side by side; confirm each difference with long timeouts; run
        up to `alone_limit` of them (spread over seeds and classes) alone to see which
        log a traceback."""
        report = Report()
        queue = list(reversed(cases))
        suspects: list[Result] = []
        self._new_log()

        async def worker() -> None:
            while queue and (deadline is None or time.monotonic() < deadline):
                seed, number = queue.pop()
                result = await self.one(seed, number)
                report.ran += 1
                new = self._new_log()
                report.tracebacks += len(CRASH.findall(new))
                report.causes.update(traceback_causes(new))
                if result.klass:
                    suspects.append(result)
                if progress and report.ran % 500 == 0:
                    progress(report)

        async def confirm() -> None:
            while suspects:
                suspect = suspects.pop()
                again = await self.one(suspect.seed, suspect.case, self.timeouts.slow())
                (report.failures if again.klass else report.flaky).append(
                    again if again.klass else suspect)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        await asyncio.gather(*(confirm() for _ in range(concurrency)))
        new = self._new_log()
        report.tracebacks += len(CRASH.findall(new))
        report.causes.update(traceback_causes(new))
        report.failures.sort(key=lambda r: (r.seed, r.case))
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(report.failures):
            groups.setdefault((r.seed, r.klass), []).append(i)
        picked: list[int] = []
        while len(picked) < alone_limit and any(groups.values()):
            for members in groups.values():
                if members and len(picked) < alone_limit:
                    picked.append(members.pop(0))
        for i in sorted(picked):
            again = await self.alone(report.failures[i])
            failure = report.failures[i]
            failure.crash, failure.log, failure.causes = again.crash, again.log, again.causes
        return report


@dataclass
class Report:
    ran: int = 0
    failures: list[Result] = field(default_factory=list)
    flaky: list[Result] = field(default_factory=list)
    tracebacks: int = 0  # tracebacks / escaped task exceptions in the proxy's log
    causes: Counter = field(default_factory=Counter)  # traceback_causes of the log

    def by_class(self) -> Counter:
        return Counter(r.klass for r in self.failures)

    def table(self) -> str:
        counts = self.by_class()
        alone = Counter(r.klass for r in self.failures if r.crash is not None)
        crashed = Counter(r.klass for r in self.failures if r.crash)
        lines = [f"cases run: {self.ran}; differing from Postgres: {len(self.failures)}; "
                 f"differences that went away when run again: {len(self.flaky)}; "
                 f"tracebacks or escaped task exceptions in the proxy's log: {self.tracebacks}",
                 "", "| class | cases | run alone | of those, logged a traceback |",
                 "|---|---|---|---|"]
        for klass in CLASSES:
            lines.append(f"| {klass} | {counts.get(klass, 0)} | {alone.get(klass, 0)} "
                         f"| {crashed.get(klass, 0)} |")
        if self.causes:
            lines += ["", "| tracebacks in the proxy's log: where | exception | count |",
                      "|---|---|---|"]
            lines += [f"| {where} | {exc} | {n} |" for (where, exc), n in self.causes.most_common()]
        examples: dict[str, list[Result]] = {}
        for r in self.failures:
            for cause in sorted(set(r.causes)) or ([] if r.crash is None else [f"no traceback: {r.klass}"]):
                examples.setdefault(cause, []).append(r)
        if examples:
            lines += ["", "| cases run alone, by cause | cases | a reproduction |",
                      "|---|---|---|"]
            for cause, rs in sorted(examples.items(), key=lambda kv: -len(kv[1])):
                lines.append(f"| {cause} | {len(rs)} | `{rs[0].reproduce()}` |")
        if self.flaky:  # (named, so that one can be replayed under load or alone)
            lines += ["", "| went away when run again: first seen as | a reproduction |", "|---|---|"]
            lines += [f"| {r.klass} | `{r.reproduce()}` |" for r in sorted(self.flaky, key=lambda r: (r.seed, r.case))]
        by_seed = Counter(r.seed for r in self.failures)
        if by_seed:
            lines += ["", "| seed | differing cases |", "|---|---|"]
            lines += [f"| {seed} | {n} |" for seed, n in by_seed.most_common()]
        return "\n".join(lines)


def schedule(seeds: dict[str, bytes], count: int, start: int = 0) -> list[tuple[str, int]]:
    """`count` cases spread over the seeds: case k of seed k mod n, from `start` on.

    Every seed's unmutated run (case -1) comes first."""
    names = sorted(seeds)
    return [(name, -1) for name in names] + [
        (names[k % len(names)], k) for k in range(start, start + count)]
