"""The relay's per-chunk fast path: one call per chunk says "forward it as it came"
and what it means for the session's bookkeeping, or None ("look closer").

pgbench-style traffic is one small chunk per request and one per reply. Framing
those in Python (a loop over headers, a test per watched message, a text prefilter
per statement) cost more CPU than the kernel's work of moving them, so the common
case is decided here in one call: in C when the `_mlproxy_wire` extension is built
(setup.py; a source checkout imports it from site-packages), else by the reference
implementation below, which defines the results. None hands the chunk to the framed
path (`framing.Framer`), which handles everything, including the precise errors.

client_chunk(data, limits, triggers, copy_in, names=()) -> int | None
    `data` holds only whole frontend messages, each of a known type within its
    length limit (`limits`: 256 big-endian uint32 maxima, 0 for unknown types), no
    Query/Parse contains a trigger (compared lower-cased), no message names one of
    `names` (a parked reply rewrite's statements, see `names_message`), no Terminate,
    no CopyDone or CopyFail outside COPY IN (the session matches those with their
    CopyInResponse), no Query or FunctionCall after an extended-protocol message with
    no Sync between (Postgres skips it, with no ReadyForQuery, when one of those
    messages fails: the session's Session._query_turn waits for their replies to
    know), no extended-protocol message is left after the chunk's last
    Sync/Query, and the requests counted are of one kind (Syncs, or Queries and
    FunctionCalls: the session keeps their order, request_ends.py). Then the
    result packs: bit 0 = a Sync or Query ended the pipeline (unsynced is cleared),
    bit 1 = CopyDone/CopyFail seen (copy_in is cleared), bit 2 = the requests
    counted are Syncs, the rest (>> 3) = requests sent that will each get a
    ReadyForQuery (Query, FunctionCall, and Sync when not in COPY IN, tracked
    through the chunk).

server_chunk(data) -> int | None
    `data` holds only whole backend messages and no ErrorResponse or
    CopyInResponse. Then: the number of ReadyForQuery messages << READY_SHIFT |
    ENDS_READY if the last message is one | the status byte of the last one (0
    when none).
"""

from __future__ import annotations

import struct

from .protocol import F_FLUSH, FRONTEND_LIMITS
from .request_ends import QUERY, SYNC

UNSYNCED_CLEARED = 1
COPY_IN_CLEARED = 2
SYNC_ENDS = 4
REQUEST_SHIFT = 3
ENDS_READY = 0x100
READY_SHIFT = 9

_LEN = struct.Struct("!I").unpack_from
_EXTENDED = frozenset(b"BDEC")
_NAMING = frozenset(b"PBDEC")

# 256 big-endian maxima for client_chunk (0: a type the frontend may not send). A
# Flush has no body: one with a body is Postgres' 08P01, after which it skips to the
# next Sync, as after any extended-protocol message's error: the session's framed
# path counts it so. (A Sync with a body fails as a Sync: its error, then its
# ReadyForQuery; Postgres' SocketBackend starts no skip for it.)
CLIENT_LIMITS = b"".join(min(4 if t == F_FLUSH else FRONTEND_LIMITS.get(t, 0), 0xFFFFFFFF).to_bytes(4, "big")
                         for t in range(256))


def message_kind(msg_type: int, first_byte: int) -> int:
    """A client message's type and first body byte (a Describe's or Close's S/P)
    as one int: what the session notes of unsynced extended-protocol messages."""
    return msg_type << 8 | first_byte


def message_names(msg_type: int, raw: bytes | memoryview) -> list[bytes] | None:
    """The statement/portal names the whole client message `raw` refers to: a
    Parse's statement, a Bind's portal and statement, a Describe's or Close's
    target, an Execute's portal; a Query names the unnamed ones (it drops them).
    None when a name is not terminated (malformed: the framed path judges it)."""
    if msg_type == 0x51:  # Query
        return [b""]
    if msg_type not in _NAMING:
        return []
    body = bytes(raw[5:])
    at = 1 if msg_type == 0x44 or msg_type == 0x43 else 0  # Describe, Close: S/P first
    if at > len(body):
        return None
    found = []
    for _ in range(2 if msg_type == 0x42 else 1):
        end = body.find(b"\0", at)
        if end < 0:
            return None
        found.append(body[at:end])
        at = end + 1
    return found


def names_message(msg_type: int, raw: bytes | memoryview, names: tuple[bytes, ...]) -> bool:
    """Does this client message name one of `names` (or is it malformed there)?"""
    found = message_names(msg_type, raw)
    return found is None or any(name in names for name in found)


def py_client_chunk(data: bytes, limits: bytes, triggers: tuple[bytes, ...],
                    copy_in: bool, names: tuple[bytes, ...] = ()) -> int | None:
    """Reference implementation of client_chunk (the module docstring)."""
    n = len(data)
    if not n:
        return None
    pos = requests = flags = 0
    kinds = 0  # request_ends.QUERY | request_ends.SYNC
    extended_open = False
    while pos < n:
        if n - pos < 5:
            return None
        msg_type = data[pos]
        length = _LEN(data, pos + 1)[0]
        if length < 4 or length > _LEN(limits, 4 * msg_type)[0]:
            return None
        end = pos + 1 + length
        if end > n:
            return None
        if names and names_message(msg_type, data[pos:end], names):
            return None
        if msg_type == 0x51 or msg_type == 0x50:  # Query, Parse
            body = data[pos + 5:end].lower()
            if any(trigger in body for trigger in triggers):
                return None
            if msg_type == 0x51:
                if extended_open:
                    return None
                requests += 1
                kinds |= QUERY
                extended_open = False
                flags |= UNSYNCED_CLEARED
            else:
                extended_open = True
        elif msg_type in _EXTENDED:
            extended_open = True
        elif msg_type == 0x53:  # Sync (Postgres ignores it inside a COPY)
            if not copy_in:
                requests += 1
                kinds |= SYNC
                extended_open = False
                flags |= UNSYNCED_CLEARED
        elif msg_type == 0x46:  # FunctionCall
            if extended_open:
                return None
            requests += 1
            kinds |= QUERY
        elif msg_type == 0x63 or msg_type == 0x66:  # CopyDone, CopyFail
            if not copy_in:  # ended ahead of its CopyInResponse, or stray: Session._copy_ended
                return None
            copy_in = False
            flags |= COPY_IN_CLEARED
        elif msg_type == 0x58:  # Terminate
            return None
        pos = end
    if extended_open or kinds == QUERY | SYNC:
        return None
    return requests << REQUEST_SHIFT | (SYNC_ENDS if kinds == SYNC else 0) | flags


def py_server_chunk(data: bytes) -> int | None:
    """Reference implementation of server_chunk (the module docstring)."""
    n = len(data)
    if not n:
        return None
    pos = ready = status = ends_ready = 0
    while pos < n:
        if n - pos < 5:
            return None
        msg_type = data[pos]
        length = _LEN(data, pos + 1)[0]
        if length < 4 or pos + 1 + length > n:
            return None
        ends_ready = ENDS_READY if msg_type == 0x5A else 0
        if msg_type == 0x5A:  # ReadyForQuery
            if length != 5:
                return None
            ready += 1
            status = data[pos + 5]
        elif msg_type == 0x45 or msg_type == 0x47:  # ErrorResponse, CopyInResponse
            return None
        pos += 1 + length
    return ready << READY_SHIFT | ends_ready | status


try:
    from _mlproxy_wire import client_chunk, server_chunk  # type: ignore[import-not-found]
    IMPLEMENTATION = "C"
except ImportError:  # not built (no compiler at install time): same results, slower
    client_chunk, server_chunk = py_client_chunk, py_server_chunk
    IMPLEMENTATION = "Python"
