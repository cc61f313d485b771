"""The reference evaluator: SPEC section 2 in plain Python, over rows held as dicts.

It shares no code with the product: it never imports the planner, the condition
compiler, the rule order, the period parser, the anonymisers or the executor. Given the
tables (column kinds and rows), a policy as a dict and ``now``, it says in which order
the rules run, what ``plan`` counts for each (every rule over the tables as they are
before any runs: due, kept by ``unless``, kept by holds, unaddressable, dependents per
cascade table), what each rule does when ``run`` reaches it (after the rules before it),
and every table as it must read after the run. The strategies are in ``anonymise.py``.

The column kinds: ``int``, ``text``, ``datetime`` (naive UTC), ``tz`` (aware), ``date``,
``unix_s`` and ``unix_ms`` (integer Unix time).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from dateutil.relativedelta import relativedelta

from differential.anonymise import anonymised, recognised
from differential.order import run_order

Rows = list[dict[str, Any]]
RESERVED = ("related", "all", "any", "not")
ISO = re.compile(
    r"^P(?:(?P<years>\d+)Y)?(?:(?P<months>\d+)M)?(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)S)?)?$"
)
WORDS = re.compile(r"^(\d+) (second|minute|hour|day|week|month|year)s?$")


# --- time ------------------------------------------------------------------------------


def parse_period(text: str) -> dict[str, int]:
    """``P1Y6M`` or ``3 months`` -> {unit: count}, per SPEC's two forms."""
    found = ISO.match(text)
    if found and text not in ("P", "PT"):
        return {k: int(v) for k, v in found.groupdict().items() if v}
    words = WORDS.match(text)
    assert words, f"not a period: {text!r}"
    return {f"{words.group(2)}s": int(words.group(1))}


def cutoff_of(now: datetime, period: str, tz: str) -> datetime:
    """Calendar units on the wall clock of ``tz``, then hours/minutes/seconds elapsed."""
    parts = parse_period(period)
    calendar = relativedelta(
        years=parts.get("years", 0),
        months=parts.get("months", 0),
        weeks=parts.get("weeks", 0),
        days=parts.get("days", 0),
    )
    elapsed = timedelta(**{k: v for k, v in parts.items() if k in ("hours", "minutes", "seconds")})
    zone = ZoneInfo(tz)
    wall = now.astimezone(zone).replace(tzinfo=None) - calendar
    return wall.replace(tzinfo=zone).astimezone(UTC) - elapsed


def unix_micros(moment: datetime) -> int:
    """Whole microseconds since the epoch, exactly (no float rounding)."""
    delta = moment.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def before(value: Any, kind: str, moment: datetime, tz: str) -> bool:
    """``value < moment`` in the column's own type; NULL is never before anything."""
    if value is None:
        return False
    if kind == "datetime":
        return bool(value < moment.astimezone(UTC).replace(tzinfo=None))
    if kind == "tz":
        return bool(value < moment)
    if kind == "date":
        return bool(value < moment.astimezone(ZoneInfo(tz)).date())
    if kind == "unix_s":
        return int(value) * 1_000_000 < unix_micros(moment)
    if kind == "unix_ms":
        return int(value) * 1_000 < unix_micros(moment)
    raise AssertionError(f"not a clock kind: {kind}")


# --- conditions ------------------------------------------------------------------------


@dataclass(frozen=True)
class World:
    """What conditions read: every table's kinds and rows, the clock and the zone."""

    kinds: dict[str, dict[str, str]]
    rows: dict[str, Rows]
    now: datetime
    tz: str

    def literal(self, table: str, column: str, value: Any) -> Any:
        """A literal of the file in the column's type (a date's text is a date)."""
        kind = self.kinds[table][column]
        if kind == "date" and isinstance(value, str):
            return date.fromisoformat(value)
        if kind == "datetime" and isinstance(value, str):
            return datetime.fromisoformat(value)  # a bare date means its midnight
        return value


def holds(cond: Any, table: str, row: dict[str, Any], world: World) -> bool:
    """Whether ``cond`` is true for ``row`` of ``table`` (comparisons with NULL false,
    except ``ne``/``not_in``; ``not`` true exactly when its condition is not true)."""
    if isinstance(cond, list):
        return any(holds(c, table, row, world) for c in cond)
    for key, test in cond.items():
        if key == "all":
            ok = all(holds(c, table, row, world) for c in test)
        elif key == "any":
            ok = any(holds(c, table, row, world) for c in test)
        elif key == "not":
            ok = not holds(test, table, row, world)
        elif key == "related":
            ok = _related(test, table, row, world)
        else:
            ok = _column(test, table, key, row[key], world)
        if not ok:
            return False
    return True


def _related(spec: dict[str, Any], table: str, row: dict[str, Any], world: World) -> bool:
    other = spec["table"]
    for candidate in world.rows[other]:
        linked = all(
            row[ours] is not None
            and candidate[theirs] is not None
            and candidate[theirs] == row[ours]
            for theirs, ours in spec["on"].items()
        )
        if linked and ("where" not in spec or holds(spec["where"], other, candidate, world)):
            return True
    return False


def _column(test: Any, table: str, column: str, value: Any, world: World) -> bool:
    if not isinstance(test, dict):
        test = {"eq": test}
    kind = world.kinds[table][column]
    for op, arg in test.items():
        if op == "unit":
            continue
        if op == "is_null":
            ok = (value is None) == arg
        elif op in ("older_than", "newer_than"):
            moment = cutoff_of(world.now, arg, world.tz)
            is_before = before(value, kind, moment, world.tz)
            ok = is_before if op == "older_than" else value is not None and not is_before
        elif op in ("in", "not_in"):
            found = value is not None and value in [world.literal(table, column, a) for a in arg]
            ok = found if op == "in" else value is None or not found
        elif op == "ne":
            ok = value is None or value != world.literal(table, column, arg)
        elif op in ("starts_with", "ends_with", "contains"):
            # Literal text, case-sensitive: no character of ``arg`` is a wildcard.
            ok = value is not None and {
                "starts_with": value.startswith,
                "ends_with": value.endswith,
                "contains": value.__contains__,
            }[op](arg)
        else:
            ok = value is not None and _compare(op, value, world.literal(table, column, arg))
        if not ok:
            return False
    return True


def _compare(op: str, value: Any, arg: Any) -> bool:
    return bool(
        {
            "eq": value == arg,
            "lt": value < arg,
            "le": value <= arg,
            "gt": value > arg,
            "ge": value >= arg,
        }[op]
    )


# --- the rules ---------------------------------------------------------------------------


@dataclass
class Expected:
    """One rule over one state of the tables: its counts, and the tables it leaves."""

    due: int = 0
    kept_unless: int = 0
    kept_holds: int = 0
    unaddressable: int = 0
    dependents: dict[str, int] = field(default_factory=dict)
    tables: dict[str, Rows] = field(default_factory=dict)


@dataclass
class Outcome:
    """The whole policy: ``plan`` counts every rule over the tables before any runs;
    ``run`` takes the rules in ``order``, each over what the rules before it left."""

    order: list[str]
    plan: dict[str, Expected]
    run: dict[str, Expected]
    tables: dict[str, Rows]


def expect(
    kinds: dict[str, dict[str, str]],
    rows: dict[str, Rows],
    policy: dict[str, Any],
    now: datetime,
    hash_key: bytes,
    primary_keys: dict[str, list[str]],
) -> Outcome:
    """What ``plan`` must report and ``run`` must do. ``primary_keys`` holds each table's
    primary key: a rule's key when it names none."""
    rules = policy["rules"]
    order = run_order(policy)
    plan = {
        r["name"]: expect_rule(kinds, rows, policy, r, now, hash_key, primary_keys) for r in rules
    }
    run: dict[str, Expected] = {}
    state = rows
    for i in order:
        done = expect_rule(kinds, state, policy, rules[i], now, hash_key, primary_keys)
        run[rules[i]["name"]] = done
        state = done.tables
    return Outcome([rules[i]["name"] for i in order], plan, run, state)


def expect_rule(
    kinds: dict[str, dict[str, str]],
    rows: dict[str, Rows],
    policy: dict[str, Any],
    rule: dict[str, Any],
    now: datetime,
    hash_key: bytes,
    primary_keys: dict[str, list[str]],
) -> Expected:
    """The counts of ``rule`` over ``rows``, and every table as it leaves them."""
    tz = policy.get("defaults", {}).get("timezone", "UTC")
    world = World(kinds, rows, now, tz)
    table = rule["table"]
    keys = rule.get("key") or primary_keys[table]
    cut = cutoff_of(now, rule["after"], tz)
    clock_kind = kinds[table][rule["clock"]]
    out = Expected(tables=copy.deepcopy(rows))
    chosen: list[dict[str, Any]] = []
    for row in rows[table]:
        if not before(row[rule["clock"]], clock_kind, cut, tz):
            continue
        if "where" in rule and not holds(rule["where"], table, row, world):
            continue
        if rule["action"] == "anonymise" and _done(rule, row):
            continue  # already anonymised: no longer a candidate, so not counted as kept
        if "unless" in rule and holds(rule["unless"], table, row, world):
            out.kept_unless += 1
        elif "hold_subject" in rule and _held(row[rule["hold_subject"]], policy, world):
            out.kept_holds += 1
        elif any(row[k] is None for k in keys):
            # A NULL key names no row: never selected. A row `unless` or a hold keeps is
            # counted as kept whatever its key; only the rest is unaddressable.
            out.unaddressable += 1
        else:
            chosen.append(row)
    out.due = len(chosen)
    picked = {id(r) for r in chosen}
    after = out.tables[table]
    if rule["action"] == "delete":
        out.tables[table] = [
            a for a, r in zip(after, rows[table], strict=True) if id(r) not in picked
        ]
    else:
        # The mark is set to the run's clock, as the column holds it (naive UTC).
        mark = {rule["mark"]: now.astimezone(UTC).replace(tzinfo=None)} if "mark" in rule else {}
        for a, r in zip(after, rows[table], strict=True):
            if id(r) in picked:
                a.update({c: anonymised(s, r[c], hash_key) for c, s in rule["set"].items()})
                a.update(mark)
    for cascade in rule.get("cascade", []):
        _cascade(cascade, chosen, world, out, hash_key)
    out.dependents = {t: n for t, n in out.dependents.items() if n}
    return out


def _done(rule: dict[str, Any], row: dict[str, Any]) -> bool:
    """SPEC "Idempotency": with ``mark``, a row whose mark is set; without, a row whose
    every ``set`` column already holds a recognisable result."""
    if "mark" in rule:
        return row[rule["mark"]] is not None
    return all(recognised(s, row[c]) for c, s in rule["set"].items())


def _held(subject: Any, policy: dict[str, Any], world: World) -> bool:
    if subject is None:
        return False
    registry = policy["holds"]
    return any(
        h[registry["subject_column"]] == subject
        and holds(registry.get("active", {}), registry["table"], h, world)
        for h in world.rows[registry["table"]]
    )


def _cascade(
    cascade: dict[str, Any], parents: Rows, world: World, out: Expected, hash_key: bytes
) -> None:
    """Apply one cascade to the dependents of ``parents`` (rows as read before the run)."""
    table = cascade["table"]
    on = cascade["on"]
    reached = [
        d
        for d in world.rows[table]
        if any(
            all(d[theirs] is not None and d[theirs] == p[ours] for theirs, ours in on.items())
            for p in parents
        )
        and ("where" not in cascade or holds(cascade["where"], table, d, world))
    ]
    out.dependents[table] = out.dependents.get(table, 0) + len(reached)
    gone = {id(d) for d in reached}
    action = cascade.get("action", "delete")
    current = out.tables[table]
    if action == "delete":
        out.tables[table] = [
            a for a, d in zip(current, world.rows[table], strict=True) if id(d) not in gone
        ]
        # out.tables no longer lines up with world.rows for this table; nested cascades
        # only ever go one table further down, so no later step zips it again.
        for nested in cascade.get("cascade", []):
            _cascade(nested, reached, world, out, hash_key)
        return
    for a, d in zip(current, world.rows[table], strict=True):
        if id(d) not in gone:
            continue
        if action == "detach":
            a.update(dict.fromkeys(on, None))
        else:
            a.update({c: anonymised(s, d[c], hash_key) for c, s in cascade["set"].items()})
