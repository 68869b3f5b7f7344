"""`explain_model('name')`: Redshift's function for a model's feature importances.

It exists upstream as `mlproxy.explain_model(text)` (catalog migration 2); users
write it unqualified, as in Redshift, so the proxy qualifies the calls it finds.
Only identifier tokens followed by "(" and not preceded by "." are calls: text in
strings, comments and qualified names of other schemas is left alone.
"""

from __future__ import annotations

from pglast.parser import ParseError, scan

_NAME = "explain_model"
_PREFIX = "mlproxy."


def qualify_explain_model(sql: str) -> tuple[str, list[int]] | None:
    """The statement with `explain_model(` calls qualified, and the offsets (in the
    original text) where the schema was inserted; None if there is no such call."""
    try:
        tokens = scan(sql)
    except ParseError:
        return None
    inserted: list[int] = []
    for i, token in enumerate(tokens):
        if token.name != "IDENT" or sql[token.start:token.end + 1].lower() != _NAME:
            continue
        follows_dot = i > 0 and tokens[i - 1].name == "ASCII_46"
        called = i + 1 < len(tokens) and tokens[i + 1].name == "ASCII_40"
        if called and not follows_dot:
            inserted.append(token.start)
    if not inserted:
        return None
    out, last = [], 0
    for offset in inserted:
        out.append(sql[last:offset])
        out.append(_PREFIX)
        last = offset
    out.append(sql[last:])
    return "".join(out), inserted


def original_position(position: int, inserted: list[int]) -> int:
    """Map a 1-based position in the qualified text back to the client's text."""
    shift = 0
    for offset in inserted:
        if position - 1 - shift - len(_PREFIX) >= offset:
            shift += len(_PREFIX)
    return position - shift
