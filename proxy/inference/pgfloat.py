"""float4/float8 text exactly as Postgres (12+, extra_float_digits = 1) prints it.

Postgres prints the shortest digits that read back to the same value (Ryu), in fixed
notation when the decimal exponent E of the first digit is in [-4, 15) for float8 or
[-4, 6) for float4, else as d.ddde[+-]XX with at least two exponent digits; plus
'NaN', 'Infinity', '-Infinity' and '-0'.

Arrow's float-to-string cast prints the same shortest digits, and in the same fixed
notation when E is in [-4, 9) (it switches to exponents at other thresholds). So
every value in that band -- nearly all model outputs -- is formatted by one Arrow
cast; only the rare others (tiny or huge magnitudes, NaN, infinities) go through a
per-value Python formatter and are put in place with one `replace_with_mask`.
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .strings import payload_of

# Postgres' fixed-notation upper bound on the decimal exponent, by float width.
_FIXED_BELOW = {64: 15, 32: 6}
# |x| in [1e-4, 1e9) has E in [-4, 8] (the decimal 1e-4 and 1e9 are each inside
# their own double's rounding interval, so nothing on the inside can print as them).
_ARROW_SAFE = (1e-4, 1e9)
# Below these magnitudes no decimal short enough to be a shortest repr can be the
# midpoint between two neighbouring floats (see _strictly_inside).
_BOUNDARY_FROM = {64: 2.0**52, 32: 2.0**22}


def _layout(sign: str, digits: str, exp: int, fixed_below: int) -> str:
    """Postgres' layout of shortest `digits` with decimal exponent `exp`."""
    if -4 <= exp < fixed_below:
        if exp < 0:
            return f"{sign}0.{'0' * (-exp - 1)}{digits}"
        if len(digits) <= exp + 1:
            return sign + digits + "0" * (exp + 1 - len(digits))
        return f"{sign}{digits[:exp + 1]}.{digits[exp + 1:]}"
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{sign}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"


def _strictly_inside(scalar: np.floating, shortest: str) -> str:
    """Postgres' Ryu never picks a decimal lying exactly on the boundary of the
    value's rounding interval (a midpoint to a neighbour), which round-half-even
    readers like numpy's and Python's do accept; there, take the shortest correctly
    rounded decimal that is strictly inside. Only magnitudes from _BOUNDARY_FROM
    up have midpoints that short, and those never come from the Arrow band."""
    exact = Decimal(float(scalar))
    with np.errstate(over="ignore"):  # the largest finite value's neighbour is inf
        lower, upper = (np.nextafter(scalar, direction, dtype=scalar.dtype)
                        for direction in (-np.inf, np.inf))
    below = (exact - Decimal(float(lower))) / 2
    above = (Decimal(float(upper)) - exact) / 2

    def inside(text: str) -> bool:
        return -below < Decimal(text) - exact < above

    if inside(shortest):
        return shortest
    digits = len(shortest.partition("e")[0].lstrip("-").replace(".", ""))
    for precision in range(digits + 1, 18):
        candidate = f"{float(scalar):.{precision - 1}e}"
        if inside(candidate):
            return candidate
    return f"{float(scalar):.16e}"


def _to_scientific(fixed: str) -> str:
    """'-123.45' or '0.00012' (Python's repr in fixed notation) as d.ddde+X."""
    sign = "-" if fixed.startswith("-") else ""
    whole, _, frac = fixed.lstrip("-").partition(".")
    digits = (whole + frac).lstrip("0")
    exp = len(whole) - 1 if whole != "0" else -(len(frac) - len(frac.lstrip("0")) + 1)
    digits = digits.rstrip("0") or "0"
    return f"{sign}{digits[0]}{'.' + digits[1:] if len(digits) > 1 else ''}e{exp:+d}"


def pg_float_text(value: float, bits: int = 64) -> str:
    """One value as Postgres prints a float8 (bits=64) or float4 (bits=32)."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "-0" if np.signbit(value) else "0"
    if bits == 64:
        text = repr(value)
        if "e" not in text:  # repr's fixed notation
            text = _to_scientific(text)
        scalar: np.floating = np.float64(value)
    else:
        scalar = np.float32(value)
        text = np.format_float_scientific(scalar, unique=True, trim="-")
    if abs(value) >= _BOUNDARY_FROM[bits]:
        text = _strictly_inside(scalar, text)
    mantissa, _, exp_text = text.partition("e")
    sign = "-" if mantissa.startswith("-") else ""
    digits = mantissa.lstrip("-").replace(".", "")
    return _layout(sign, digits, int(exp_text), _FIXED_BELOW[bits])


def float_texts(values: np.ndarray, bits: int = 64) -> tuple[np.ndarray, bytes]:
    """Sizes and concatenated Postgres texts of every value (no NULLs here)."""
    typed = np.asarray(values, dtype=np.float64 if bits == 64 else np.float32)
    sizes, payload = payload_of(pc.cast(pa.array(typed), pa.string()))
    magnitude = np.abs(typed)
    low = typed.dtype.type(_ARROW_SAFE[0])
    high = typed.dtype.type(min(_ARROW_SAFE[1], 10.0 ** _FIXED_BELOW[bits]))
    odd = np.flatnonzero(~(((magnitude >= low) & (magnitude < high)) | (typed == 0)))
    if not len(odd):
        return sizes, payload
    # Put the few re-formatted values in place: O(odd values) slices, one join.
    ends = np.cumsum(sizes)
    fixed = [pg_float_text(v, bits).encode() for v in typed[odd].tolist()]
    view = memoryview(payload)
    parts, prev = [], 0
    for i, text in zip(odd.tolist(), fixed):
        parts += (view[prev:ends[i] - sizes[i]], text)
        prev = ends[i]
    parts.append(view[prev:])
    sizes[odd] = [len(text) for text in fixed]
    return sizes, b"".join(parts)
