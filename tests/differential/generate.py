"""Hypothesis strategies for the differential tester: a schema, its rows, a policy
(``policies.py``), a clock.

Six tables play fixed roles under drawn names: the rule's ``main`` table (with a
date/time column for ``truncate_date`` and a ``mark`` column), a ``rel`` table
(tickets-like, closed at a time of its own) that ``unless`` reads and a second rule may
delete from, a ``nest`` table that ``rel`` refers to (nested
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

from differential.conditions import INTS, PERIODS, TEXTS, Case, Col, Exclusions, Tab
from differential.oracle import cutoff_of, unix_micros
from differential.policies import policy

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
# Values of a date/time column that truncate_date may set: some already the first of
# their month or year, one with microseconds.
WHENS = (
    None,
    datetime(2023, 1, 1),
    datetime(2023, 3, 1),
    datetime(2023, 3, 17, 13, 5, 7, 250_000),
    datetime(2024, 12, 31, 23, 59, 59),
)
CLOCK_KINDS = ("datetime", "tz", "date", "unix_s", "unix_ms")
TIMEZONES = ("UTC", "Europe/Berlin", "America/New_York", "Asia/Shanghai")
TEXT_KEYS = ("a", "b", "c", "aa", "ab", "b1", "10", "9", "z-1", "k_2", "ü", "")
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
    periods = (draw(st.sampled_from(PERIODS)), draw(st.sampled_from(PERIODS)))
    cut = cutoff_of(now, periods[0], tz)

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
        "dwhen": "datetime",
        "marked": "datetime",
    }
    tabs = {
        "main": _table(draw, "main", tnames["main"], main_kinds, ex, primary, unique),
        "rel": _table(
            draw,
            "rel",
            tnames["rel"],
            {"id": "int", "status": "text", "score": "int", "owner": "int", "closed": "datetime"},
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
    rel_cut = cutoff_of(now, periods[1], tz)
    rows = _rows(draw, tabs, key_kind, clock_kind, (cut, rel_cut), tz)
    drawn = policy(draw, tabs, key_kind, clock_kind, periods, tz, now, ex)
    hash_key = HASH_KEYS[
        draw(st.sampled_from([k for k in HASH_KEYS if ex.allows(f"hash_key:{k}")]))
    ]
    return Case(backend, tuple(tabs.values()), rows, drawn, now, hash_key)


def _rows(
    draw: st.DrawFn,
    tabs: dict[str, Tab],
    key_kind: str,
    clock_kind: str,
    cuts: tuple[datetime, datetime],
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
    cut = cuts[0]
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
            main["dwhen"]: pick(WHENS),
            main["marked"]: pick((None, None, datetime(2023, 5, 5, 5, 5, 5))),
        }
        main_rows.append(row)

    def ids(role: str, top: int) -> list[int]:
        return sorted(draw(st.sets(st.integers(1, top), max_size=top)))

    rel, nest, holds, dep, dep2 = (tabs[r].roles for r in ("rel", "nest", "holds", "dep", "dep2"))
    rel_ids = ids("rel", 4)
    closed = _clock_values(draw, "datetime", cuts[1], tz, len(rel_ids))
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
                rel["closed"]: when,
            }
            for i, when in zip(rel_ids, closed, strict=True)
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
