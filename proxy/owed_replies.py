"""Replies owed to a client's unsynced extended-protocol messages, inside a takeover.

An interceptor that must send messages of its own while the client has sent
extended-protocol messages with no Sync yet first lets their replies reach the
client (the server holds them until a Flush or Sync, and they are owed before
anything the interceptor answers). `relay_owed` does that without a Sync of its own
(which would end the client's implicit transaction): a marker follows them, and what
comes before the marker's replies is the client's.
"""

from __future__ import annotations

import struct

from . import protocol as p
from .intercept import Takeover

_MARKER = b"__mlproxy_marker"
_MARKER_SQL = b"SELECT $1::int2vector, $2::oidvector, $3::tid, $4::cid"
_MARKER_TYPES = struct.pack("!h4I", 4, 22, 30, 27, 29)
FLUSH = p.message(b"H")


async def relay_owed(takeover: Takeover) -> bool:
    """Relay the replies owed to the client's messages sent before this takeover.
    False when the server skips to the client's Sync (one of them failed), so that
    anything mlproxy sent would be ignored.

    Which replies are still to come is not counted (some may have passed while the
    session relayed bytes untracked): a *marker* follows them, a scratch statement
    parsed and described, whose ParameterDescription no client statement has; the
    message just before it is the marker's own ParseComplete."""
    session = takeover.session
    if session.failed_since_sync:
        return False
    if not session.unsynced:
        return True
    takeover.send_server(p.message(b"P", _MARKER + b"\x00" + _MARKER_SQL + b"\x00\x00\x00")
                         + p.message(b"D", b"S" + _MARKER + b"\x00")
                         + p.message(b"C", b"S" + _MARKER + b"\x00") + FLUSH)
    held = None
    while True:
        msg = await takeover.server_message()
        if msg.type == p.B_PARAMETER_DESCRIPTION and bytes(msg.body) == _MARKER_TYPES:
            break  # `held` is the marker's ParseComplete
        if held is not None:
            session.relay_server_frames([held])
        if msg.type == p.B_ERROR:
            session.relay_server_frames([msg])
            await session.relayed()
            return False
        held = msg
    while (await takeover.server_message()).type != p.B_CLOSE_COMPLETE:
        pass  # the marker's RowDescription
    await session.relayed()  # what mlproxy writes next comes after them
    session.unsynced_kinds.clear()  # all answered: tracking started now owes nothing
    session.ends.pipeline_answered()  # (a CopyDone kept for an Execute there ended no COPY)
    rewrite = session.rewrite
    if rewrite is not None:
        return rewrite.answered()
    return True


async def skip_to_sync(takeover: Takeover) -> None:
    """Drop the client's messages up to its Sync (the server skips them too), then
    send the Sync on: its ReadyForQuery comes back through the relay. (A Terminate
    first goes on after the takeover: Postgres ends the session there.)"""
    sync = await takeover.skip_until_sync()
    if sync is not None:
        takeover.session.relay_frame(sync)
