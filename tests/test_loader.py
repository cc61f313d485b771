"""Well-formed policies load: YAML 1.2 scalars, every condition form, 1-based positions.

The refusals are in ``test_malformed_policies.py``; these are the files that must pass,
and the positions a problem is reported at.
"""

from __future__ import annotations

import textwrap
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from retention.catalog import reflect
from retention.demo import demo_metadata
from retention.errors import PolicyError, Problem
from retention.policy.conditions import ConditionMap, Related
from retention.policy.conditions import Tests as ColumnTests  # not a pytest class
from retention.policy.loader import LoadedPolicy, load_policy, load_policy_bytes
from retention.schema_check import check_schema, policy_tables

ROOT = Path(__file__).resolve().parent.parent

RULE_HEAD = """\
version: 1
rules:
  - name: feedback-after-3-months
    table: feedback
    clock: submitted_at
    after: P3M
    action: delete
"""


def load(text: str) -> LoadedPolicy:
    return load_policy_bytes(textwrap.dedent(text).encode(), "policy.yaml")


def problems(text: str) -> list[Problem]:
    with pytest.raises(PolicyError) as caught:
        load(text)
    return list(caught.value.problems)


def where_of(text: str) -> ConditionMap:
    where = load(RULE_HEAD + text).policy.rules[0].where
    assert isinstance(where, ConditionMap)
    return where


# --- the shipped file ------------------------------------------------------------------


def test_the_shipped_policies_yaml_loads() -> None:
    loaded = load_policy(ROOT / "policies.yaml")
    assert loaded.policy.version == 1
    assert loaded.policy.rules
    assert len(loaded.sha256) == 64


def test_the_shipped_policies_yaml_fits_the_demo_schema(tmp_path: Path) -> None:
    loaded = load_policy(ROOT / "policies.yaml")
    engine = create_engine(f"sqlite:///{tmp_path / 'demo.db'}")
    try:
        demo_metadata().create_all(engine)
        with engine.connect() as conn:
            catalog = reflect(conn, policy_tables(loaded.policy))
    finally:
        engine.dispose()
    assert check_schema(loaded.policy, catalog, loaded.locator) == []


# --- YAML 1.2 scalars ------------------------------------------------------------------


def test_yes_no_and_on_stay_text_under_yaml_1_2() -> None:
    where = where_of("    where: {answer: no, consent: yes, mode: on, flag: off}\n")
    assert dict(where.columns()) == {"answer": "no", "consent": "yes", "mode": "on", "flag": "off"}


def test_on_as_a_key_is_the_word_on_not_true() -> None:
    where = where_of(
        """\
    where:
      related:
        table: tickets
        on: {id: ticket_id}
    """
    )
    assert isinstance(where.related, Related)
    assert where.related.on == {"id": "ticket_id"}


def test_true_and_false_are_booleans_and_plain_dates_are_dates() -> None:
    text = RULE_HEAD + "    enabled: false\n    where: {submitted_at: {lt: 2024-01-31}}\n"
    rule = load(text).policy.rules[0]
    assert rule.enabled is False
    assert isinstance(rule.where, ConditionMap)
    test = dict(rule.where.columns())["submitted_at"]
    assert isinstance(test, ColumnTests)
    assert test.items() == [("lt", date(2024, 1, 31))]


# --- conditions (SPEC section 2) -------------------------------------------------------


def test_every_test_operator_parses() -> None:
    where = where_of(
        """\
    where:
      a: {eq: 1}
      b: {ne: x}
      c: {lt: 2.5}
      d: {le: 3}
      e: {gt: -1}
      f: {ge: 0}
      g: {in: [open, pending]}
      h: {not_in: [1, 2]}
      i: {is_null: true}
      j: {older_than: P3M}
      k: {newer_than: 30 days}
      l: {gt: 1, lt: 9}
      m: bare value means equality
    """
    )
    tests = dict(where.columns())
    operators = {
        name: [op for op, _ in t.items()] for name, t in tests.items() if isinstance(t, ColumnTests)
    }
    assert operators == {
        "a": ["eq"],
        "b": ["ne"],
        "c": ["lt"],
        "d": ["le"],
        "e": ["gt"],
        "f": ["ge"],
        "g": ["in"],
        "h": ["not_in"],
        "i": ["is_null"],
        "j": ["older_than"],
        "k": ["newer_than"],
        "l": ["lt", "gt"],
    }
    assert tests["m"] == "bare value means equality"
    assert str(dict(tests["j"].items())["older_than"]) == "P3M"


def test_one_mapping_mixes_column_tests_and_related() -> None:
    where = where_of(
        """\
    where:
      submitted_at: {older_than: P3M}
      channel: app
      related: {table: tickets, on: {id: ticket_id}, where: {status: closed}}
    """
    )
    assert [name for name, _ in where.columns()] == ["submitted_at", "channel"]
    assert where.related is not None
    assert where.related.table == "tickets"


def test_reserved_words_are_never_column_names() -> None:
    where = where_of(
        """\
    where:
      all: [{channel: app}, {channel: web}]
      any: [{body: a}, {body: b}]
      not: {channel: email}
    """
    )
    assert where.columns() == []
    assert where.all_ is not None and len(where.all_) == 2
    assert where.any_ is not None and len(where.any_) == 2
    assert isinstance(where.not_, ConditionMap)


def test_a_list_where_a_condition_is_expected_means_any() -> None:
    unless = (
        load(RULE_HEAD + "    unless: [{channel: app}, {channel: web}]\n").policy.rules[0].unless
    )
    assert isinstance(unless, list)
    assert [dict(c.columns()) for c in unless] == [{"channel": "app"}, {"channel": "web"}]


def test_related_nests_inside_related_where() -> None:
    where = where_of(
        """\
    where:
      related:
        table: tickets
        on: {id: ticket_id}
        where:
          status: closed
          related:
            table: accounts
            on: {id: account_id}
            where:
              not: {related: {table: legal_holds, on: {subject_id: id}}}
    """
    )
    inner = where.related.where if where.related else None
    assert isinstance(inner, ConditionMap) and inner.related is not None
    assert inner.related.table == "accounts"
    innermost = inner.related.where
    assert isinstance(innermost, ConditionMap) and isinstance(innermost.not_, ConditionMap)
    assert innermost.not_.related is not None
    assert innermost.not_.related.table == "legal_holds"


def test_holds_active_is_a_condition() -> None:
    text = """\
    version: 1
    holds:
      table: legal_holds
      subject_column: subject_id
      active: {released_at: {is_null: true}, any: [{reason: dispute}, {reason: court}]}
    rules:
      - name: r
        table: feedback
        clock: submitted_at
        after: 0 days
        hold_subject: account_id
        action: delete
    """
    holds = load(text).policy.holds
    assert holds is not None and isinstance(holds.active, ConditionMap)


# --- positions -------------------------------------------------------------------------


def test_positions_are_1_based_from_the_first_character_of_the_file() -> None:
    found = {p.field: p for p in problems("versio: 1\nrules: [{}]\n")}
    assert (found["versio"].line, found["versio"].column) == (1, 1)
    assert "did you mean 'version'?" in found["versio"].message


def test_an_unknown_key_in_a_rule_is_reported_at_the_key() -> None:
    (problem,) = problems(RULE_HEAD + "    batchsize: 10\n")
    assert (problem.line, problem.column) == (8, 5)
    assert problem.rule == "feedback-after-3-months"
    assert problem.field == "batchsize"
    assert "did you mean 'batch_size'?" in problem.message


def test_a_bad_value_is_reported_at_the_value() -> None:
    text = RULE_HEAD.replace("after: P3M", "after:   P3 months")
    (problem,) = problems(text)
    assert (problem.line, problem.column) == (6, 14)
    assert problem.field == "after"


def test_a_nested_value_is_reported_at_its_own_position() -> None:
    line = "    where: {channel: {in: [app, web]}, body: {older_than: soon}}"
    (problem,) = problems(RULE_HEAD + line + "\n")
    assert (problem.line, problem.column) == (8, line.index("soon") + 1)
    assert problem.field == "where.body.older_than"


def test_a_problem_renders_as_one_file_line_col_line() -> None:
    (problem,) = problems(RULE_HEAD + "    sleep: -1\n")
    assert str(problem).startswith("policy.yaml:8:12: rule 'feedback-after-3-months': sleep: ")
    assert "\n" not in str(problem)


# --- numbers at the edges of what a database binds --------------------------------------


def test_whole_numbers_at_the_bigint_bounds_are_accepted_in_conditions() -> None:
    bounds = "{ge: -9223372036854775808, le: 9223372036854775807}"
    where = where_of(f"    where: {{ticket_id: {bounds}}}\n")
    tests = dict(where.columns())["ticket_id"]
    assert isinstance(tests, ColumnTests)
    assert tests.items() == [("le", 2**63 - 1), ("ge", -(2**63))]


@pytest.mark.parametrize("value", ["9223372036854775808", "-9223372036854775809"])
def test_a_whole_number_past_the_bigint_bounds_is_one_problem_at_its_value(value: str) -> None:
    found = problems(RULE_HEAD + f"    where: {{ticket_id: {value}}}\n")
    assert [(p.line, p.column, p.field) for p in found] == [(8, 24, "where.ticket_id")]
    assert "out of range" in found[0].message


def test_a_huge_negative_sleep_is_below_the_minimum_not_an_unreadable_number() -> None:
    found = problems(RULE_HEAD + "    sleep: -" + "9" * 400 + "\n")
    assert [(p.field, p.message) for p in found] == [
        ("sleep", "input should be greater than or equal to 0")
    ]
