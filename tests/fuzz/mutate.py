"""Malformed variants of a recorded session, deterministic from (seed, case).

A seed is a client's byte stream after its startup packet: v3 messages, each a type
byte, a length that counts itself, and a body. Mutations know that framing (cut a
message, lose or add a string's NUL, move a length, make a count huge or negative,
change a type, splice a message from another seed, put garbage between messages,
cut the stream), one gives a Bind a parameter value its type may refuse (the
message well formed), and a few are blind byte flips. A case also says how the bytes are
split into writes. `mutate(seed, seeds, rng)` returns a Case; the same rng seed
always gives the same case.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field

FRONTEND_TYPES = b"BCdcfDEHFPpQSX"
INTERESTING_I16 = (0, 1, -1, 2, 5, 0x7FFF, -0x8000, 0x100, -2)
INTERESTING_I32 = (0, -1, -2, 1, 3, 4, 5, 0x7FFFFFFF, -0x80000000, 0x10000, 0x40000000)


@dataclass
class Message:
    type: int
    body: bytes

    def encode(self) -> bytes:
        return bytes([self.type]) + struct.pack("!I", len(self.body) + 4) + self.body


@dataclass
class Case:
    data: bytes
    writes: list[int] = field(default_factory=list)  # offsets where a new write starts
    steps: list[str] = field(default_factory=list)   # what was done, for the reader
    spliced: list[str] = field(default_factory=list)  # the seeds messages were taken from

    def chunks(self) -> list[bytes]:
        cuts = [0, *sorted(set(o for o in self.writes if 0 < o < len(self.data))), len(self.data)]
        return [self.data[a:b] for a, b in zip(cuts, cuts[1:]) if b > a]


def split_messages(data: bytes) -> tuple[list[Message], bytes]:
    """The stream's well-formed messages and whatever trails them."""
    out, pos = [], 0
    while pos + 5 <= len(data):
        length = struct.unpack_from("!I", data, pos + 1)[0]
        if length < 4 or pos + 1 + length > len(data):
            break
        out.append(Message(data[pos], data[pos + 5:pos + 1 + length]))
        pos += 1 + length
    return out, data[pos:]


def _cstr_end(body: bytes, pos: int) -> int:
    end = body.find(b"\x00", pos)
    return len(body) if end < 0 else end + 1


def count_fields(msg: Message) -> list[tuple[int, str]]:
    """(offset, 'h'|'i') of the counts and lengths a message's body holds."""
    body, t = msg.body, bytes([msg.type])
    out: list[tuple[int, str]] = []
    try:
        if t == b"B":
            pos = _cstr_end(body, _cstr_end(body, 0))
            n = struct.unpack_from("!h", body, pos)[0]
            out.append((pos, "h"))
            pos += 2 + 2 * max(n, 0)
            n = struct.unpack_from("!h", body, pos)[0]
            out.append((pos, "h"))
            pos += 2
            for _ in range(max(n, 0)):
                size = struct.unpack_from("!i", body, pos)[0]
                out.append((pos, "i"))
                pos += 4 + max(size, 0)
            out.append((pos, "h"))
        elif t == b"P":
            pos = _cstr_end(body, _cstr_end(body, 0))
            out.append((pos, "h"))
        elif t == b"E":
            out.append((_cstr_end(body, 0), "i"))
        elif t == b"F":
            out.append((4, "h"))
        elif t in b"dc" and len(body) >= 2:
            out.append((0, "h"))
    except struct.error:
        pass
    return [(o, k) for o, k in out if o + (2 if k == "h" else 4) <= len(body)]


# -- the mutations: each takes (messages, rng, others) and returns a label ---------
def m_truncate(msgs, rng, others):
    i = rng.randrange(len(msgs))
    if not msgs[i].body:
        return None
    cut = rng.randrange(len(msgs[i].body))
    msgs[i].body = msgs[i].body[:cut]
    return f"truncate #{i} {chr(msgs[i].type)} body to {cut}"


def m_drop_nul(msgs, rng, others):
    candidates = [(i, j) for i, m in enumerate(msgs) for j, b in enumerate(m.body) if b == 0]
    if not candidates:
        return None
    i, j = rng.choice(candidates)
    msgs[i].body = msgs[i].body[:j] + msgs[i].body[j + 1:]
    return f"drop NUL at {j} of #{i} {chr(msgs[i].type)}"


def m_add_nul(msgs, rng, others):
    i = rng.randrange(len(msgs))
    j = rng.randrange(len(msgs[i].body) + 1)
    msgs[i].body = msgs[i].body[:j] + b"\x00" + msgs[i].body[j:]
    return f"insert NUL at {j} of #{i} {chr(msgs[i].type)}"


def m_count(msgs, rng, others):
    candidates = [(i, o, k) for i, m in enumerate(msgs) for o, k in count_fields(m)]
    if not candidates:
        return None
    i, o, k = rng.choice(candidates)
    body = bytearray(msgs[i].body)
    if k == "h":
        old = struct.unpack_from("!h", body, o)[0]
        new = rng.choice(INTERESTING_I16 + (old + 1, old - 1))
        new = max(-0x8000, min(0x7FFF, new))
    else:
        old = struct.unpack_from("!i", body, o)[0]
        new = rng.choice(INTERESTING_I32 + (old + 1, old - 1))
        new = max(-0x80000000, min(0x7FFFFFFF, new))
    struct.pack_into("!" + k, body, o, new)
    msgs[i].body = bytes(body)
    return f"count at {o} of #{i} {chr(msgs[i].type)}: {old} -> {new}"


def m_type(msgs, rng, others):
    i = rng.randrange(len(msgs))
    old = msgs[i].type
    msgs[i].type = rng.choice(FRONTEND_TYPES) if rng.random() < 0.8 else rng.randrange(256)
    return f"type of #{i} {chr(old)} -> {msgs[i].type:#04x}"


def m_splice(msgs, rng, others):
    name, donor = rng.choice(others)
    if not donor:
        return None
    msg = rng.choice(donor)
    i = rng.randrange(len(msgs) + 1)
    msgs.insert(i, Message(msg.type, msg.body))
    return f"splice {chr(msg.type)} {msg.body[:30]!r} at #{i} from seed {name}"


def m_dup(msgs, rng, others):
    i = rng.randrange(len(msgs))
    msgs.insert(i, Message(msgs[i].type, msgs[i].body))
    return f"duplicate #{i} {chr(msgs[i].type)}"


def m_delete(msgs, rng, others):
    if len(msgs) < 2:
        return None
    i = rng.randrange(len(msgs))
    gone = msgs.pop(i)
    return f"delete #{i} {chr(gone.type)}"


def m_flip(msgs, rng, others):
    i = rng.randrange(len(msgs))
    if not msgs[i].body:
        return None
    body = bytearray(msgs[i].body)
    j = rng.randrange(len(body))
    body[j] ^= 1 << rng.randrange(8) if rng.random() < 0.7 else rng.randrange(1, 256)
    msgs[i].body = bytes(body)
    return f"flip byte {j} of #{i} {chr(msgs[i].type)}"


# Parameter values Postgres may refuse for their type, in text or in binary (where
# most are the wrong size): the message stays well formed, the value does not.
ODD_VALUES = (b"abc", b"", b"\xff\xfe", b"1e999", b"99999999999999999999", b"NaN", b"-", b" 7 ",
              b"1.5", b"\x00", b"\x00\x00\x00\x00\x00\x00\x00\x01")


def _bind_value_spans(body: bytes) -> list[tuple[int, int]]:
    """(start, end) of each non-NULL parameter value in a Bind's body."""
    spans: list[tuple[int, int]] = []
    try:
        pos = _cstr_end(body, _cstr_end(body, 0))
        n = struct.unpack_from("!h", body, pos)[0]
        pos += 2 + 2 * max(n, 0)
        n = struct.unpack_from("!h", body, pos)[0]
        pos += 2
        for _ in range(max(n, 0)):
            size = struct.unpack_from("!i", body, pos)[0]
            pos += 4
            if size >= 0:
                if pos + size > len(body):
                    break
                spans.append((pos, pos + size))
                pos += size
    except struct.error:
        pass
    return spans


def m_value(msgs, rng, others):
    candidates = [(i, span) for i, m in enumerate(msgs) if m.type == ord("B")
                  for span in _bind_value_spans(m.body)]
    if not candidates:
        return None
    i, (start, end) = rng.choice(candidates)
    body, new = msgs[i].body, rng.choice(ODD_VALUES)
    msgs[i].body = body[:start - 4] + struct.pack("!i", len(new)) + new + body[end:]
    return f"value {body[start:end][:20]!r} -> {new!r} in #{i} B"


MESSAGE_MUTATIONS = [(m_truncate, 3), (m_drop_nul, 4), (m_add_nul, 2), (m_count, 5),
                     (m_type, 2), (m_splice, 2), (m_dup, 1), (m_delete, 1), (m_flip, 3),
                     (m_value, 3)]


# -- mutations of the encoded stream -------------------------------------------------
def _offsets(msgs: list[Message]) -> list[int]:
    out, pos = [], 0
    for m in msgs:
        out.append(pos)
        pos += 5 + len(m.body)
    return out


def s_length(data: bytes, msgs, rng) -> tuple[bytes, str] | None:
    """A length field moved without changing the body."""
    i = rng.randrange(len(msgs))
    at = _offsets(msgs)[i] + 1
    old = struct.unpack_from("!I", data, at)[0]
    new = rng.choice([old + 1, old - 1, old + rng.randrange(2, 40), max(0, old - rng.randrange(2, 40)),
                      0, 3, 4, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 1 << 20, 1 << 30 | 5])
    out = bytearray(data)
    struct.pack_into("!I", out, at, new & 0xFFFFFFFF)
    return bytes(out), f"length of #{i} {chr(msgs[i].type)}: {old} -> {new}"


def s_garbage(data: bytes, msgs, rng) -> tuple[bytes, str] | None:
    offsets = _offsets(msgs) + [len(data)]
    at = rng.choice(offsets)
    junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 12)))
    return data[:at] + junk + data[at:], f"garbage {junk!r} at {at}"


def s_cut(data: bytes, msgs, rng) -> tuple[bytes, str] | None:
    at = rng.randrange(len(data))
    return data[:at], f"cut stream at {at}"


STREAM_MUTATIONS = [(s_length, 3), (s_garbage, 2), (s_cut, 1)]


def _pick(rng: random.Random, table):
    return rng.choices([f for f, _ in table], weights=[w for _, w in table])[0]


def mutate(seed: bytes, donors: list[tuple[str, list[Message]]], rng: random.Random) -> Case:
    """One malformed variant of `seed` (1-3 mutations, then how it is written).
    `donors` are (seed name, messages) that splices take messages from."""
    msgs, tail = split_messages(seed)
    steps: list[str] = []
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3))):
        if msgs and rng.random() < 0.7:
            label = _pick(rng, MESSAGE_MUTATIONS)(msgs, rng, donors)
            if label:
                steps.append(label)
    data = b"".join(m.encode() for m in msgs) + tail
    if msgs and (not steps or rng.random() < 0.35):
        result = _pick(rng, STREAM_MUTATIONS)(data, msgs, rng)
        if result:
            data, label = result
            steps.append(label)
    writes: list[int] = []
    if rng.random() < 0.4 and data:
        writes = sorted(rng.randrange(1, len(data) + 1) for _ in range(rng.randrange(1, 4)))
        steps.append(f"writes split at {writes}")
    spliced = sorted({step.rsplit(" from seed ", 1)[1] for step in steps
                      if step.startswith("splice ")})
    return Case(data, writes, steps, spliced)
