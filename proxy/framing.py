"""Sans-IO message framing for one direction of a v3 connection.

The relay must forward bytes as they came, yet notice a few message types (a Query
to intercept, a ReadyForQuery that ends a request). `Framer.feed` walks the message
headers of each chunk without copying it: messages of types the caller does not want
are passed through as slices of the original chunk, even when they are huge or cut
across chunks (a 1 GB CopyData never sits in memory); only messages of *wanted*
types are assembled whole and handed over as `Frame`s.
"""

from __future__ import annotations

import struct
from collections.abc import Container, Mapping
from dataclasses import dataclass

from . import errors
from .errors import PgError

_LEN = struct.Struct("!I")
_unpack_len = _LEN.unpack_from


@dataclass(slots=True)
class Frame:
    """One complete message: `raw` is header + body exactly as received."""

    type: int
    raw: bytes | memoryview

    @property
    def body(self) -> memoryview:
        return memoryview(self.raw)[5:]


class ProtocolViolation(PgError):
    """The peer sent bytes that are not a valid message stream.

    Raised by `Framer.feed` with `before`, the items of the chunk in front of the
    bad header (whole messages, to be handled first, as Postgres handles them before
    it reads the bad one), and `rest`, the bytes from the bad header on."""

    def __init__(self, message: str) -> None:
        super().__init__(errors.PROTOCOL_VIOLATION, message, severity="FATAL")
        self.before: list = []
        self.rest = b""
        # Postgres only logs a bad length (COMMERROR) and closes: nothing is sent
        self.silent = message.startswith(("invalid message length", "invalid length of"))


ALL = None  # `wanted=ALL`: assemble every message


class Framer:
    """Incremental splitter of a typed-message stream (everything after startup).

    feed(chunk) returns None when the whole chunk is pass-through (the fast path: no
    wanted message starts, ends or is held in it), else a list whose items are either
    `Frame` (a complete wanted message) or a bytes-like slice to pass through, in
    stream order. Concatenating the items' bytes gives back the stream.

    `limits` maps every message type that may appear to its largest valid length
    field (None: any type, any length >= 4). A wanted message longer than
    `assemble_limit` is passed through like an unwanted one (flagged by
    `oversized_frames`), so memory stays bounded whatever the peer sends.
    """

    __slots__ = ("wanted", "_limits", "assemble_limit", "_skip", "_carry",
                 "_carry_total", "oversized_frames")

    def __init__(self, wanted: Container[int] | None, *,
                 limits: Mapping[int, int] | None = None,
                 assemble_limit: int = 16 << 20) -> None:
        self.wanted = wanted
        self._limits = limits
        self.assemble_limit = assemble_limit
        self._skip = 0  # bytes still to pass through of an unwanted message
        self._carry = bytearray()  # a held partial header or partial wanted message
        self._carry_total = 0  # full size of the held message, once its header is known
        self.oversized_frames = 0

    @property
    def at_boundary(self) -> bool:
        """True when no message is partly passed or held: a safe point to inject."""
        return self._skip == 0 and not self._carry

    @property
    def bytes_to_boundary(self) -> int | None:
        """How many more bytes complete the message in progress (0 at a boundary),
        or None while its header is still incomplete."""
        if self._skip:
            return self._skip
        if not self._carry:
            return 0
        if not self._carry_total:
            return None
        return self._carry_total - len(self._carry)

    def take_carry(self, msg_type: int, limit: int) -> bytes | None:
        """The start of a message of type `msg_type` and at most `limit` bytes held
        since the last chunk, handed back so the caller reads it again together
        with the next chunk (the framer is then at a boundary); None, and nothing
        changes, when the framer holds anything else."""
        carry = self._carry
        if not carry or self._skip or carry[0] != msg_type or self._carry_total > limit:
            return None
        self._carry = bytearray()
        self._carry_total = 0
        return bytes(carry)

    @property
    def held_type(self) -> int | None:
        """The type byte of a message start held until more bytes come (None when
        nothing is held, or the message in progress is being passed through)."""
        return self._carry[0] if self._carry and not self._skip else None

    def set_limits(self, limits: Mapping[int, int] | None) -> None:
        self._limits = limits

    def pass_through(self, count: int) -> None:
        """Go on inside a message of which `count` bytes are still to come, passed
        through unexamined (a session the relay pump handed back mid-message)."""
        if not self.at_boundary:
            raise RuntimeError("pass_through needs the framer at a message boundary")
        self._skip = count

    def set_wanted(self, wanted: Container[int] | None) -> None:
        self.wanted = wanted

    def _want(self, msg_type: int, total: int) -> bool:
        wanted = self.wanted
        if wanted is not None and msg_type not in wanted:
            return False
        if total > self.assemble_limit:
            self.oversized_frames += 1
            return False
        return True

    def _check(self, msg_type: int, length: int) -> None:
        limits = self._limits
        if limits is None:
            if length >= 4:
                return
            limit = 0x7FFFFFFF
        else:
            limit = limits.get(msg_type, -1)
            if limit < 0:
                raise ProtocolViolation(f"invalid frontend message type {msg_type}")
            if 4 <= length <= limit:
                return
        raise ProtocolViolation(
            f"invalid message length {length} for message type {chr(msg_type)!r}")

    def feed(self, data: bytes) -> list[Frame | bytes | memoryview] | None:
        n = len(data)
        pos = 0
        out: list[Frame | bytes | memoryview] = []
        if self._skip:
            if self._skip >= n:
                self._skip -= n
                return None
            pos = self._skip
            self._skip = 0
        elif self._carry:
            pos = self._complete_carry(data, out)
            if pos < 0:
                return out
        raw_start = 0 if not out else pos
        wanted = self.wanted
        check = self._check
        while pos < n:
            if n - pos < 5:
                if pos > raw_start:
                    out.append(memoryview(data)[raw_start:pos])
                if self._limits is not None and data[pos] not in self._limits:
                    # Postgres judges the type byte alone, before the length
                    self._violation(out, data, pos, data[pos], 4)
                self._carry += data[pos:]
                return out
            msg_type = data[pos]
            length = _unpack_len(data, pos + 1)[0]
            try:
                check(msg_type, length)
            except ProtocolViolation:
                if pos > raw_start:
                    out.append(memoryview(data)[raw_start:pos])
                self._violation(out, data, pos, msg_type, length)
            end = pos + 1 + length
            if (wanted is None or msg_type in wanted) and self._want(msg_type, 1 + length):
                if pos > raw_start:
                    out.append(memoryview(data)[raw_start:pos])
                if end <= n:
                    out.append(Frame(msg_type, data[pos:end]))
                    raw_start = pos = end
                    continue
                self._carry += data[pos:]
                self._carry_total = 1 + length
                return out
            if end > n:
                self._skip = end - n
                pos = n
                break
            pos = end
        if not out and raw_start == 0:
            return None
        if pos > raw_start:
            out.append(memoryview(data)[raw_start:pos])
        return out

    def _violation(self, out: list, data: bytes, pos: int, msg_type: int, length: int) -> None:
        """Raise the ProtocolViolation of the header at data[pos]: `out` (what came
        before it) and the bytes from it on go with the exception; the framer is
        left empty."""
        try:
            self._check(msg_type, length)
            err = ProtocolViolation(f"invalid frontend message type {msg_type}")
        except ProtocolViolation as exc:
            err = exc
        err.before = out
        err.rest = bytes(data[pos:])
        self._carry = bytearray()
        self._carry_total = 0
        self._skip = 0
        raise err

    def _complete_carry(self, data: bytes, out: list) -> int:
        """Continue a held header or message; returns where the rest of data starts
        (or -1 when all of data was absorbed)."""
        carry = self._carry
        pos = 0
        if not self._carry_total:  # still completing a header
            need = 5 - len(carry)
            carry += data[:need]
            pos = min(need, len(data))
            if len(carry) < 5:
                return -1
            msg_type = carry[0]
            length = _unpack_len(carry, 1)[0]
            try:
                self._check(msg_type, length)
            except ProtocolViolation:
                held = bytes(carry)
                self._carry = bytearray()
                self._violation(out, held + bytes(data[pos:]), 0, msg_type, length)
            total = 1 + length
            wanted = self.wanted
            if not ((wanted is None or msg_type in wanted) and self._want(msg_type, total)):
                out.append(bytes(carry))
                self._carry = bytearray()
                rest = total - 5
                avail = len(data) - pos
                if rest > avail:
                    if avail:
                        out.append(memoryview(data)[pos:])
                    self._skip = rest - avail
                    return -1
                if rest:
                    out.append(memoryview(data)[pos:pos + rest])
                return pos + rest
            self._carry_total = total
        need = self._carry_total - len(carry)
        carry += data[pos:pos + need]
        if len(carry) < self._carry_total:
            return -1
        out.append(Frame(carry[0], bytes(carry)))
        self._carry = bytearray()
        self._carry_total = 0
        return pos + need
