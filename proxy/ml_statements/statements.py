"""The parsed ML statements: plain, immutable data for the proxy to act on.

Identifiers are stored as Postgres stores them (folded unless quoted, truncated to
63 bytes); type names in Postgres' canonical spelling (`integer`, `character
varying(20)`, `timestamp with time zone`).  Fields that only say *how* a statement
was written (its text, offset, clause positions) are excluded from equality, so two
spellings of the same statement compare equal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

from .literals import quote_identifier


@dataclass(frozen=True)
class QualifiedName:
    """An optionally schema-qualified object name."""

    schema: str | None
    name: str

    def __str__(self) -> str:
        """The name as SQL text, quoted where needed."""
        if self.schema is None:
            return quote_identifier(self.name)
        return f"{quote_identifier(self.schema)}.{quote_identifier(self.name)}"


@dataclass(frozen=True)
class ModelName(QualifiedName):
    """The name of a model (`[schema.]name`)."""


@dataclass(frozen=True)
class TableName(QualifiedName):
    """A training table or view named in `FROM table`."""


@dataclass(frozen=True)
class SourceQuery:
    """`FROM ( select )`: the query text exactly as written between the parentheses."""

    text: str


@dataclass(frozen=True)
class ModelLocation:
    """`FROM 'location'` of a model trained elsewhere (bring your own model): a path
    under the operator's import directory, or an object-store URL (`kind` "url")."""

    text: str
    kind: str  # "path" | "url"


@dataclass(frozen=True)
class ModelFunction:
    """The SQL function a model is called through.

    `arg_types` is None when the statement gives no argument list (the columns of
    the training data decide); `returns` is None without RETURNS.
    """

    name: QualifiedName
    arg_types: tuple[str, ...] | None
    returns: str | None


@dataclass(frozen=True)
class CreateModel:
    """CREATE MODEL.

    `options` is canonical (see options.build_options): keys `iam_role`, `auto`,
    `model_type`, `problem_type`, `objective`, `preprocessors`, `hyperparameters`,
    `settings`, always all present.  `positions` maps clause names ("name",
    "source", "target", "function", "settings", ...) to 1-based cursor positions in
    the client's full query string, for errors found later (unknown table, missing
    target column).
    """

    name: ModelName
    source: TableName | SourceQuery | ModelLocation
    target: str | None
    function: ModelFunction | None  # None only for MODEL_TYPE FORECAST
    options: dict[str, Any]
    text: str = field(compare=False, repr=False)
    offset: int = field(default=0, compare=False, repr=False)
    positions: dict[str, int] = field(default_factory=dict, compare=False, repr=False)
    # bring your own model: import the model FROM a location or a query's bytea,
    # rather than train one (create_model.py says how the two are told apart)
    imported: bool = False


@dataclass(frozen=True)
class CreateRemoteModel:
    """CREATE MODEL ... FUNCTION f (types) RETURNS type SAGEMAKER 'endpoint'[:'model']:
    a model served by an inference endpoint (BYOM remote inference).

    `endpoint` is the name the operator maps to a URL (or a URL, if the operator
    allows them); `target_model` the model of a multi-model endpoint. `options`:
    `iam_role` (accepted, ignored), `settings` (`max_batch_rows`, and Redshift's
    S3/KMS/tag settings, accepted and ignored), `given` (the clauses as written).
    """

    name: ModelName
    function: ModelFunction  # arg_types and returns always given
    endpoint: str
    target_model: str | None
    options: dict[str, Any]
    text: str = field(compare=False, repr=False)
    offset: int = field(default=0, compare=False, repr=False)
    positions: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    target = None  # (no target column: what create_model's shared checks read)


@dataclass(frozen=True)
class ShowModel:
    """SHOW MODEL name, or SHOW MODEL ALL (`name` is None)."""

    name: ModelName | None
    text: str = field(compare=False, repr=False)
    offset: int = field(default=0, compare=False, repr=False)

    @property
    def is_all(self) -> bool:
        return self.name is None


@dataclass(frozen=True)
class DropModel:
    """DROP MODEL [IF EXISTS] name."""

    name: ModelName
    if_exists: bool
    text: str = field(compare=False, repr=False)
    offset: int = field(default=0, compare=False, repr=False)




# Grantee kinds: a named role (Redshift's user, ROLE r or GROUP g: all roles in
# Postgres), PUBLIC, or one of Postgres' role keywords.
GRANTEE_KINDS = ("user", "role", "group", "public", "current_user", "current_role", "session_user")


@dataclass(frozen=True)
class Grantee:
    """One entry of a GRANT ... TO / REVOKE ... FROM list."""

    kind: str
    name: str | None = None
    grant_option: bool = False


@dataclass(frozen=True)
class ModelPrivileges:
    """GRANT/REVOKE { EXECUTE | ALL [PRIVILEGES] } ON MODEL m [, ...], or (no
    `models`) GRANT/REVOKE CREATE MODEL.

    `grant_option_for` is REVOKE GRANT OPTION FOR; `cascade` is REVOKE ... CASCADE
    (Postgres' own; Redshift has only the default, RESTRICT). `model_positions` are
    the client cursors of the model names, for errors about one of them.
    """

    is_grant: bool
    models: tuple[ModelName, ...]
    grantees: tuple[Grantee, ...]
    grant_option_for: bool = False
    cascade: bool = False
    text: str = field(default="", compare=False, repr=False)
    offset: int = field(default=0, compare=False, repr=False)
    model_positions: tuple[int, ...] = field(default=(), compare=False, repr=False)

    @property
    def is_create_model(self) -> bool:
        return not self.models

    @property
    def tag(self) -> str:
        return "GRANT" if self.is_grant else "REVOKE"


MLStatement = Union[CreateModel, CreateRemoteModel, ShowModel, DropModel, ModelPrivileges]
