"""The reflected database schema, and the lookups every check and plan needs.

Identifiers in SQL come only from here: a name in the policy file is looked up in the
reflected schema, and the reflected ``Table``/``Column`` objects are what statements are
built from. So nothing the file says is ever pasted into SQL text.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from sqlalchemy import (
    Column,
    Connection,
    Date,
    DateTime,
    ForeignKeyConstraint,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    inspect,
    literal,
    select,
)
from sqlalchemy.types import TypeEngine

from retention.backends import backend_for
from retention.backends.sqlite_catalog import OddValues
from retention.literals import LiteralMisfit, in_column_type


@dataclass(frozen=True)
class Catalog:
    """Reflected tables of the schemas a policy names."""

    metadata: MetaData
    default_schema: str | None
    #: the database's dialect name, for what a column's type means there (INTEGER is 64
    #: bits on SQLite, 32 elsewhere)
    dialect: str = ""
    #: date/time columns whose stored values do not compare in time order (SQLite), by
    #: (table's full name, column)
    odd_dates: Mapping[tuple[str, str], OddValues] = field(default_factory=dict)
    #: fixed values (table's full name, column, value) whose foreign key's parent lacks
    #: them, with that parent column
    lacking_parents: Mapping[tuple[str, str, object], str] = field(default_factory=dict)
    # Links resolved so far: the schema check, the planner and every rule's conditions
    # ask for the same ones.
    _links: dict[tuple[object, ...], tuple[dict[str, str] | None, str | None]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def table(self, name: str) -> Table | None:
        schema, _, bare = name.rpartition(".")
        key = f"{schema}.{bare}" if schema else bare
        table = self.metadata.tables.get(key)
        if table is None and not schema and self.default_schema:
            table = self.metadata.tables.get(f"{self.default_schema}.{bare}")
        return table

    def lacking_parent(self, table: Table, column: str, value: object) -> str | None:
        """The ``parent.column`` a fixed value for ``table.column`` is missing from, if any."""
        return self.lacking_parents.get((table.fullname, column, value))

    def odd_values(self, table: Table, col: Column[object]) -> OddValues | None:
        """What a date/time column stores that does not compare in time order, if any."""
        return self.odd_dates.get((table.fullname, col.name))

    def table_names(self) -> list[str]:
        return sorted(self.metadata.tables)

    def suggest_table(self, name: str) -> str:
        return suggest(name, [t.split(".")[-1] for t in self.table_names()])

    def link(
        self, on: Mapping[str, str] | None, theirs: Table, ours: Table
    ) -> tuple[dict[str, str] | None, str | None]:
        """The ``on`` mapping {their column: our column}, or the one a single foreign key
        between the two tables implies: (mapping, None), or (None, why there is none)."""
        cache_key = (tuple(on.items()) if on else None, theirs, ours)
        if cache_key not in self._links:
            self._links[cache_key] = _resolve_link(on, theirs, ours)
        mapping, reason = self._links[cache_key]
        return (dict(mapping) if mapping is not None else None), reason

    def foreign_keys_to(self, target: Table) -> list[ForeignKeyConstraint]:
        """Every foreign key in the reflected schemas that points at ``target``."""
        out = []
        for table in self.metadata.tables.values():
            for fk in table.foreign_key_constraints:
                if fk.referred_table is target:
                    out.append(fk)
        return out


class Wanted(list[str]):
    """The (possibly qualified) table names to reflect, and the fixed values the policy
    writes: (table, column, value). A value written to a foreign-key column is looked up
    in its parent while the connection is open (SPEC 2: "a foreign-key column gets no
    value its parent lacks")."""

    def __init__(
        self,
        names: Iterable[str],
        values: Iterable[tuple[str, str, object]] = (),
        clocks: Iterable[str] | None = None,
    ) -> None:
        super().__init__(names)
        self.values = list(values)
        #: the column names the rules read as clocks (None: every date/time column)
        self.clocks = None if clocks is None else frozenset(clocks)


def reflect(conn: Connection, table_names: Iterable[str]) -> Catalog:
    """Reflect every table of the schemas the given (possibly qualified) names live in;
    with ``Wanted`` names, also which fixed values their foreign-key parents lack."""
    values = table_names.values if isinstance(table_names, Wanted) else []
    # Only a clock's stored values matter (schema_check): each scan reads a whole column.
    clocks = table_names.clocks if isinstance(table_names, Wanted) else None
    table_names = list(table_names)
    schemas: set[str | None] = {None}
    for name in table_names:
        schema, _, _ = name.rpartition(".")
        if schema:
            schemas.add(schema)
    metadata = MetaData()
    backend = backend_for(conn)
    backend.before_reflection(metadata)
    inspector = inspect(conn)
    existing = set(inspector.get_schema_names())
    for wanted in schemas:
        if wanted is not None and wanted not in existing:
            continue
        metadata.reflect(conn, schema=wanted, resolve_fks=True)
    default = inspector.default_schema_name
    catalog = Catalog(metadata, default, conn.dialect.name)
    backend.supplement_reflection(conn, metadata.tables.values())
    odd: dict[tuple[str, str], OddValues] = {}
    for name in dict.fromkeys(table_names):
        table = catalog.table(name)
        if table is not None:
            for col, found in backend.odd_dates(conn, table, clocks).items():
                odd[(table.fullname, col)] = found
    lacking = _lacking_parents(conn, catalog, values)
    return replace(catalog, odd_dates=odd, lacking_parents=lacking)


def _lacking_parents(
    conn: Connection, catalog: Catalog, values: Iterable[tuple[str, str, object]]
) -> dict[tuple[str, str, object], str]:
    """{(table, column, value): 'parent.column'} for each fixed value a foreign key's
    parent does not hold. A value that does not fit its column is left to the literal
    check, which reports it."""
    lacking: dict[tuple[str, str, object], str] = {}
    for name, column, value in values:
        table = catalog.table(name)
        col = table.columns.get(column) if table is not None else None
        if table is None or col is None:
            continue
        for fk in col.foreign_keys:
            parent = fk.column
            try:
                bound = in_column_type(value, parent.type, catalog.dialect)
            except LiteralMisfit:
                continue
            found = select(literal(1)).select_from(parent.table).where(parent == bound).limit(1)
            if conn.execute(found).first() is None:
                lacking[(table.fullname, column, value)] = f"{parent.table.name}.{parent.name}"
    return lacking


def suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _resolve_link(
    on: Mapping[str, str] | None, theirs: Table, ours: Table
) -> tuple[dict[str, str] | None, str | None]:
    if on:
        return dict(on), None
    links = links_between(theirs, ours) + [
        fk for fk in links_between(ours, theirs) if theirs is not ours
    ]
    if len(links) != 1:
        found = "no foreign key" if not links else f"{len(links)} foreign keys"
        return None, f"{found} between {theirs.name} and {ours.name}: name the link in 'on'"
    fk = links[0]
    mapping = on_from_fk(fk)
    if fk.parent is theirs:
        return mapping, None
    return {ref: local for local, ref in mapping.items()}, None


def describe_type(col: Column[object]) -> str:
    try:
        return str(col.type.compile())
    except Exception:
        return type(col.type).__name__


def is_datetime(type_: TypeEngine[object]) -> bool:
    return isinstance(type_, DateTime | Date)


def is_integer(type_: TypeEngine[object]) -> bool:
    return isinstance(type_, Integer)


def is_text(type_: TypeEngine[object]) -> bool:
    return isinstance(type_, String | Text)


def text_length(type_: TypeEngine[object]) -> int | None:
    return getattr(type_, "length", None) if isinstance(type_, String) else None


def is_unique(table: Table, col: Column[object]) -> bool:
    """Whether ``col`` alone is unique: a primary key, a unique constraint or index."""
    if col.primary_key and len(table.primary_key.columns) == 1:
        return True
    if col.unique:
        return True
    for constraint in table.constraints:
        if isinstance(constraint, UniqueConstraint) and list(constraint.columns) == [col]:
            return True
    return any(index.unique and list(index.columns) == [col] for index in table.indexes)


def is_unique_set(table: Table, names: Iterable[str]) -> bool:
    """Whether the columns ``names`` together are unique: they include every column of
    the primary key, a unique constraint or a unique index."""
    wanted = set(names)
    candidates = [{c.name for c in table.primary_key.columns}]
    candidates += [{c.name} for c in table.columns if c.unique]
    candidates += [
        {c.name for c in constraint.columns}
        for constraint in table.constraints
        if isinstance(constraint, UniqueConstraint)
    ]
    candidates += [{c.name for c in index.columns} for index in table.indexes if index.unique]
    return any(found and found <= wanted for found in candidates)


def links_between(child: Table, parent: Table) -> list[ForeignKeyConstraint]:
    """Foreign keys from ``child`` to ``parent``."""
    return [fk for fk in child.foreign_key_constraints if fk.referred_table is parent]


def on_from_fk(fk: ForeignKeyConstraint) -> dict[str, str]:
    """A foreign key as an ``on`` mapping: {child column: parent column}."""
    return {el.parent.name: el.column.name for el in fk.elements}
