"""What a client sees, normalised, and how the proxy's view differs from Postgres'.

A transcript is the messages a session got after login, and how it ended: `closed`
(the server closed the socket) or `open` (silence with the socket open). Legitimate
differences are normalised away: ParameterStatus and BackendKeyData (the proxy
reports its own set), error fields other than severity, code and message, the
table OIDs of row descriptions (the two sides work in two databases), and, for
`model_*` seeds, the values of rows (Postgres' stand-in function is not the
model). For `ml_*` seeds (statements Postgres cannot run: SHOW/CREATE/DROP MODEL)
only the protocol's shape is compared: the ReadyForQuery messages (a failed block
the same as one going on), the protocol errors (08P01) and how the session ends.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from proxy import protocol as p

# The classes of a difference, in the order the summary prints them.
CLASSES = (
    "crash",                    # the proxy process died
    "hang",                     # Postgres replied or closed; the proxy stays silent, socket open
    "silent close",             # the proxy closes without the error Postgres sends
    "closes where Postgres continues",
    "internal error (XX000)",   # the proxy answers XX000 where Postgres does not
    "different error",          # both error, different SQLSTATE or protocol-error text
    "error where Postgres succeeds",
    "no error where Postgres errs",
    "missing messages",         # the proxy sends fewer messages (and then closes)
    "extra messages",           # the proxy sends more: it ran something Postgres did not
    "different messages",
    "no login",                 # the proxy refused or dropped a new session
)


@dataclass
class Transcript:
    messages: list[tuple[bytes, bytes]] = field(default_factory=list)
    end: str = "closed"  # "closed" | "open"
    trailing: bytes = b""  # bytes that did not make a whole message

    def summary(self, limit: int = 12) -> str:
        parts = []
        for t, body in self.messages[:limit]:
            if t in (b"E", b"N"):
                f = p.parse_fields(body)
                parts.append(f"{t.decode()}({f.get('C')} {f.get('M', '')[:60]!r})")
            elif t == b"Z":
                parts.append(f"Z{body.decode(errors='replace')}")
            else:
                parts.append(t.decode(errors="replace"))
        more = f" +{len(self.messages) - limit}" if len(self.messages) > limit else ""
        return " ".join(parts) + more + f" [{self.end}]"


def parse_transcript(data: bytes, end: str) -> Transcript:
    out, pos = [], 0
    while pos + 5 <= len(data):
        length = struct.unpack_from("!I", data, pos + 1)[0]
        if pos + 1 + length > len(data):
            break
        out.append((data[pos:pos + 1], data[pos + 5:pos + 1 + length]))
        pos += 1 + length
    return Transcript(out, end, data[pos:])


def _error_key(t: bytes, body: bytes) -> tuple:
    """Severity and SQLSTATE; the message too for protocol errors (08P01), whose
    text is Postgres' own and which clients show as is."""
    f = p.parse_fields(body)
    code = f.get("C")
    return (t, f.get("V") or f.get("S"), code, f.get("M") if code == "08P01" else None)


def _row_description(body: bytes) -> bytes:
    """The body with every field's table OID zeroed."""
    out = bytearray(body)
    try:
        (n,), pos = struct.unpack_from("!h", body), 2
        for _ in range(n):
            pos = body.index(b"\x00", pos) + 1
            struct.pack_into("!I", out, pos, 0)
            pos += 18
    except (struct.error, ValueError):
        return body
    return bytes(out)


def normalise(transcript: Transcript, kind: str) -> list[tuple]:
    out: list[tuple] = []
    for t, body in transcript.messages:
        if t in (b"S", b"K"):
            continue
        if kind == "ml":
            if t == b"Z":
                # in a block either way: an ML statement fails on Postgres (it has no
                # such statement), and so fails the block, where the proxy runs it
                out.append((t, b"T" if body == b"E" else body))
            elif t == b"E" and p.parse_fields(body).get("C") == "08P01":
                out.append(_error_key(t, body))
            continue
        if t in (b"E", b"N"):
            key = _error_key(t, body)
            if key[2] == "XX000" and b"tuple concurrently updated" in body:
                # cases run side by side GRANT on one table: Postgres' own race
                out.append((b"C", b"GRANT\x00"))
                continue
            out.append(key)
        elif t == b"T":
            out.append((t, _row_description(body)))
        elif t == b"D" and kind == "model":
            out.append((t, body[:2]))
        else:
            out.append((t, body))
    return out


def seed_kind(seed_name: str) -> str:
    return seed_name.split("_", 1)[0] if seed_name.startswith(("model_", "ml_")) else "plain"


def _length_fatal(message: tuple) -> bool:
    return (message[:3] == (b"E", "FATAL", "08P01")
            and (message[3] or "").startswith("invalid message length"))


def classify(pg: Transcript, px: Transcript, kind: str) -> str | None:
    """The class of the difference between Postgres' and the proxy's transcript, or None."""
    a, b = normalise(pg, kind), normalise(px, kind)
    # A length field Postgres will not read ends its session silently (a COMMERROR,
    # logged on the server only); the proxy says why before it closes. Accepted.
    if pg.end == px.end == "closed" and b and _length_fatal(b[-1]) and not (a and _length_fatal(a[-1])):
        b = b[:-1]
    if a == b:
        if pg.end == px.end:
            return None
        return "hang" if px.end == "open" else "closes where Postgres continues"
    i = next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    if i == len(b):  # the proxy's messages are a prefix of Postgres'
        if px.end == "open":
            return "hang"
        if any(m[0] == b"E" for m in a[i:]):
            return "silent close"
        return "missing messages"
    if i == len(a):
        # Postgres holds extended-protocol replies until Sync or Flush; the proxy's
        # streaming path sends a model call's rows as they are predicted. Replies the
        # client would have got at its next Sync (no ReadyForQuery, no error) are fine.
        if not any(m[0] in (b"Z", b"E") for m in b[i:]):
            return None if pg.end == px.end else "extra messages"
        return "extra messages"
    x, y = a[i], b[i]
    if y[0] == b"E" and y[2] == "XX000" and x[:1] != (b"E",) or (
            y[0] == b"E" and x[0] == b"E" and y[2] == "XX000" != x[2]):
        return "internal error (XX000)"
    if x[0] == b"E" and y[0] == b"E":
        return "different error"
    if y[0] == b"E":
        return "error where Postgres succeeds"
    if x[0] == b"E":
        return "no error where Postgres errs"
    return "different messages"
