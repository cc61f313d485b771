"""Hypothesis strategies for the differential tester's policies over the generated schema.

The rule ``r1`` acts on the ``main`` table with every key of a rule: ``key``, a clock in
every unit, ``where``, ``unless``, holds, each action with every strategy (``mask`` and
``truncate_date`` with a ``mark`` column, which a strategy whose result cannot be
recognised needs), and cascades of each action, nested. Sometimes a second rule ``r2``
deletes old rows of the ``rel`` table, before or after ``r1`` in the file: when ``r1``
reads ``rel``, SPEC's rule order runs ``r2`` first, whatever the file says.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from hypothesis import strategies as st

from differential.conditions import Exclusions, Tab, condition

HASH_PREFIX = "anon-"


def strategy_name(strategy: Any) -> str:
    if strategy is None:
        return "null"
    return strategy if isinstance(strategy, str) else next(iter(strategy))


def _strategy(draw: st.DrawFn, kind: str, ex: Exclusions) -> Any:
    options: list[Any]
    if kind == "int":
        options = [None, {"value": 0}]
    elif kind == "datetime":
        options = [None, {"truncate_date": "month"}, {"truncate_date": "year"}]
    else:
        options = [
            None,
            "redact",
            "truncate_ip",
            {"value": "gone"},
            {"hash": {"prefix": HASH_PREFIX}},
            {"mask": {"keep_last": 0, "char": "*"}},
            {"mask": {"keep_last": 2, "char": "#"}},
            {"mask": {"keep_last": 4, "char": "*"}},
        ]
    options = [o for o in options if ex.allows(f"strategy:{strategy_name(o)}")]
    return draw(st.sampled_from(options))


def _set(draw: st.DrawFn, tab: Tab, columns: dict[str, str], ex: Exclusions) -> dict[str, Any]:
    chosen = draw(st.lists(st.sampled_from(list(columns)), min_size=1, max_size=2, unique=True))
    return {tab.roles[r]: _strategy(draw, columns[r], ex) for r in chosen}


def policy(
    draw: st.DrawFn,
    tabs: dict[str, Tab],
    key_kind: str,
    clock_kind: str,
    periods: tuple[str, str],
    tz: str,
    now: datetime,
    ex: Exclusions,
) -> dict[str, Any]:
    """The policy: ``r1`` on ``main`` after ``periods[0]``, perhaps ``r2`` on ``rel``
    after ``periods[1]``."""
    main = tabs["main"]
    keys = [main.roles[r] for r in ("key0", "key1") if r in main.roles]
    rule: dict[str, Any] = {"name": "r1", "table": main.name}
    if key_kind == "nullable_unique" or draw(st.booleans()):
        rule["key"] = keys
    rule["clock"] = main.roles["clock"]
    if clock_kind in ("unix_s", "unix_ms"):
        rule["clock_unit"] = "seconds" if clock_kind == "unix_s" else "milliseconds"
    rule["after"] = periods[0]
    cond = condition(tabs, "main", now, ex)
    if draw(st.integers(0, 2)) == 0:
        rule["where"] = draw(cond)
    if draw(st.integers(0, 2)) > 0:
        rule["unless"] = draw(cond)
    out: dict[str, Any] = {
        "version": 1,
        "defaults": {"timezone": tz, "guard": {"max_fraction": 1}},
    }
    if draw(st.booleans()):
        holds = tabs["holds"]
        active: Any = {holds.roles["released"]: {"is_null": True}}
        if draw(st.booleans()):
            active = draw(condition(tabs, "holds", now, ex, depth=1))
        out["holds"] = {
            "table": holds.name,
            "subject_column": holds.roles["subject"],
            "active": active,
        }
        rule["hold_subject"] = main.roles["subject"]
    rule["action"] = draw(st.sampled_from(["delete", "anonymise"]))
    if rule["action"] == "anonymise":
        rule["set"] = _set(draw, main, {"dint": "int", "dtext": "text", "dwhen": "datetime"}, ex)
        masked = any(strategy_name(s) == "mask" for s in rule["set"].values())
        if masked or draw(st.integers(0, 2)) == 0:
            rule["mark"] = main.roles["marked"]
    rule["batch_size"] = draw(st.integers(1, 4))
    _cascade(draw, tabs, keys, rule, now, ex)
    out["rules"] = [rule]
    if ex.allows("policy:two_rules") and draw(st.integers(0, 2)) == 0:
        second = _rel_rule(draw, tabs, periods[1], now, ex)
        # Mostly after r1 in the file, where the rule order has something to move.
        out["rules"].insert(draw(st.sampled_from([1, 1, 0])), second)
    return out


def _cascade(
    draw: st.DrawFn,
    tabs: dict[str, Tab],
    keys: list[str],
    rule: dict[str, Any],
    now: datetime,
    ex: Exclusions,
) -> None:
    actions = [a for a in ("delete", "anonymise", "detach") if ex.allows(f"cascade:{a}")]
    if not actions or not draw(st.booleans()):
        return
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


def _rel_rule(
    draw: st.DrawFn, tabs: dict[str, Tab], period: str, now: datetime, ex: Exclusions
) -> dict[str, Any]:
    """``r2``: delete the ``rel`` rows closed before ``period``, perhaps with a
    condition of its own (which may read ``nest``, which no rule deletes)."""
    rel = tabs["rel"]
    rule: dict[str, Any] = {
        "name": "r2",
        "table": rel.name,
        "clock": rel.roles["closed"],
        "after": period,
    }
    if draw(st.booleans()):
        rule["where" if draw(st.booleans()) else "unless"] = draw(
            condition(tabs, "rel", now, ex, depth=1)
        )
    rule["action"] = "delete"
    rule["batch_size"] = draw(st.integers(1, 4))
    return rule
