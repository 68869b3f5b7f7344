"""Running mlproxy's own extended-protocol messages inside a client's pipeline.

During a takeover of a Parse or Bind the client may have sent other extended
messages before it, with no Sync yet: their replies are still owed, the server holds
them until a Flush or Sync, and the transaction they run in (the client's block, or
the implicit one of the pipeline) must stay theirs. So mlproxy never sends a Sync of
its own here; it

1. relays the owed replies first (`relay_owed`: a marker statement and a Flush; the
   replies before the marker's go to the client, through the session's tracker when
   results are being rewritten);
2. sends its own messages, ended by a Flush, under a scratch statement name (the
   client's unnamed statement and portal are never touched), and reads their
   replies (`Batch`);
3. on an error, makes it the client's error exactly as Postgres would: the server
   is (or is brought, by a deliberately failing Bind) in its skip-until-Sync state,
   the client's messages up to its Sync are dropped, and the Sync goes upstream so
   that the ReadyForQuery carries the real transaction status (`fail`).

Everything mlproxy runs this way shares the client's transaction: in a block, an
error aborts it as the client's own statement would have.
"""

from __future__ import annotations

import struct
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from .. import protocol as p
from ..errors import PgError
from ..intercept import Takeover
from ..owed_replies import FLUSH, relay_owed, skip_to_sync  # noqa: F401 - re-exported
from ..ml_commands.upstream_ops import error_from_fields
from .tracked_relay import start_tracking

SCRATCH = b"__mlproxy_scratch"
_NO_SUCH_STATEMENT = b"__mlproxy_absent"
_ASYNC = (p.B_NOTIFICATION, p.B_PARAMETER_STATUS)


def parse_message(name: bytes, sql: str, types: Sequence[int]) -> bytes:
    return p.message(b"P", name + b"\x00" + p.cstr(sql) + _types(types))


def _types(types: Sequence[int]) -> bytes:
    return struct.pack(f"!h{len(types)}I", len(types), *types)


def bind_message(portal: bytes, statement: bytes, formats: Sequence[int] = (),
                 values: Sequence[bytes | None] = ()) -> bytes:
    """Bind with per-parameter formats; results in text."""
    parts = [portal + b"\x00" + statement + b"\x00", struct.pack(f"!h{len(formats)}h", len(formats), *formats),
             struct.pack("!h", len(values))]
    for value in values:
        parts.append(struct.pack("!i", -1) if value is None else struct.pack("!i", len(value)) + value)
    parts.append(struct.pack("!h", 0))
    return p.message(b"B", b"".join(parts))


def execute_message(portal: bytes = SCRATCH) -> bytes:
    return p.message(b"E", portal + b"\x00" + struct.pack("!i", 0))


def close_scratch() -> bytes:
    """Close of the scratch portal and statement (a portal outlives its statement's
    Close until the transaction ends): one CloseComplete, then the other."""
    return p.message(b"C", b"P" + SCRATCH + b"\x00") + p.message(b"C", b"S" + SCRATCH + b"\x00")


@dataclass
class BindValues:
    """The parameters of a client's Bind: one format code and one value each."""

    statement: bytes
    formats: list[int]
    values: list[bytes | None]

    @classmethod
    def parse(cls, body: bytes | memoryview) -> BindValues:
        """The Bind's parameters; raises MalformedMessage (08P01) where Postgres
        would refuse the message."""
        bind = p.decode_bind(body)
        return cls(bind.statement, bind.formats, list(bind.values))

    def select(self, numbers: Sequence[int]) -> tuple[list[int], list[bytes | None]]:
        """Formats and values of the client's parameters `numbers` (1-based), in order."""
        return [self.formats[n - 1] for n in numbers], [self.values[n - 1] for n in numbers]


async def fail(takeover: Takeover, err: PgError, *, server_failed: bool = False) -> None:
    """`err` is the client's error for its current message (call after relay_owed).
    Unless the server already failed on mlproxy's own message, a Bind of a statement
    that does not exist makes it fail now, so that a transaction block is aborted and
    the server skips to Sync just as for an error of the client's own."""
    if not server_failed:
        takeover.send_server(bind_message(b"", _NO_SUCH_STATEMENT) + FLUSH)
        while (msg := await takeover.server_message()).type != p.B_ERROR:
            if msg.type in _ASYNC:
                takeover.send_client(bytes(msg.raw))
    takeover.send_client(p.error_response(err))
    await skip_to_sync(takeover)


@dataclass
class Outcome:
    """What a batch of mlproxy's own commands answered."""

    rows: dict[object, list[bytes]] = field(default_factory=dict)  # DataRows per command tag
    parameter_types: dict[object, list[int]] = field(default_factory=dict)
    error: PgError | None = None
    failed: object = None  # the tag of the command that failed
    parsed: set = field(default_factory=set)  # the tags whose statement Postgres parsed


class Batch:
    """mlproxy's own commands, pipelined under the scratch statement name and ended
    by a Flush (never a Sync): each starts with Closes of the scratch names, so its
    replies begin with two CloseCompletes (and a failed batch leaves nothing behind)."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._tags: list[object] = []

    def __bool__(self) -> bool:
        return bool(self._tags)

    @property
    def first(self) -> object:
        """The tag of the first command."""
        return self._tags[0]

    def run(self, tag: object, sql: str, types: Sequence[int] = (), formats: Sequence[int] = (),
            values: Sequence[bytes | None] = (), copy_in: Sequence[bytes] | None = None,
            describe: bool = False) -> None:
        """Execute `sql` with these parameters; `copy_in`: the CopyData messages of a
        COPY FROM STDIN (sent at once: the server reads them after the Execute);
        `describe`: learn the parameter types Postgres gave it, too."""
        self._parts += [close_scratch(), parse_message(SCRATCH, sql, types)]
        if describe:
            self._parts.append(p.message(b"D", b"S" + SCRATCH + b"\x00"))
        self._parts += [bind_message(SCRATCH, SCRATCH, formats, values), execute_message()]
        if copy_in is not None:
            self._parts += [*copy_in, p.message(b"c")]
        self._tags.append(tag)

    def describe(self, tag: object, sql: str, types: Sequence[int] = ()) -> None:
        """Parse and describe `sql` without running it (Postgres checks it, and says
        which types its parameters have)."""
        self._parts += [close_scratch(), parse_message(SCRATCH, sql, types),
                        p.message(b"D", b"S" + SCRATCH + b"\x00")]
        self._tags.append(tag)

    def prepare(self, tag: object, name: bytes, sql: str, types: Sequence[int]) -> None:
        """Parse `sql` as the client's statement `name` (its ParseComplete is not the
        client's: the client had it already, see prepared_general)."""
        self._parts += [close_scratch(), parse_message(name, sql, types)]
        self._tags.append(tag)

    def defer(self, takeover: Takeover, error: Callable[[bytes], bytes]) -> None:
        """Send the commands without waiting for their replies: the tracker drops them
        ahead of the replies to what the client sends next (an error among them
        reaches the client as `error(raw)` makes it). The commands must return no rows."""
        takeover.send_server(b"".join(self._parts) + close_scratch())
        start_tracking(takeover.session).expect_hidden(2 * (len(self._tags) + 1), error)

    async def send(self, takeover: Takeover,
                   on_rows: Callable[[object, list[bytes]], Awaitable[None]] | None = None) -> Outcome:
        """Send the commands and read their replies. `on_rows(tag, rows)` gets the
        DataRows of a command in runs as they come, awaited before the next replies
        are read (else they are collected)."""
        takeover.send_server(b"".join(self._parts) + close_scratch() + FLUSH)
        outcome = Outcome()
        closes, last = 0, 2 * (len(self._tags) + 1)
        rows: list[bytes] = []
        while True:
            msg = await takeover.server_message()
            t = msg.type
            command = closes // 2 - 1
            tag = self._tags[command] if 0 <= command < len(self._tags) else None
            if t == p.B_DATA_ROW:
                rows.append(bytes(msg.raw))
                if on_rows is not None and len(rows) >= 4096:
                    await on_rows(tag, rows)
                    rows = []
                continue
            if rows:
                if on_rows is not None:
                    await on_rows(tag, rows)
                else:
                    outcome.rows.setdefault(tag, []).extend(rows)
                rows = []
            if t == p.B_CLOSE_COMPLETE:
                closes += 1
                if closes == last:
                    return outcome
            elif t == p.B_PARSE_COMPLETE:
                outcome.parsed.add(tag)
            elif t == p.B_PARAMETER_DESCRIPTION:
                body = bytes(msg.body)
                (count,) = struct.unpack_from("!h", body)
                outcome.parameter_types[tag] = list(struct.unpack_from(f"!{count}I", body, 2))
            elif t == p.B_ERROR:
                outcome.error = error_from_fields(p.parse_fields(msg.body))
                outcome.failed = tag
                return outcome
            elif t in _ASYNC:
                takeover.send_client(bytes(msg.raw))
            # BindComplete, CommandComplete, CopyInResponse, RowDescription,
            # NoData and the notices of mlproxy's own statements are not the client's
