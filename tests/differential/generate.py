"""Hypothesis strategies for the differential tester: a schema, its rows, a policy, a clock.

Six tables play fixed roles under drawn names: the rule's ``main`` table, a ``rel`` table
(tickets-like) that ``unless`` reads, a ``nest`` table that ``rel`` refers to (nested
``related``), a ``holds`` registry, a dependent table ``dep`` reached by a cascade, and
``dep2`` under it. Names come partly from SQL reserved words and from the aliases a SQL
compiler is tempted to use (``hold``, ``rel1``), so they collide with each other across
tables. Clock values cluster around the cutoff, one unit of the column's precision apart.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import strategies as st

from differential.conditions import INTS, PERIODS, TEXTS, Case, Col, Exclusions, Tab, condition
from differential.oracle import cutoff_of, unix_micros

TABLE_NAMES = (
    "feedback",
    "tickets",
    "owners",
    "legal_holds",
    "contacts",
    "notes",
    "hold",
    "rel1",
    "rel2",
    "order",
    "select",
    "user",
    "key",
    "group",
    "t1",
)
COLUMN_NAMES = (
    "id",
    "key",
    "order",
    "select",
    "user",
    "group",
    "status",
    "score",
    "value",
    "level",
    "from",
    "check",
    "in",
    "hold",
    "rel1",
    "note",
    "time",
    "desc",
    "limit",
    "where",
    "on",
    "table",
    "unless",
)
KEY_KINDS = ("int", "text", "composite", "nullable_unique")
CLOCK_KINDS = ("datetime", "tz", "date", "unix_s", "unix_ms")
TIMEZONES = ("UTC", "Europe/Berlin", "America/New_York", "Asia/Shanghai")
TEXT_KEYS = ("a", "b", "c", "aa", "ab", "b1", "10", "9", "z-1", "k_2", "ü", "")
HASH_PREFIX = "anon-"
# Keys of 30 ASCII bytes, of more than one SHA-256 block, and with non-ASCII characters.
HASH_KEYS = {
    "ascii": "test-hash-key-0123456789abcdef",
    "long": "k" * 80,
    "non_ascii": "clé-ü-0123456789abcdef-secret",
}


def _names(draw: st.DrawFn, pool: tuple[str, ...], roles: list[str]) -> dict[str, str]:
    chosen = draw(
        st.lists(st.sampled_from(pool), min_size=len(roles), max_size=len(roles), unique=True)
    )
    return dict(zip(roles, chosen, strict=True))


# --- schema and rows ---------------------------------------------------------------------


def _table(
    draw: st.DrawFn,
    role: str,
    name: str,
    kinds: dict[str, str],
    ex: Exclusions,
    primary: tuple[str, ...] = ("id",),
    unique: tuple[str, ...] = (),
) -> Tab:
    pool = tuple(n for n in COLUMN_NAMES if n not in ex.column_names)
    names = _names(draw, pool, list(kinds))
    cols = tuple(
        Col(names[r], k, primary=r in primary, unique=r in unique) for r, k in kinds.items()
    )
    return Tab(role, name, cols, names)


def _clock_values(draw: st.DrawFn, kind: str, cut: datetime, tz: str, n: int) -> list[Any]:
    """Values of a clock column, most of them one unit of precision from the cutoff."""
    steps = draw(
        st.lists(st.sampled_from([None, -400, -1, -1, 0, 0, 1, 1, 400]), min_size=n, max_size=n)
    )
    out: list[Any] = []
    for step in steps:
        if step is None:
            out.append(None)
            continue
        big = abs(step) > 1
        if kind in ("datetime", "tz"):
            delta = timedelta(days=step) if big else timedelta(microseconds=step)
            value = cut.astimezone(UTC) + delta
            out.append(value if kind == "tz" else value.replace(tzinfo=None))
        elif kind == "date":
            out.append(cut.astimezone(ZoneInfo(tz)).date() + timedelta(days=step))
        else:
            per_unit = 1_000_000 if kind == "unix_s" else 1_000
            base = unix_micros(cut) // per_unit
            day = 86_400_000_000 // per_unit
            out.append(base + (step * day if big else step))
    return out


@st.composite
def cases(draw: st.DrawFn, backend: str, ex: Exclusions) -> Case:
    """One schema with rows, a one-rule policy over it, and the run's ``now``."""
    table_pool = tuple(n for n in TABLE_NAMES if n not in ex.table_names)
    tnames = _names(draw, table_pool, ["main", "rel", "nest", "holds", "dep", "dep2"])
    key_kind = draw(st.sampled_from([k for k in KEY_KINDS if ex.allows(f"key:{k}")]))
    clock_kinds = [k for k in CLOCK_KINDS if ex.allows(f"clock:{k}")]
    if backend != "postgresql":
        clock_kinds = [k for k in clock_kinds if k != "tz"]
    clock_kind = draw(st.sampled_from(clock_kinds))
    tz = draw(st.sampled_from(TIMEZONES))
    now = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(
        seconds=draw(st.integers(0, 2 * 365 * 86_400)),
        microseconds=draw(st.sampled_from([0, 0, 500_000, 123_457])),
    )
    period = draw(st.sampled_from(PERIODS))
    cut = cutoff_of(now, period, tz)

    key_types = {
        "int": {"key0": "int"},
        "text": {"key0": "text"},
        "composite": {"key0": "int", "key1": "text"},
        "nullable_unique": {"key0": "text"},
    }[key_kind]
    primary = ("key0", "key1") if key_kind != "nullable_unique" else ()
    unique = ("key0",) if key_kind == "nullable_unique" else ()
    main_kinds = {
        **key_types,
        "clock": clock_kind,
        "dint": "int",
        "dtext": "text",
        "link": "int",
        "subject": "int",
    }
    tabs = {
        "main": _table(draw, "main", tnames["main"], main_kinds, ex, primary, unique),
        "rel": _table(
            draw,
            "rel",
            tnames["rel"],
            {"id": "int", "status": "text", "score": "int", "owner": "int"},
            ex,
        ),
        "nest": _table(draw, "nest", tnames["nest"], {"id": "int", "kind": "text"}, ex),
        "holds": _table(
            draw,
            "holds",
            tnames["holds"],
            {"id": "int", "subject": "int", "released": "datetime", "note": "text"},
            ex,
        ),
        "dep": _table(
            draw,
            "dep",
            tnames["dep"],
            {
                "id": "int",
                **{f"link{i}": t for i, t in enumerate(key_types.values())},
                "dnote": "text",
                "dnum": "int",
            },
            ex,
        ),
        "dep2": _table(
            draw, "dep2", tnames["dep2"], {"id": "int", "plink": "int", "note": "text"}, ex
        ),
    }
    rows = _rows(draw, tabs, key_kind, clock_kind, cut, tz)
    policy = _policy(draw, tabs, key_kind, clock_kind, period, tz, now, ex)
    hash_key = HASH_KEYS[
        draw(st.sampled_from([k for k in HASH_KEYS if ex.allows(f"hash_key:{k}")]))
    ]
    return Case(backend, tuple(tabs.values()), rows, policy, now, hash_key)


def _rows(
    draw: st.DrawFn,
    tabs: dict[str, Tab],
    key_kind: str,
    clock_kind: str,
    cut: datetime,
    tz: str,
) -> dict[str, list[dict[str, Any]]]:
    def pick(values: tuple[Any, ...]) -> Any:
        return draw(st.sampled_from(values))

    main = tabs["main"].roles
    n = draw(st.integers(0, 10))
    keys: list[tuple[Any, ...]]
    if key_kind == "int":
        keys = [
            (k,) for k in draw(st.lists(st.integers(1, 40), min_size=n, max_size=n, unique=True))
        ]
    elif key_kind == "composite":
        pairs = st.tuples(st.integers(1, 4), st.sampled_from(("x", "y", "z")))
        keys = draw(st.lists(pairs, min_size=n, max_size=n, unique=True))
    else:
        texts = st.lists(st.sampled_from(TEXT_KEYS), min_size=n, max_size=n, unique=True)
        keys = [(k,) for k in draw(texts)]
        if key_kind == "nullable_unique":
            keys = [(None,) if draw(st.integers(0, 4)) == 0 else k for k in keys]
    n = len(keys)
    clocks = _clock_values(draw, clock_kind, cut, tz, n)
    main_rows = []
    for key, clock in zip(keys, clocks, strict=True):
        row = {main[f"key{i}"]: part for i, part in enumerate(key)}
        row |= {
            main["clock"]: clock,
            main["dint"]: pick(INTS),
            main["dtext"]: pick(TEXTS),
            main["link"]: pick((None, 1, 2, 3, 4, 99)),
            main["subject"]: pick((None, 1, 2, 3)),
        }
        main_rows.append(row)

    def ids(role: str, top: int) -> list[int]:
        return sorted(draw(st.sets(st.integers(1, top), max_size=top)))

    rel, nest, holds, dep, dep2 = (tabs[r].roles for r in ("rel", "nest", "holds", "dep", "dep2"))
    released = (None, None, cut.replace(tzinfo=None) - timedelta(days=1))
    width = 2 if key_kind == "composite" else 1
    dep_links: list[tuple[Any, ...]] = [*keys, (None,) * width]
    dep_links += (
        [(7, "q")] if key_kind == "composite" else [(77,)] if key_kind == "int" else [("nope",)]
    )
    dep_ids = ids("dep", 10)
    return {
        tabs["main"].name: main_rows,
        tabs["rel"].name: [
            {
                rel["id"]: i,
                rel["status"]: pick(TEXTS),
                rel["score"]: pick(INTS),
                rel["owner"]: pick((None, 1, 2, 3)),
            }
            for i in ids("rel", 4)
        ],
        tabs["nest"].name: [
            {nest["id"]: i, nest["kind"]: pick((None, "staff", "guest"))} for i in ids("nest", 3)
        ],
        tabs["holds"].name: [
            {
                holds["id"]: i,
                holds["subject"]: pick((None, 1, 2, 3)),
                holds["released"]: pick(released),
                holds["note"]: pick(TEXTS),
            }
            for i in ids("holds", 4)
        ],
        tabs["dep"].name: [
            {
                dep["id"]: i,
                **dict(
                    zip(
                        [dep[f"link{j}"] for j in range(width)], pick(tuple(dep_links)), strict=True
                    )
                ),
                dep["dnote"]: pick(TEXTS),
                dep["dnum"]: pick(INTS),
            }
            for i in dep_ids
        ],
        tabs["dep2"].name: [
            {dep2["id"]: i, dep2["plink"]: pick((None, 99, *dep_ids)), dep2["note"]: pick(TEXTS)}
            for i in ids("dep2", 6)
        ],
    }


def _strategy(draw: st.DrawFn, kind: str, ex: Exclusions) -> Any:
    if kind == "int":
        options: list[Any] = [None, {"value": 0}]
    else:
        options = [
            None,
            "redact",
            "truncate_ip",
            {"value": "gone"},
            {"hash": {"prefix": HASH_PREFIX}},
        ]
    options = [o for o in options if ex.allows(f"strategy:{_strategy_name(o)}")]
    return draw(st.sampled_from(options))


def _strategy_name(strategy: Any) -> str:
    if strategy is None:
        return "null"
    return strategy if isinstance(strategy, str) else next(iter(strategy))


def _set(draw: st.DrawFn, tab: Tab, columns: dict[str, str], ex: Exclusions) -> dict[str, Any]:
    chosen = draw(st.lists(st.sampled_from(list(columns)), min_size=1, max_size=2, unique=True))
    return {tab.roles[r]: _strategy(draw, columns[r], ex) for r in chosen}


def _policy(
    draw: st.DrawFn,
    tabs: dict[str, Tab],
    key_kind: str,
    clock_kind: str,
    period: str,
    tz: str,
    now: datetime,
    ex: Exclusions,
) -> dict[str, Any]:
    main = tabs["main"]
    keys = [main.roles[r] for r in ("key0", "key1") if r in main.roles]
    rule: dict[str, Any] = {"name": "r1", "table": main.name}
    if key_kind == "nullable_unique" or draw(st.booleans()):
        rule["key"] = keys
    rule["clock"] = main.roles["clock"]
    if clock_kind in ("unix_s", "unix_ms"):
        rule["clock_unit"] = "seconds" if clock_kind == "unix_s" else "milliseconds"
    rule["after"] = period
    cond = condition(tabs, "main", now, ex)
    if draw(st.integers(0, 2)) == 0:
        rule["where"] = draw(cond)
    if draw(st.integers(0, 2)) > 0:
        rule["unless"] = draw(cond)
    policy: dict[str, Any] = {
        "version": 1,
        "defaults": {"timezone": tz, "guard": {"max_fraction": 1}},
    }
    if draw(st.booleans()):
        holds = tabs["holds"]
        active: Any = {holds.roles["released"]: {"is_null": True}}
        if draw(st.booleans()):
            active = draw(condition(tabs, "holds", now, ex, depth=1))
        policy["holds"] = {
            "table": holds.name,
            "subject_column": holds.roles["subject"],
            "active": active,
        }
        rule["hold_subject"] = main.roles["subject"]
    rule["action"] = draw(st.sampled_from(["delete", "anonymise"]))
    if rule["action"] == "anonymise":
        rule["set"] = _set(draw, main, {"dint": "int", "dtext": "text"}, ex)
    rule["batch_size"] = draw(st.integers(1, 4))
    actions = [a for a in ("delete", "anonymise", "detach") if ex.allows(f"cascade:{a}")]
    if draw(st.booleans()) and actions:
        dep, dep2 = tabs["dep"], tabs["dep2"]
        cascade: dict[str, Any] = {
            "table": dep.name,
            "on": {dep.roles[f"link{i}"]: k for i, k in enumerate(keys)},
            "action": draw(st.sampled_from(actions)),
        }
        if cascade["action"] == "anonymise":
            cascade["set"] = _set(draw, dep, {"dnote": "text", "dnum": "int"}, ex)
        if ex.allows("cascade:where") and draw(st.integers(0, 2)) == 0:
            cascade["where"] = draw(condition(tabs, "dep", now, ex, depth=1))
        if cascade["action"] == "delete" and draw(st.booleans()):
            nested: dict[str, Any] = {
                "table": dep2.name,
                "on": {dep2.roles["plink"]: dep.roles["id"]},
                "action": draw(st.sampled_from(actions)),
            }
            if nested["action"] == "anonymise":
                nested["set"] = _set(draw, dep2, {"note": "text"}, ex)
            cascade["cascade"] = [nested]
        rule["cascade"] = [cascade]
    policy["rules"] = [rule]
    return policy
