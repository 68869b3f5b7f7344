"""The admin console's commands and their results (the console speaks the protocol,
this module knows what each command shows; both read the one stats source).

SHOW HELP|STATS|SESSIONS|MODELS|JOBS|CONFIG, RELOAD, SHUTDOWN, as PgBouncer names its
own (case-insensitive, a trailing `;` allowed). An unknown command is 42601.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import errors, protocol as p
from ..errors import PgError
from .stats import STATS, Stats, session_relay

if TYPE_CHECKING:
    from ..catalog.store import CatalogStore
    from ..reload import Reloader

TEXT, INT8, FLOAT8 = 25, 20, 701


@dataclass
class Result:
    columns: tuple[tuple[str, int], ...]
    rows: list[tuple] = field(default_factory=list)
    tag: str | None = "SHOW"
    notices: list[bytes] = field(default_factory=list)
    after: Callable[[], None] | None = None  # run once the answer is out (SHUTDOWN)

    def command_tag(self, count: int) -> str:
        return self.tag or ""  # SHOW, RELOAD, SHUTDOWN: PgBouncer's tags

    @classmethod
    def empty(cls) -> "Result":
        return cls((), tag=None)


@dataclass
class Commands:
    """What the commands act on: the stats source, the settings, the catalog."""

    stats: Stats = STATS
    reloader: "Reloader | None" = None
    catalog: "CatalogStore | None" = None
    shutdown: Callable[[], None] | None = None


@dataclass(frozen=True)
class Command:
    pattern: re.Pattern
    usage: str
    help: str
    columns: tuple[tuple[str, int], ...]
    run_fn: Callable[..., Awaitable[Result]]
    takes_text: bool = False  # run_fn(commands, text)

    async def run(self, commands: Commands, text: str) -> Result:
        if self.takes_text:
            return await self.run_fn(commands, text)
        return await self.run_fn(commands)


# -- the commands ----------------------------------------------------------------------------

HELP_COLUMNS = (("command", TEXT), ("description", TEXT))
STATS_COLUMNS = (("database", TEXT), ("total_query_count", INT8), ("total_received", INT8),
                 ("total_sent", INT8), ("total_model_calls", INT8), ("total_rows_predicted", INT8),
                 ("avg_model_ms", FLOAT8), ("p99_model_ms", FLOAT8), ("sessions", INT8),
                 ("total_sessions", INT8))
SESSIONS_COLUMNS = (("id", INT8), ("user", TEXT), ("database", TEXT), ("client", TEXT),
                    ("state", TEXT), ("relay", TEXT), ("age_seconds", FLOAT8),
                    ("query_count", INT8), ("received", INT8), ("sent", INT8))
MODELS_COLUMNS = (("database", TEXT), ("schema", TEXT), ("model", TEXT), ("evaluator", TEXT),
                  ("build_cache", TEXT), ("build_seconds", FLOAT8), ("load_seconds", FLOAT8),
                  ("calls", INT8), ("rows", INT8), ("avg_ms", FLOAT8), ("p99_ms", FLOAT8),
                  ("artifact", TEXT))
JOBS_COLUMNS = (("database", TEXT), ("schema", TEXT), ("model", TEXT), ("owner", TEXT),
                ("state", TEXT), ("phase", TEXT), ("progress", TEXT), ("elapsed_seconds", FLOAT8),
                ("worker", TEXT), ("created", TEXT))
CONFIG_COLUMNS = (("key", TEXT), ("value", TEXT), ("default", TEXT), ("source", TEXT),
                  ("changeable", TEXT))


async def _help(c: Commands) -> Result:
    rows = [(cmd.usage, cmd.help) for cmd in COMMANDS]
    detail = "\n".join(cmd.usage for cmd in COMMANDS)
    return Result(HELP_COLUMNS, rows, notices=[p.notice_response("Console usage", detail=detail)])


async def _stats(c: Commands) -> Result:
    traffic = c.stats.traffic()
    predictors = c.stats.predictor_snapshot()
    latency = c.stats.database_latency()
    live: dict[str, int] = {}
    for session in c.stats.live_sessions():
        if session.startup is not None and not session.console:
            live[session.database] = live.get(session.database, 0) + 1
    rows = []
    for db in sorted(set(traffic) | set(latency)):
        t = traffic.get(db)
        calls = sum(pr.calls for pr in predictors if db in pr.databases)
        predicted = sum(pr.rows for pr in predictors if db in pr.databases)
        hist = latency.get(db)
        rows.append((db, t.statements if t else 0, t.bytes_in if t else 0, t.bytes_out if t else 0,
                     calls, predicted, _ms(hist.mean() if hist else None),
                     _ms(hist.quantile(0.99) if hist else None), live.get(db, 0),
                     (t.sessions if t else 0) + live.get(db, 0)))
    return Result(STATS_COLUMNS, rows)


async def _sessions(c: Commands) -> Result:
    lent = c.stats.pump_counters()
    now = time.monotonic()
    rows = []
    for s in sorted(c.stats.live_sessions(), key=lambda s: s.id):
        state, relay = session_relay(s, lent)
        extra = lent.get(s.id, (0, 0, 0, 0))
        rows.append((s.id, s.startup.user if s.startup else None,
                     s.database or None, s.peer, state, relay, round(now - s.opened, 3),
                     max(0, s.readies + extra[2] - 1) if not s.console else 0,
                     s.bytes_in + extra[0], s.bytes_out + extra[1]))
    return Result(SESSIONS_COLUMNS, rows)


async def _models(c: Commands) -> Result:
    rows = []
    for pr in sorted(c.stats.predictor_snapshot(), key=lambda x: (x.schema, x.model)):
        for db in sorted(pr.databases):
            rows.append((db, pr.schema, pr.model, pr.evaluator, pr.cache, pr.build_seconds,
                         round(pr.load_seconds, 3), pr.calls, pr.rows, _ms(pr.latency.mean()),
                         _ms(pr.latency.quantile(0.99)), pr.sha256[:12]))
    return Result(MODELS_COLUMNS, rows)


_JOBS_SQL = """
SELECT schema_name, model_name, owner::text AS owner, progress, job_owner,
       extract(epoch FROM now() - created_at)::float8 AS elapsed, created_at::text AS created
  FROM mlproxy.models WHERE state = 'TRAINING' ORDER BY created_at, id"""


# A job's progress phase until a proxy claims it from the queue ("exported": its
# snapshot written by CREATE MODEL, waiting for a free worker of any proxy).
_WAITING_PHASES = (None, "queued", "exported")


async def training_job_rows(catalog: Any) -> list[tuple]:
    """Every database's training jobs from its catalog, SHOW JOBS' rows (its state
    column, index 4, is "queued" or "running"); also what /metrics counts as queued."""
    rows = []
    for db in sorted(await catalog.databases_with_catalog()):
        for r in await catalog.fetch(db, _JOBS_SQL):
            progress = _progress(r["progress"])
            phase = progress.get("phase")
            rows.append((db, r["schema_name"], r["model_name"], r["owner"],
                         "queued" if phase in _WAITING_PHASES else "running", phase,
                         _progress_text(progress), round(r["elapsed"], 3), r["job_owner"],
                         r["created"]))
    return rows


async def _jobs(c: Commands) -> Result:
    if c.catalog is None:
        return Result(JOBS_COLUMNS, [])
    try:
        rows = await training_job_rows(c.catalog)
    except PgError:
        raise
    except Exception as exc:  # noqa: BLE001 - the catalog unreachable: the command's error
        raise PgError(errors.CONNECTION_EXCEPTION, f"cannot read the training jobs: {exc}") from None
    return Result(JOBS_COLUMNS, rows)


def _progress(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return value if isinstance(value, dict) else {}


def _progress_text(progress: dict[str, Any]) -> str:
    parts = []
    if "trials" in progress:
        parts.append(f"{progress['trials']} trials")
    if isinstance(progress.get("best_score"), (int, float)):
        parts.append(f"best score {progress['best_score']:.4f}")
    if isinstance(progress.get("elapsed"), (int, float)):
        parts.append(f"{progress['elapsed']:.0f} s elapsed")
    return ", ".join(parts)


async def _config(c: Commands) -> Result:
    from ..settings import BY_NAME
    if c.reloader is None:
        return Result(CONFIG_COLUMNS, [])
    rows = [(name, value, BY_NAME[name].show(BY_NAME[name].default), source,
             "yes" if change == "reload" else "no")
            for name, value, source, change in c.reloader.current.rows()]
    return Result(CONFIG_COLUMNS, rows)


async def _reload(c: Commands) -> Result:
    if c.reloader is None:
        raise PgError(errors.OBJECT_NOT_IN_PREREQUISITE_STATE,
                      "this proxy was started without settings to reload")
    c.reloader.reload()
    return Result((), tag="RELOAD")


async def _shutdown(c: Commands) -> Result:
    if c.shutdown is None:
        raise PgError(errors.OBJECT_NOT_IN_PREREQUISITE_STATE, "this proxy cannot be shut down from here")
    return Result((), tag="SHUTDOWN", after=c.shutdown)


_SET = re.compile(r"set\s+(?:session\s+|local\s+)?([a-z_][a-z0-9_.]*)\s*(?:=|\s+to\s+|\s).*",
                  re.IGNORECASE | re.DOTALL)


async def _set(c: Commands, text: str) -> Result:
    """Drivers set session parameters as they connect (pgjdbc: extra_float_digits,
    application_name): the console has none, and accepts them as a no-op. A proxy
    setting is not changed this way."""
    from ..settings import BY_NAME
    name = _SET.fullmatch(text).group(1).lower()
    if name in BY_NAME:
        raise PgError(errors.FEATURE_NOT_SUPPORTED, f"{name} is not changed with SET",
                      hint="Change it in the config file (or its flag or variable) and RELOAD.")
    return Result((), tag="SET")


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1e3, 4)


def _show(word: str) -> re.Pattern:
    return re.compile(rf"show\s+{word}", re.IGNORECASE)


COMMANDS: tuple[Command, ...] = (
    Command(_show("help"), "SHOW HELP", "this list", HELP_COLUMNS, _help),
    Command(_show("stats"), "SHOW STATS",
            "per database: statements, bytes from/to clients, model calls, rows predicted, "
            "average and p99 predictor latency (ms), sessions", STATS_COLUMNS, _stats),
    Command(_show("sessions"), "SHOW SESSIONS",
            "client sessions: user, database, client, state, relay kind (native/python/tracked), "
            "age", SESSIONS_COLUMNS, _sessions),
    Command(_show("models"), "SHOW MODELS",
            "loaded predictors per database: model, evaluator, build seconds, calls, rows",
            MODELS_COLUMNS, _models),
    Command(_show("jobs"), "SHOW JOBS",
            "training jobs queued and running (from the catalog) with their progress",
            JOBS_COLUMNS, _jobs),
    Command(_show("config"), "SHOW CONFIG", "the settings in force, where each came from, "
            "whether RELOAD changes it", CONFIG_COLUMNS, _config),
    Command(re.compile("reload", re.IGNORECASE), "RELOAD",
            "read the settings again and apply what can change (as SIGHUP)", (), _reload),
    Command(re.compile("shutdown", re.IGNORECASE), "SHUTDOWN",
            "stop the proxy (as SIGTERM: queries in flight get the grace period)", (), _shutdown),
    Command(_SET, "SET name = value",
            "accepted and ignored, for drivers that set session parameters as they connect",
            (), _set, takes_text=True),
)


def find_command(text: str) -> Command:
    """The command `text` names (42601 if none)."""
    text = text.strip().rstrip(";").strip()
    for command in COMMANDS:
        if command.pattern.fullmatch(text):
            return command
    raise PgError(errors.SYNTAX_ERROR, f"invalid command '{text}', use SHOW HELP;",
                  hint="The mlproxy admin console takes: " + ", ".join(c.usage for c in COMMANDS))
