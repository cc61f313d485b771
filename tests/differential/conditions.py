"""The generated schema's shape, the exclusions of known defects, and conditions over it.

Conditions use every test of SPEC section 2 (eq ne lt le gt ge in not_in is_null
older_than newer_than starts_with ends_with contains), bare values, ``related`` (nested),
all/any/not and lists meaning any. Literals always have the column's type; the text
tests' literals hold ``%``, ``_`` and ``\\``, which LIKE would read as wildcards or escapes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

PERIODS = (
    "P3M",
    "P1Y",
    "P1M15D",
    "P30D",
    "PT12H",
    "P2W",
    "P1DT1H30M",
    "PT90S",
    "0 days",
    "3 months",
    "1 year",
    "10 days",
    "36 hours",
    "2 weeks",
    "45 minutes",
)
INTS = (None, -1, 0, 1, 2, 5, 10)
# Text values: statuses, the strategies' own results, IPv4 and IPv6 addresses (one already
# a /48), and the characters LIKE treats specially. No two differ only in case or accents,
# which MariaDB's default collation compares equal.
TEXTS = (
    None,
    "",
    "open",
    "closed",
    "pending",
    "[redacted]",
    "anon-1",
    "x",
    "ü",
    "203.0.113.77",
    "2001:db8:abcd:12::7",
    "2001:db8:abcd::",
    "50%",
    "a_b",
    "a\\b",
    "[x]*?",
)
# Literals of starts_with/ends_with/contains: wildcards and escapes of LIKE and GLOB.
PATTERNS = (
    *("%", "_", "\\", "%_", "a_", "_b", "a\\", "\\b"),
    *("[", "[x]", "*", "?", "]*"),
    *("a", "b", "pen", "op", "ü", "2001:", "x"),
)


@dataclass(frozen=True)
class Col:
    name: str
    kind: str  # int | text | datetime | tz | date | unix_s | unix_ms
    primary: bool = False
    unique: bool = False


@dataclass(frozen=True)
class Tab:
    role: str
    name: str
    cols: tuple[Col, ...]
    # column role -> column name (key0, key1, clock, dint, dtext, link, subject, ...)
    roles: dict[str, str] = field(default_factory=dict, hash=False)

    def kind(self, column: str) -> str:
        return next(c.kind for c in self.cols if c.name == column)


@dataclass(frozen=True)
class Case:
    backend: str
    tables: tuple[Tab, ...]
    rows: dict[str, list[dict[str, Any]]]
    policy: dict[str, Any]
    now: datetime
    hash_key: str

    def table(self, role: str) -> Tab:
        return next(t for t in self.tables if t.role == role)


@dataclass(frozen=True)
class Exclusions:
    """What generation leaves out: names, and features spelt ``area:item``
    (``key:nullable_unique``, ``clock:date``, ``op:lt``, ``strategy:hash``,
    ``cascade:detach``, ``clock_test:unix``, ``backend_feature@mysql``...)."""

    table_names: frozenset[str] = frozenset()
    column_names: frozenset[str] = frozenset()
    features: frozenset[str] = frozenset()

    def allows(self, feature: str) -> bool:
        return feature not in self.features

    def __or__(self, other: Exclusions) -> Exclusions:
        return Exclusions(
            self.table_names | other.table_names,
            self.column_names | other.column_names,
            self.features | other.features,
        )


def _literal(draw: st.DrawFn, kind: str, now: datetime) -> Any:
    if kind in ("int", "unix_s", "unix_ms"):
        return draw(st.sampled_from([v for v in INTS if v is not None]))
    if kind == "text":
        return draw(st.sampled_from([v for v in TEXTS if v is not None]))
    if kind == "date":
        return (now.date() - timedelta(days=draw(st.integers(0, 400)))).isoformat()
    if kind == "datetime":
        # Whole dates and times, and ``now`` itself: the cutoff of a "0 days" rule, which
        # the generated rows straddle, so equality with a literal is met too.
        moment = now.astimezone(UTC).replace(tzinfo=None) - timedelta(
            days=draw(st.sampled_from([0, 0, 1, 30, 400])),
            seconds=draw(st.sampled_from([0, 1, 43_200])),
        )
        midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        return str(draw(st.sampled_from([moment, midnight, midnight.date()])))
    raise AssertionError(kind)


def _column_test(draw: st.DrawFn, tab: Tab, now: datetime, ex: Exclusions) -> dict[str, Any]:
    column = draw(st.sampled_from([c.name for c in tab.cols]))
    kind = tab.kind(column)
    if kind == "int" or (kind.startswith("unix") and not ex.allows("clock_test:unix")):
        ops = ["eq", "ne", "lt", "le", "gt", "ge", "in", "not_in", "is_null", "bare"]
    elif kind == "text":
        ops = ["eq", "ne", "in", "not_in", "is_null", "bare"]
        ops += ["starts_with", "ends_with", "contains"]
    elif kind == "date":
        ops = ["is_null"]
        if ex.allows("literal:date"):
            ops += ["eq", "ne", "in", "not_in", "bare", "lt", "le", "gt", "ge"]
    else:  # a date/time (or Unix time) column: ages
        ops = ["older_than", "newer_than", "is_null"]
        if kind == "datetime" and ex.allows("literal:datetime"):
            ops += ["lt", "le", "gt", "ge"]
    ops = [o for o in ops if ex.allows(f"op:{o}")]
    chosen = draw(st.lists(st.sampled_from(ops), min_size=1, max_size=2, unique=True))
    if "bare" in chosen:
        return {column: _literal(draw, kind, now)}
    test: dict[str, Any] = {}
    for op in chosen:
        if op == "is_null":
            test[op] = draw(st.booleans())
        elif op in ("in", "not_in"):
            size = draw(st.integers(1, 3))
            test[op] = [_literal(draw, kind, now) for _ in range(size)]
        elif op in ("starts_with", "ends_with", "contains"):
            test[op] = draw(st.sampled_from(PATTERNS))
        elif op in ("older_than", "newer_than"):
            test[op] = draw(st.sampled_from(PERIODS))
            if kind.startswith("unix"):
                test["unit"] = "seconds" if kind == "unix_s" else "milliseconds"
        else:
            test[op] = _literal(draw, kind, now)
    return {column: test}


# (from role, to role) -> (their column role, our column role)
LINKS = {
    ("main", "rel"): ("id", "link"),
    ("main", "nest"): ("id", "subject"),
    ("rel", "nest"): ("id", "owner"),
}


@st.composite
def condition(
    draw: st.DrawFn,
    tabs: dict[str, Tab],
    role: str,
    now: datetime,
    ex: Exclusions,
    depth: int = 2,
) -> Any:
    """A condition on the table playing ``role``, nesting ``related``/all/any/not."""
    tab = tabs[role]
    shapes = ["test", "test", "mapping"]
    if depth > 0:
        shapes += ["all", "any", "not", "list"]
        if any(src == role for src, _ in LINKS):
            shapes += ["related", "related"]
    shape = draw(st.sampled_from(shapes))
    if shape == "test":
        return _column_test(draw, tab, now, ex)
    if shape == "mapping":
        return _column_test(draw, tab, now, ex) | _column_test(draw, tab, now, ex)
    inner = condition(tabs, role, now, ex, depth - 1)
    if shape in ("all", "any"):
        return {shape: draw(st.lists(inner, min_size=1, max_size=3))}
    if shape == "list":
        return draw(st.lists(inner, min_size=2, max_size=3))
    if shape == "not":
        return {"not": draw(inner)}
    target = draw(st.sampled_from([dst for src, dst in LINKS if src == role]))
    theirs, ours = LINKS[(role, target)]
    related: dict[str, Any] = {
        "table": tabs[target].name,
        "on": {tabs[target].roles[theirs]: tab.roles[ours]},
    }
    if draw(st.booleans()):
        related["where"] = draw(condition(tabs, target, now, ex, depth - 1))
    out: dict[str, Any] = {"related": related}
    if draw(st.booleans()):
        out.update(_column_test(draw, tab, now, ex))
    return out
