"""RowDescription reading and rewriting for the streaming inference path.

The rewritten query returns the user's columns followed by the model arguments; the
client must see only the former, so the description of the appended columns is cut
off (and, where the caller says so, a kept column's format code is set to what the
client asked for). One message per query: plain Python is fine here.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ..protocol import B_ROW_DESCRIPTION, message

_FIELD_TAIL = struct.Struct("!IhIhih")  # table oid, attnum, type oid, typlen, typmod, format


@dataclass(frozen=True, slots=True)
class FieldDescription:
    """One column of a RowDescription, as the server sent it."""

    name: bytes
    table_oid: int
    column: int
    type_oid: int
    type_size: int
    typmod: int
    format: int

    def encode(self) -> bytes:
        return self.name + b"\x00" + _FIELD_TAIL.pack(
            self.table_oid, self.column, self.type_oid, self.type_size, self.typmod, self.format)


def parse_row_description(raw: bytes | bytearray | memoryview) -> list[FieldDescription]:
    """The fields of a RowDescription message (`raw` is header + body)."""
    data = bytes(raw)
    if not data or data[0] != B_ROW_DESCRIPTION:
        raise ValueError("not a RowDescription message")
    (count,) = struct.unpack_from("!h", data, 5)
    pos = 7
    fields = []
    for _ in range(count):
        end = data.index(b"\x00", pos)
        tail = _FIELD_TAIL.unpack_from(data, end + 1)
        fields.append(FieldDescription(data[pos:end], *tail))
        pos = end + 1 + _FIELD_TAIL.size
    if pos != len(data):
        raise ValueError("RowDescription length does not match its fields")
    return fields


def build_row_description(fields: Sequence[FieldDescription]) -> bytes:
    body = struct.pack("!h", len(fields)) + b"".join(f.encode() for f in fields)
    return message(b"T", body)


def rewrite_row_description(raw: bytes | bytearray | memoryview, keep_columns: int,
                            formats: Sequence[int] | None = None) -> bytes:
    """The RowDescription with only the first `keep_columns` fields; `formats`, when
    given, sets the format code of each kept field (one code for all, or one each)."""
    fields = parse_row_description(raw)
    if not 0 <= keep_columns <= len(fields):
        raise ValueError(f"keep_columns {keep_columns} out of range 0..{len(fields)}")
    kept = fields[:keep_columns]
    if formats is not None and len(formats) not in (0, 1, keep_columns):
        raise ValueError("formats must give 0, 1 or one code per kept column")
    if formats:
        codes = list(formats) * keep_columns if len(formats) == 1 else list(formats)
        kept = [replace(f, format=code) for f, code in zip(kept, codes)]
    return build_row_description(kept)
