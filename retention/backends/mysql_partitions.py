"""MariaDB's RANGE partitions (``MySQLBackend``'s partition methods).

Each DDL statement commits here, so a partition goes through a staging table: exchanged
into an empty table of the same columns, checked and recorded there in one transaction,
then dropped (``retention/partitions.py``). The partition itself stays, empty.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import BigInteger, Connection, Text, bindparam, cast, column, func, select, text
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import Table
from sqlalchemy.sql.expression import TableClause

from retention.backends.partitioning import RangePartition, WholeDrop, staging_name

PARTITIONS_QUERY = text(
    "SELECT PARTITION_NAME, PARTITION_METHOD, PARTITION_EXPRESSION, PARTITION_DESCRIPTION, "
    "SUBPARTITION_NAME FROM information_schema.PARTITIONS "
    "WHERE TABLE_SCHEMA = COALESCE(:schema, DATABASE()) AND TABLE_NAME = :table "
    "AND PARTITION_NAME IS NOT NULL ORDER BY PARTITION_ORDINAL_POSITION"
)
#: functions of the clock that keep its order: a partition LESS THAN (n) of f(clock)
#: lies wholly before the cutoff when n <= f(cutoff)
MONOTONIC = frozenset({"to_days", "to_seconds", "unix_timestamp", "year"})


def range_partitions(
    conn: Connection, table: Table, column_name: str, cut: Any
) -> list[RangePartition]:
    found: dict[str, RangePartition] = {}
    params = {"schema": table.schema, "table": table.name}
    for name, method, expression, upper, sub in conn.execute(PARTITIONS_QUERY, params):
        if name in found:
            continue  # one row per subpartition
        fn = _clock_function(expression or "", column_name)
        refused = None
        if not str(method).startswith("RANGE") or fn is False:
            refused = f"the table is not RANGE-partitioned on {column_name}"
        elif sub is not None:
            refused = "it is subpartitioned"
        elif upper == "MAXVALUE":
            refused = "its upper bound is MAXVALUE"
        elif not _before(conn, table.c[column_name], fn, upper, cut):
            refused = "it reaches past the cutoff"
        found[name] = RangePartition(name, table.schema, refused)
    return list(found.values())


def _clock_function(expression: str, column_name: str) -> str | bool | None:
    """None where the partitions are on the clock itself, the function's name where on a
    monotonic function of it, False otherwise."""
    quoted = f"`{column_name}`"
    if expression == quoted:
        return None
    match = re.fullmatch(r"(\w+)\((.*)\)", expression)
    if match and match.group(1).lower() in MONOTONIC and match.group(2) == quoted:
        return match.group(1).lower()
    return False


def _before(conn: Connection, clock: Any, fn: str | bool | None, upper: str, cut: Any) -> bool:
    literal_text = upper[1:-1].replace("''", "'") if upper.startswith("'") else upper
    bound = bindparam("upper", literal_text, type_=Text())
    at = bindparam("cut", cut, type_=clock.type)
    if isinstance(fn, str):
        check = cast(bound, BigInteger()) <= getattr(func, fn)(at)
    else:
        check = cast(bound, clock.type) <= at
    return bool(conn.execute(select(check)).scalar())


class OnePartition(TableClause):
    """``table PARTITION (name)``: a table read in one of its partitions only."""

    inherit_cache = False  # the partition's name is not part of a cache key

    def __init__(self, table: Table, partition: str) -> None:
        columns = [column(c.name, c.type) for c in table.c]
        super().__init__(table.name, *columns, schema=table.schema)
        self.partition = partition


@compiles(OnePartition)
def _one_partition(element: OnePartition, compiler: Any, **kw: Any) -> str:
    name = compiler.visit_table(element, **kw)
    return f"{name} PARTITION ({compiler.preparer.quote(element.partition)})"


def whole_drop(conn: Connection, table: Table, partition: RangePartition) -> WholeDrop:
    q = conn.dialect.identifier_preparer
    ours = q.format_table(table)
    staging = staging_name(table.name, partition.name)
    prefix = f"{q.quote_schema(table.schema)}." if table.schema else ""
    staged = prefix + q.quote(staging)
    return WholeDrop(
        rows_in=staging,
        stage=(
            f"CREATE TABLE {staged} LIKE {ours}",
            f"ALTER TABLE {staged} REMOVE PARTITIONING",
            f"ALTER TABLE {ours} EXCHANGE PARTITION {q.quote(partition.name)} WITH TABLE {staged}",
        ),
        finish=(f"DROP TABLE IF EXISTS {staged}",),
        put_back=(f"INSERT INTO {ours} SELECT * FROM {staged}", f"DELETE FROM {staged}"),
    )
