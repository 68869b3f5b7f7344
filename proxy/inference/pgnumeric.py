"""numeric values from float predictions, as Postgres' own float8::numeric gives them.

Postgres converts a float8 to numeric through its text with 15 significant digits
(`%.15g`, DBL_DIG) read back by numeric_in, so 0.1 becomes 0.1 and not
0.1000000000000000055...; doing the same here makes `fn(...)` RETURNS numeric agree
with `fn(...)::float8::numeric` computed by the server. This is per-value Python
(Decimal does the exact decimal arithmetic); numeric results are the rare case.
"""

from __future__ import annotations

import math
import struct
from decimal import Decimal

_NAN, _PINF, _NINF, _NEG = 0xC000, 0xD000, 0xF000, 0x4000
_HEAD = struct.Struct("!hhHh")
# numeric_send of an infinity reports dscale 32: Postgres reads it out of the
# special value's header bits. Clients ignore it; matching it keeps bytes identical.
_INF_DSCALE = 32


def _decimal(value: float) -> Decimal:
    return Decimal("%.15g" % value)


def numeric_text(value: float) -> str:
    """numeric_out of float8_numeric(value)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    text = format(_decimal(value), "f")
    return text[1:] if text.startswith("-") and not text.strip("-0.") else text


def numeric_binary(value: float) -> bytes:
    """numeric_send of float8_numeric(value): ndigits, weight, sign, dscale, then
    base-10000 digits with leading and trailing zero groups stripped."""
    if math.isnan(value):
        return _HEAD.pack(0, 0, _NAN, 0)
    if math.isinf(value):
        return _HEAD.pack(0, 0, _PINF if value > 0 else _NINF, _INF_DSCALE)
    sign, digits, exp = _decimal(value).as_tuple()
    dscale = max(0, -exp)
    frac_groups = -(-dscale // 4)
    scaled = int("".join(map(str, digits))) * 10 ** (exp + 4 * frac_groups)
    if scaled == 0:
        return _HEAD.pack(0, 0, 0, dscale)
    groups = []
    while scaled:
        scaled, group = divmod(scaled, 10000)
        groups.append(group)
    groups.reverse()
    weight = len(groups) - 1 - frac_groups
    while groups[-1] == 0:
        groups.pop()
    head = _HEAD.pack(len(groups), weight, _NEG if sign else 0, dscale)
    return head + struct.pack(f"!{len(groups)}h", *groups)
