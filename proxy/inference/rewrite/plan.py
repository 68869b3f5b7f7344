"""What plan_query hands the session: everything needed to run a statement with
model calls, so the session never parses SQL itself.

Three shapes:

- StreamingPlan: run `sql`; the result has the client's columns (model calls as
  NULL placeholders of the right type) followed by the calls' argument columns;
  predict per batch, put predictions into the placeholders, drop the extra columns.
- GeneralPlan: for each step in order, run `input` (DISTINCT argument tuples),
  predict, load (arguments, prediction) into the step's temporary table; then run
  `sql`, whose calls read those tables; drop the tables afterwards (also on error).
  Every row that reaches the result finds its prediction only if the input
  queries and `sql` see the same data: when the client has no transaction open,
  run everything in one REPEATABLE READ transaction (which also keeps now() and
  friends equal in every pass); inside a client's READ COMMITTED transaction, rows
  committed by others in between get NULL from their lookups.
- ExplainPlan: EXPLAIN of either; `sql` is the EXPLAIN of the rewritten statement.

Positions: Postgres reports error positions in the text it ran; map them back with
`plan.map_position(position, which)`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .functions import ModelFunction
from .text import SqlText


@dataclass(frozen=True)
class ArgColumn:
    """One argument of a call as the proxy receives it: an appended column, in
    binary format under the extended protocol and as text under the simple one
    (see inference/rows.py).

    kind: "float" (float8), "int" (0/1 for booleans), "epoch" (seconds since
    1970-01-01 as float8: turn into datetime64), "text".
    """

    index: int
    kind: str
    declared_type: str


@dataclass(frozen=True)
class StreamingCall:
    """A select-list model call: placeholder column `column`, arguments `args`."""

    function: ModelFunction
    column: int
    name: str
    args: tuple[ArgColumn, ...]


@dataclass(frozen=True)
class StreamingPlan:
    """Evaluate the calls on the result rows as they stream by.

    Indexes are 0-based positions in the rewritten RowDescription.  When the
    select list has a `*`, they assume it expands to one column; call
    `resolve(len(row_description))` first (`has_star` says whether it matters).
    """

    sql: SqlText
    calls: tuple[StreamingCall, ...]
    user_columns: int
    appended_columns: int
    description: str
    star_index: int | None = None  # select-list index of the `*` entry, if any

    @property
    def has_star(self) -> bool:
        return self.star_index is not None

    def resolve(self, total_columns: int) -> StreamingPlan:
        """This plan with indexes for a result of `total_columns` columns."""
        extra = total_columns - self.appended_columns - self.user_columns
        if extra == 0:
            return self
        if self.star_index is None or extra < -1:
            raise ValueError(f"result has {total_columns} columns, the plan expects {self.user_columns + self.appended_columns}")

        def shift(index: int) -> int:
            return index + extra if index > self.star_index else index

        calls = tuple(replace(c, column=shift(c.column),
                              args=tuple(replace(a, index=a.index + extra) for a in c.args)) for c in self.calls)
        return replace(self, calls=calls, user_columns=self.user_columns + extra, star_index=None)

    def map_position(self, position: int, which: object = "sql") -> int:
        return self.sql.map_position(position)

    @property
    def steps(self) -> tuple[InferenceStep, ...]:
        return ()


@dataclass(frozen=True)
class InferenceStep:
    """Predictions for one model function into one temporary table.

    Run the `create` statements, then `input` (binding the client's parameters
    `input.params`), predict each row, COPY rows (a0, ..., p) in with `copy`, then
    `finish` (index + ANALYZE); after the statement, the `drop` statements.  `probe` is `input` with LIMIT 0: it checks the call
    (Postgres reports a wrong argument count or type as 42883 on it) without
    computing anything, for EXPLAIN without ANALYZE.
    """

    function: ModelFunction
    table: str
    input: SqlText
    probe: SqlText
    args: tuple[ArgColumn, ...]  # input's columns, in order (index = column number)
    create: tuple[str, ...]
    copy: str
    finish: tuple[str, ...]
    drop: tuple[str, ...]
    depends_on: tuple[int, ...]
    calls: tuple[int, ...]  # ordinals of the client's calls this step serves
    hint: str
    index: tuple[str, ...] = ()  # the lookup index (also in `finish`, before ANALYZE)


@dataclass(frozen=True)
class GeneralPlan:
    """Compute predictions into temporary tables, then run the rewritten statement."""

    steps: tuple[InferenceStep, ...]
    sql: SqlText
    description: str
    # DECLARE CURSOR: "hold" (WITH HOLD) or "transaction"; the tables then outlive
    # the statement (until COMMIT) and are not dropped after it
    cursor: str | None = None

    def map_position(self, position: int, which: object = "sql") -> int:
        """Client position of `position` in `which`: "sql", a step index or an SqlText."""
        return _text(self, which).map_position(position)


@dataclass(frozen=True)
class ExplainPlan:
    """EXPLAIN of a statement with model calls: `sql` explains the rewritten statement.

    For a general inner plan, create the steps' tables first (filled when
    `analyze`, since EXPLAIN ANALYZE runs the statement; else `probe` + empty
    tables suffice).  `description` is the line to show with the plan.
    """

    inner: StreamingPlan | GeneralPlan
    sql: SqlText
    analyze: bool
    description: str

    @property
    def steps(self) -> tuple[InferenceStep, ...]:
        return self.inner.steps

    def map_position(self, position: int, which: object = "sql") -> int:
        return _text(self, which).map_position(position)


QueryPlan = StreamingPlan | GeneralPlan | ExplainPlan


def _text(plan: GeneralPlan | ExplainPlan, which: object) -> SqlText:
    if isinstance(which, SqlText):
        return which
    if which == "sql":
        return plan.sql
    if isinstance(which, int):
        return plan.steps[which].input
    raise ValueError(f"unknown SQL text {which!r}")
