"""GRANT / REVOKE ... ON MODEL and GRANT / REVOKE CREATE MODEL, on the client's session.

A model's privilege is EXECUTE on every one of its functions (the prediction
function, its probability functions and `<function>_explain`, as
`mlproxy.model_functions` lists them), so GRANT EXECUTE ON MODEL m TO r becomes
GRANT EXECUTE ON FUNCTION of all of them, in one statement; CREATE MODEL is EXECUTE
on `mlproxy.create_model_privilege()` (see proxy/catalog/schema.py). Both run as
the client, so Postgres decides whether the grantor may grant (owner, superuser or
a holder of the grant option) exactly as for any function.

Redshift gives WITH GRANT OPTION per user; Postgres per statement. Grantees with
and without it become two statements sent in one Query, which Postgres runs as one
implicit transaction (or inside the client's own transaction block): all or none.
Names are quoted identifiers; signatures are the catalog's canonical text, which
only the service identity writes.
"""

from __future__ import annotations

from .. import protocol as p
from ..intercept import Takeover
from ..ml_statements import Grantee, ModelPrivileges
from ..ml_statements.literals import quote_identifier
from .upstream_ops import collect, sql_literal

CREATE_MODEL_FUNCTION = "mlproxy.create_model_privilege()"
_KEYWORDS = {"public": "PUBLIC", "current_user": "CURRENT_USER", "current_role": "CURRENT_ROLE",
             "session_user": "SESSION_USER"}


def grantee_sql(grantee: Grantee) -> str:
    """A grantee as Postgres reads it (ROLE r and GROUP g are roles named r, g)."""
    keyword = _KEYWORDS.get(grantee.kind)
    if keyword is not None:
        return keyword
    assert grantee.name is not None
    return quote_identifier(grantee.name)


def privilege_statements(stmt: ModelPrivileges, functions: list[str]) -> list[str]:
    """The GRANT or REVOKE statement(s) for `stmt` on `functions` (signatures)."""
    targets = ", ".join(functions)
    if not stmt.is_grant:
        option = "GRANT OPTION FOR " if stmt.grant_option_for else ""
        behaviour = " CASCADE" if stmt.cascade else ""
        roles = ", ".join(dict.fromkeys(grantee_sql(g) for g in stmt.grantees))
        return [f"REVOKE {option}EXECUTE ON FUNCTION {targets} FROM {roles}{behaviour}"]
    statements = []
    for with_option in (False, True):
        roles = ", ".join(dict.fromkeys(grantee_sql(g) for g in stmt.grantees
                                        if g.grant_option == with_option))
        if roles:
            tail = " WITH GRANT OPTION" if with_option else ""
            statements.append(f"GRANT EXECUTE ON FUNCTION {targets} TO {roles}{tail}")
    return statements


async def model_privileges(takeover: Takeover, stmt: ModelPrivileges) -> bool:
    """Carry out the statement; False after reporting an error to the client."""
    if stmt.is_create_model:
        functions = [CREATE_MODEL_FUNCTION]
    else:
        functions = []
        for model, position in zip(stmt.models, stmt.model_positions or (None,) * len(stmt.models)):
            # looked up on the client's session: its search_path, and only a model
            # the client may see (row-level security)
            found = await collect(takeover, "SELECT unnest(mlproxy.model_functions("
                                  f"{sql_literal(model.schema)}, {sql_literal(model.name)}))")
            if not _relay(takeover, found, position):
                return False
            functions += [row[0] for row in found.rows if row[0] not in functions]
    result = await collect(takeover, privilege_statements(stmt, functions))
    if not _relay(takeover, result, None):
        return False
    takeover.send_client(p.command_complete(stmt.tag))
    return True


def _relay(takeover: Takeover, result, position: int | None) -> bool:
    for notice in result.notices:
        takeover.send_client(notice)
    if result.error is None:
        return True
    result.error.position = position
    result.error.fields.pop("W", None)  # the PL/pgSQL lines of mlproxy's own functions
    takeover.send_client(p.error_response(result.error))
    return False
