"""The plan as frozen data, and its rendering as SQL text.

A plan holds, per rule, the very statement objects the executor runs. ``--show-sql``
compiles those same objects for the target dialect: placeholders only, never a key, a
value or a secret, because values are bound parameters compiled without ``literal_binds``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Dialect, Executable, Table

from retention.policy.model import Guard, Rule


@dataclass(frozen=True)
class CascadePlan:
    """Dependent rows of one cascade table, handled for exactly the parent rows of a batch."""

    table: Table
    action: str  # delete | anonymise | detach
    link: dict[str, str]  # {this table's column: parent's column}
    needs: tuple[str, ...]  # this table's columns its own cascades link to
    select_links: Executable | None  # rows' ``needs`` for the parent values, locked
    apply: Executable  # delete / update WHERE link IN :parent_values
    count: Executable  # dependents of every due parent row (for plan)
    children: tuple[CascadePlan, ...] = ()

    @property
    def name(self) -> str:
        return self.table.fullname


@dataclass(frozen=True)
class RulePlan:
    """One rule compiled against the reflected schema, at one clock reading."""

    rule: Rule
    table: Table
    cutoff: datetime  # aware UTC
    key: tuple[str, ...]
    fetch: tuple[str, ...]  # key columns, then parent-side columns of the cascades' links
    select_first: Executable
    select_next: Executable
    apply: Executable  # delete / update WHERE key IN :keys
    count_selection: Executable  # rows past the cutoff: matched, kept_unless, kept_holds
    count_total: Executable
    batch_size: int
    sleep: float
    guard: Guard
    next_run: datetime | None
    cascades: tuple[CascadePlan, ...] = ()
    uses_hmac: bool = False
    # MySQL/MariaDB, single integer key: the next batch is looked for in a window of keys
    # (last, last + window] while that stays below the highest key read at the start.
    # A bounded range lets MariaDB evaluate `[NOT] EXISTS` per row by primary key instead
    # of materialising the whole related table for every batch.
    key_top: Executable | None = None
    select_window: Executable | None = None

    @property
    def name(self) -> str:
        return self.rule.name

    @property
    def action(self) -> str:
        return self.rule.action

    def statements(self) -> list[tuple[str, Executable]]:
        """Every statement, labelled, in the order ``run`` executes them."""
        out: list[tuple[str, Executable]] = [
            (
                "count rows past the cutoff: due, kept by unless, kept by holds",
                self.count_selection,
            ),
            ("count rows in table (for max_fraction)", self.count_total),
        ]
        for cascade in _walk(self.cascades):
            out.append((f"count dependents in {cascade.name}", cascade.count))
        if self.key_top is not None:
            out.append(("highest key (bounds the windows of keys)", self.key_top))
        out.append(("select and lock the first batch", self.select_first))
        if self.select_window is not None:
            out.append(
                ("select and lock the next batch within a window of keys", self.select_window)
            )
        out.append(("select and lock the next batch", self.select_next))
        out.extend(_cascade_statements(self.cascades))
        verb = "delete" if self.action == "delete" else "anonymise"
        out.append((f"{verb} the batch's rows in {self.table.fullname}", self.apply))
        return out


def _walk(cascades: tuple[CascadePlan, ...]) -> list[CascadePlan]:
    out: list[CascadePlan] = []
    for cascade in cascades:
        out.append(cascade)
        out.extend(_walk(cascade.children))
    return out


def _cascade_statements(cascades: tuple[CascadePlan, ...]) -> list[tuple[str, Executable]]:
    out: list[tuple[str, Executable]] = []
    for cascade in cascades:
        if cascade.select_links is not None:
            out.append((f"select and lock dependents in {cascade.name}", cascade.select_links))
        out.extend(_cascade_statements(cascade.children))
        out.append((f"{cascade.action} dependents in {cascade.name}", cascade.apply))
    return out


@dataclass(frozen=True)
class Plan:
    rules: tuple[RulePlan, ...]
    now: datetime
    policy_sha256: str
    dialect: str


def render(statement: Executable, dialect: Dialect) -> str:
    """SQL text of a statement with placeholders, exactly as the driver receives it."""
    compiled = statement.compile(dialect=dialect)  # type: ignore[attr-defined]
    sql = " ".join(str(compiled).split())
    # A list bound per batch (keys, parent values) is expanded by the driver layer into
    # one placeholder per item, or (integers on MySQL) into the integers themselves;
    # show that, not SQLAlchemy's internal marker.
    inlined = {name for name, bind in compiled.binds.items() if bind.literal_execute}

    def marker(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in inlined:
            return f"<the integers of :{name}, inline>"
        return f"<one placeholder per item of :{name}>"

    return re.sub(r"__\[POSTCOMPILE_(\w+)\]", marker, sql)
