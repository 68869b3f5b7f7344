"""GRANT and REVOKE of Redshift ML privileges (Redshift's grammar):

    GRANT { EXECUTE | ALL [ PRIVILEGES ] } ON MODEL m [, ...]
        TO { user [ WITH GRANT OPTION ] | ROLE r | GROUP g | PUBLIC } [, ...]
    REVOKE [ GRANT OPTION FOR ] { EXECUTE | ALL [ PRIVILEGES ] } ON MODEL m [, ...]
        FROM { user | ROLE r | GROUP g | PUBLIC } [, ...] [ RESTRICT | CASCADE ]
    GRANT CREATE MODEL TO { user [ WITH GRANT OPTION ] | ROLE r | GROUP g | PUBLIC } [, ...]
    REVOKE [ GRANT OPTION FOR ] CREATE MODEL FROM { ... } [, ...] [ RESTRICT | CASCADE ]

CASCADE is Postgres' (Redshift has only RESTRICT, the default of both). A user may
also be CURRENT_USER, CURRENT_ROLE or SESSION_USER, as in Postgres.

Only the statements above are ours: any other GRANT or REVOKE (on a table named
`model`, on schema `model`, of a role named `model`) returns None and goes to
Postgres unchanged, so the decision looks only at the words before the grantees.
"""

from __future__ import annotations

from proxy.errors import INVALID_GRANT_OPERATION, PgError

from .lexer import IDENT, PUNCT, QUOTED_IDENT, Token
from .reader import TokenReader
from .statements import Grantee, ModelName, ModelPrivileges

_ROLE_KEYWORDS = ("current_user", "current_role", "session_user")


def parse_model_privileges(reader: TokenReader) -> ModelPrivileges | None:
    """GRANT/REVOKE of a model privilege, or None if the statement is another GRANT
    or REVOKE. The reader stands before GRANT or REVOKE."""
    try:
        shape = _shape(reader)
    except PgError:
        return None  # not lexable as far as we look: not ours, Postgres will say why
    if shape is None:
        return None
    is_grant, grant_option_for, start, privileges, skip = shape
    if privileges is None:  # CREATE MODEL
        reader.take(skip)
        return _finish(reader, is_grant, grant_option_for, (), ())
    _check_privileges(reader, privileges, start)
    reader.take(skip)  # through ON MODEL
    models: list[ModelName] = []
    positions: list[int] = []
    while True:
        name, token = reader.qualified_name(ModelName, "a model name")
        models.append(name)
        positions.append(reader.position(token))
        if not reader.punct(","):
            break
    return _finish(reader, is_grant, grant_option_for, tuple(models), tuple(positions))


def _shape(reader: TokenReader) -> tuple[bool, bool, int, list[Token] | None, int] | None:
    """(is GRANT, GRANT OPTION FOR, tokens before the privileges, the privilege
    words or None for CREATE MODEL, tokens before the model names or the TO/FROM
    of CREATE MODEL), or None when the statement is not ours."""
    is_grant = reader.peek().is_keyword("grant")
    k = 1
    grant_option_for = False
    if not is_grant and reader.peek(1).is_keyword("grant") and reader.peek(2).is_keyword("option") \
            and reader.peek(3).is_keyword("for"):
        grant_option_for, k = True, 4
    if reader.peek(k).is_keyword("create") and reader.peek(k + 1).is_keyword("model"):
        return is_grant, grant_option_for, k, None, k + 2
    # the privilege words (word [, word ...]) up to ON: ours only if ON MODEL <name>
    privileges: list[Token] = []
    i = k
    while True:
        token = reader.peek(i)
        if token.kind == IDENT and not token.is_keyword("on"):
            privileges.append(token)
        elif not (token.kind == PUNCT and token.text == ","):
            break
        i += 1
    if not (reader.peek(i).is_keyword("on") and reader.peek(i + 1).is_keyword("model")):
        return None
    after = reader.peek(i + 2)
    if after.kind not in (IDENT, QUOTED_IDENT) or after.is_keyword("to") or after.is_keyword("from"):
        return None  # ON model TO ..., ON model, t ..., ON model.t ...: tables
    return is_grant, grant_option_for, k, privileges, i + 2


def _check_privileges(reader: TokenReader, words: list[Token], start: int) -> None:
    """EXECUTE, or ALL [PRIVILEGES]: the only privileges a model has."""
    texts = [w.text.lower() for w in words]
    if texts in (["execute"], ["all"], ["all", "privileges"]):
        return
    if not words:
        raise reader.error(reader.peek(start), "Expected EXECUTE or ALL [ PRIVILEGES ].")
    bad = next((w for w in words if w.text.lower() not in ("execute", "all", "privileges")), None)
    if bad is None:
        raise reader.error(words[-1], "Expected EXECUTE or ALL [ PRIVILEGES ].")
    raise PgError(INVALID_GRANT_OPERATION, f"invalid privilege type {bad.text.upper()} for model",
                  position=reader.position(bad), hint="A model has one privilege: EXECUTE (or ALL).")


def _finish(reader: TokenReader, is_grant: bool, grant_option_for: bool,
            models: tuple[ModelName, ...], positions: tuple[int, ...]) -> ModelPrivileges:
    word = "to" if is_grant else "from"
    reader.expect_keyword(word, f"Expected {word.upper()} and the roles.")
    grantees = [_grantee(reader, is_grant)]
    while reader.punct(","):
        grantees.append(_grantee(reader, is_grant))
    cascade = False
    if not is_grant:
        if reader.keyword("cascade"):
            cascade = True
        else:
            reader.keyword("restrict")
    reader.finish()
    return ModelPrivileges(is_grant, models, tuple(grantees), grant_option_for, cascade,
                           text=reader.sql, offset=reader.offset, model_positions=positions)


def _grantee(reader: TokenReader, is_grant: bool) -> Grantee:
    token = reader.peek()
    word = token.text.lower() if token.kind == IDENT else ""
    nxt = reader.peek(1)
    names_follow = nxt.kind == QUOTED_IDENT or (nxt.kind == IDENT and not nxt.is_keyword("with"))
    if word == "public":
        reader.take()
        grantee = Grantee("public")
    elif word in _ROLE_KEYWORDS:
        reader.take()
        grantee = Grantee(word)
    elif word in ("role", "group") and names_follow:
        reader.take()
        grantee = Grantee(word, reader.name_part(f"a {word} name"))
    else:
        grantee = Grantee("user", reader.name_part("a user, ROLE role, GROUP group or PUBLIC"))
    with_token = reader.peek()
    if is_grant and with_token.is_keyword("with") and reader.peek(1).is_keyword("grant"):
        reader.take(2)
        reader.expect_keyword("option", "Expected WITH GRANT OPTION.")
        if grantee.kind in ("public", "role", "group"):
            raise PgError(INVALID_GRANT_OPERATION,
                          "grant options can only be granted to users",
                          position=reader.position(with_token),
                          hint="WITH GRANT OPTION follows a user name, not ROLE, GROUP or PUBLIC.")
        grantee = Grantee(grantee.kind, grantee.name, True)
    return grantee
