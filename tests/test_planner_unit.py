"""The planner without a database: a schema declared here, a policy, each backend.

``make_plan`` is pure, so these tests need no connection: they hold the order and kinds of
a plan's steps, how the dependents' steps find their parent rows, and the SQL a few
statements compile to on each database. The policy walker and ``Catalog.link`` are held
here too, being what the planner and the schema check stand on.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    DateTime,
    Dialect,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
)
from sqlalchemy.dialects import mysql, postgresql, sqlite

from retention.backends import backend_for
from retention.catalog import Catalog
from retention.plan import (
    CUTOFF,
    IN_BATCH,
    KEYS,
    PARENT_VALUES,
    UPTO,
    Plan,
    RulePlan,
    StepKind,
    last_key,
    render,
)
from retention.planner import make_plan
from retention.policy.loader import load_policy_bytes
from retention.policy.model import Policy
from retention.policy.walk import Node, NodeKind, nodes, walk

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
#: the databases whose batches run their statements one by one (PostgreSQL: in one)
STEPWISE = ("sqlite", "mysql")
DIALECTS: dict[str, Dialect] = {
    "sqlite": sqlite.dialect(),
    "postgresql": postgresql.psycopg.dialect(),  # type: ignore[no-untyped-call]
    "mysql": mysql.pymysql.dialect(),
}


def schema() -> MetaData:
    meta = MetaData()
    Table(
        "accounts",
        meta,
        Column("id", Integer, primary_key=True),
        Column("username", String(80), nullable=False),
        Column("phone", String(40)),
        Column("closed_at", DateTime),
        Column("anonymised_at", DateTime),
        Column("birthday", Date),
    )
    Table(
        "tickets",
        meta,
        Column("id", Integer, primary_key=True),
        Column("account_id", ForeignKey("accounts.id")),
        Column("status", String(20), nullable=False),
    )
    Table(
        "feedback",
        meta,
        Column("id", Integer, primary_key=True),
        Column("account_id", Integer),
        Column("ticket_id", ForeignKey("tickets.id")),
        Column("submitted_at", DateTime, nullable=False),
    )
    Table(
        "feedback_contacts",
        meta,
        Column("id", Integer, primary_key=True),
        Column("feedback_id", ForeignKey("feedback.id"), nullable=False),
        Column("phone", String(40)),
    )
    Table(
        "contact_notes",
        meta,
        Column("id", Integer, primary_key=True),
        Column("contact_id", ForeignKey("feedback_contacts.id")),
        Column("note", String(200)),
    )
    Table(
        "legal_holds",
        meta,
        Column("id", Integer, primary_key=True),
        Column("subject_id", Integer, nullable=False),
        Column("released_at", DateTime),
    )
    Table(
        "sessions",
        meta,
        Column("tenant", String(20), primary_key=True),
        Column("sid", BigInteger, primary_key=True),
        Column("started_at", Integer, nullable=False),
    )
    return meta


POLICY = b"""\
version: 1
holds: {table: legal_holds, subject_column: subject_id, active: {released_at: {is_null: true}}}
rules:
  - name: feedback
    table: feedback
    clock: submitted_at
    after: P3M
    unless:
      - related: {table: tickets, on: {id: ticket_id}, where: {status: {in: [open]}}}
    hold_subject: account_id
    action: delete
    cascade:
      - table: feedback_contacts
        on: {feedback_id: id}
        cascade:
          - table: contact_notes
            on: {contact_id: id}
            action: detach
  - name: accounts
    table: accounts
    clock: closed_at
    after: 30 days
    action: anonymise
    mark: anonymised_at
    set: {username: {hash: {prefix: anon-}}, phone: null, birthday: {truncate_date: year}}
  - name: sessions
    table: sessions
    clock: started_at
    clock_unit: seconds
    after: 7 days
    action: delete
  - name: switched-off
    table: sessions
    clock: started_at
    clock_unit: seconds
    after: 1 day
    action: delete
    enabled: false
"""


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy_bytes(POLICY, "policies.yaml").policy


def plan_for(policy: Policy, dialect: str, rules: list[str] | None = None) -> Plan:
    return make_plan(policy, Catalog(schema(), None), NOW, backend_for(dialect), rules=rules)


def rule_plan(policy: Policy, dialect: str, name: str) -> RulePlan:
    [found] = [p for p in plan_for(policy, dialect).rules if p.name == name]
    return found


def sql(plan: RulePlan, kind: StepKind, dialect: str) -> str:
    return render(plan.statement(kind), DIALECTS[dialect])


@pytest.mark.parametrize("dialect", STEPWISE)  # PostgreSQL: test_one_statement.py
def test_steps_count_then_select_then_handle_dependents_then_the_rows(
    policy: Policy, dialect: str
) -> None:
    """Dependents are handled before their parents, nested ones first; the rows last."""
    plan = rule_plan(policy, dialect, "feedback")
    kinds = [s.kind for s in plan.steps if s.kind not in (StepKind.KEY_TOP, StepKind.SELECT_WINDOW)]
    assert kinds == [
        StepKind.COUNT_SELECTION,
        StepKind.COUNT_TOTAL,
        StepKind.COUNT_GUARD,
        StepKind.COUNT_TABLE_UPTO,
        StepKind.COUNT_DEPENDENTS,
        StepKind.COUNT_DEPENDENTS,
        StepKind.SELECT_FIRST,
        StepKind.SELECT_NEXT,
        StepKind.SELECT_DEPENDENTS,
        StepKind.APPLY_DEPENDENTS,
        StepKind.APPLY_DEPENDENTS,
        StepKind.APPLY,
    ]
    assert [s.label for s in plan.steps if s.kind in IN_BATCH] == [
        "select and lock dependents in feedback_contacts",
        "detach dependents in contact_notes",
        "delete dependents in feedback_contacts",
        "delete the batch's rows in feedback",
    ]


def test_only_mysql_with_one_integer_key_looks_for_batches_in_windows_of_keys(
    policy: Policy,
) -> None:
    """The highest key is read first, and the window's selection sits before the next one."""
    for dialect in DIALECTS:
        kinds = [s.kind for s in rule_plan(policy, dialect, "feedback").steps]
        windowed = StepKind.KEY_TOP in kinds
        assert windowed == (dialect == "mysql"), dialect
        assert (StepKind.SELECT_WINDOW in kinds) == windowed
        if windowed:
            order = [k for k in kinds if k.name.startswith(("KEY_TOP", "SELECT_"))]
            assert order[:4] == [
                StepKind.KEY_TOP,
                StepKind.SELECT_FIRST,
                StepKind.SELECT_WINDOW,
                StepKind.SELECT_NEXT,
            ]
    composite = rule_plan(policy, "mysql", "sessions")
    assert composite.step(StepKind.SELECT_WINDOW) is None


def test_a_dependents_step_reads_its_parent_values_from_the_rows_before_it(
    policy: Policy,
) -> None:
    """Top-level cascades read the batch's rows; a nested one reads its parent's selection."""
    plan = rule_plan(policy, "sqlite", "feedback")
    steps = list(plan.steps)
    select_contacts = next(s for s in steps if s.kind is StepKind.SELECT_DEPENDENTS)
    detach_notes, delete_contacts = (s for s in steps if s.kind is StepKind.APPLY_DEPENDENTS)
    assert plan.fetch == ("id",)
    assert (select_contacts.source, select_contacts.columns) == (None, (0,))
    assert (delete_contacts.source, delete_contacts.columns) == (None, (0,))
    assert detach_notes.source == steps.index(select_contacts)
    assert detach_notes.columns == (0,)  # feedback_contacts.id, the one column selected
    assert (detach_notes.table, delete_contacts.table) == ("contact_notes", "feedback_contacts")


@pytest.mark.parametrize("dialect", list(DIALECTS))
def test_batches_walk_the_key_forward_by_the_named_parameters(policy: Policy, dialect: str) -> None:
    single = rule_plan(policy, dialect, "feedback")
    following_kind = StepKind.BATCH_NEXT if single.one_statement else StepKind.SELECT_NEXT
    assert f"feedback.id > :{last_key(0)}" in str(single.statement(following_kind))
    composite = rule_plan(policy, dialect, "sessions")
    following = str(composite.statement(following_kind))
    assert f"sessions.tenant >= :{last_key(0)}" in following
    assert f"sessions.sid > :{last_key(1)}" in following
    assert composite.key == ("tenant", "sid")
    window = single.step(StepKind.SELECT_WINDOW)
    if window is not None:
        assert f"feedback.id <= :{UPTO}" in str(window.statement)


@pytest.mark.parametrize("dialect", list(DIALECTS))
def test_batch_selections_lock_their_rows_on_the_servers_only(policy: Policy, dialect: str) -> None:
    plan = rule_plan(policy, dialect, "feedback")
    if plan.one_statement:  # the batch's rows, then the dependents' rows, in one statement
        for kind in (StepKind.BATCH_FIRST, StepKind.BATCH_NEXT):
            assert sql(plan, kind, dialect).count(" FOR UPDATE)") == 2, kind
        return
    for kind in (StepKind.SELECT_FIRST, StepKind.SELECT_NEXT, StepKind.SELECT_DEPENDENTS):
        assert ("FOR UPDATE" in sql(plan, kind, dialect)) == (dialect != "sqlite"), kind


def test_the_rows_are_removed_by_the_keys_bound_in_each_databases_fastest_form(
    policy: Policy,
) -> None:
    compiled = {d: sql(rule_plan(policy, d, "feedback"), StepKind.APPLY, d) for d in STEPWISE}
    assert compiled["sqlite"] == (
        "DELETE FROM feedback WHERE feedback.id IN "
        "(SELECT anon_1.value FROM json_each(?) AS anon_1)"
    )
    assert compiled["mysql"] == (
        f"DELETE FROM feedback WHERE feedback.id IN (<the integers of :{KEYS}, inline>)"
    )
    # PostgreSQL: by the array of the keys chosen in the same statement.
    fused = sql(rule_plan(policy, "postgresql", "feedback"), StepKind.BATCH_FIRST, "postgresql")
    assert re.search(
        r"DELETE FROM feedback WHERE feedback.id = ANY \(CAST\(\(SELECT "
        r"array_agg\(retention_chosen.id\) AS \w+ FROM retention_chosen\) AS INTEGER\[\]\)\)",
        fused,
    )
    composite = sql(rule_plan(policy, "postgresql", "sessions"), StepKind.BATCH_NEXT, "postgresql")
    assert (
        "DELETE FROM sessions WHERE (sessions.tenant, sessions.sid) "
        "IN (SELECT retention_chosen.tenant, retention_chosen.sid FROM retention_chosen)"
    ) in composite


def test_dependents_are_handled_by_the_parent_values_of_the_batch(policy: Policy) -> None:
    plan = rule_plan(policy, "mysql", "feedback")
    detach, delete = plan.steps_of(StepKind.APPLY_DEPENDENTS)
    assert render(delete.statement, DIALECTS["mysql"]) == (
        "DELETE FROM feedback_contacts WHERE feedback_contacts.feedback_id "
        f"IN (<the integers of :{PARENT_VALUES}, inline>)"
    )
    assert render(detach.statement, DIALECTS["mysql"]) == (
        "UPDATE contact_notes SET contact_id=NULL WHERE contact_notes.contact_id "
        f"IN (<the integers of :{PARENT_VALUES}, inline>)"
    )
    # PostgreSQL: by the distinct non-NULL links of the rows read before, in one statement.
    fused = sql(rule_plan(policy, "postgresql", "feedback"), StepKind.BATCH_FIRST, "postgresql")
    assert re.search(
        r"DELETE FROM feedback_contacts WHERE feedback_contacts.feedback_id = ANY \(CAST\(\("
        r"SELECT array_agg\(DISTINCT retention_chosen.id\) AS \w+ FROM retention_chosen "
        r"WHERE retention_chosen.id IS NOT NULL\) AS INTEGER\[\]\)\)",
        fused,
    )
    assert re.search(
        r"UPDATE contact_notes SET contact_id=NULL WHERE contact_notes.contact_id = ANY "
        r"\(CAST\(\(SELECT array_agg\(DISTINCT (retention_read_\d+).id\) AS \w+ "
        r"FROM \1 WHERE \1.id IS NOT NULL\) AS INTEGER\[\]\)\)",
        fused,
    )


@pytest.mark.parametrize("dialect", list(DIALECTS))
def test_counting_splits_the_rows_past_the_cutoff_in_one_scan_with_values_bound(
    policy: Policy, dialect: str
) -> None:
    plan = rule_plan(policy, dialect, "feedback")
    counted = plan.statement(StepKind.COUNT_SELECTION)
    text = str(counted)
    assert text.count("FROM feedback") == 1
    assert f"feedback.submitted_at < :{CUTOFF}" in text
    assert "EXISTS" in text and "legal_holds" in text and "tickets" in text
    params = counted.compile(dialect=DIALECTS[dialect]).params  # type: ignore[attr-defined]
    assert params[CUTOFF] == datetime(2026, 8, 30, 12, 0)  # naive UTC, as the column stores
    assert ["open"] in params.values()  # the condition's values are bound, not pasted
    assert "open" not in render(counted, DIALECTS[dialect])


def test_an_anonymise_rule_skips_marked_rows_and_sets_the_mark(policy: Policy) -> None:
    plan = rule_plan(policy, "postgresql", "accounts")
    text = sql(plan, StepKind.BATCH_FIRST, "postgresql")
    assert "retention_applied AS (UPDATE accounts SET username=" in text
    assert "anonymised_at=%(mark_time)s" in text
    assert "accounts.anonymised_at IS NULL" in text.split("retention_applied AS")[0]
    stepwise = rule_plan(policy, "mysql", "accounts")
    assert [s.label for s in stepwise.steps if s.kind is StepKind.APPLY] == [
        "anonymise the batch's rows in accounts"
    ]


def test_only_enabled_rules_are_planned_unless_rules_are_named(policy: Policy) -> None:
    assert [p.name for p in plan_for(policy, "sqlite").rules] == [
        "feedback",
        "accounts",
        "sessions",
    ]
    named = plan_for(policy, "sqlite", rules=["switched-off"])
    assert [p.name for p in named.rules] == ["switched-off"]
    assert named.dialect == "sqlite"


def test_a_clock_reading_without_a_timezone_is_refused(policy: Policy) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        make_plan(policy, Catalog(schema(), None), datetime(2026, 1, 1), backend_for("sqlite"))


# --- Catalog.link --------------------------------------------------------------------------


def test_a_link_is_implied_by_the_one_foreign_key_either_way_and_resolved_once() -> None:
    catalog = Catalog(schema(), None)
    feedback, contacts = catalog.table("feedback"), catalog.table("feedback_contacts")
    assert feedback is not None and contacts is not None
    assert catalog.link(None, contacts, feedback) == ({"feedback_id": "id"}, None)
    assert catalog.link(None, feedback, contacts) == ({"id": "feedback_id"}, None)
    assert catalog.link({"feedback_id": "id"}, contacts, feedback) == ({"feedback_id": "id"}, None)
    first, _ = catalog.link(None, contacts, feedback)
    assert first is not None
    first["tampered"] = "x"  # a caller's copy: the cached link is unchanged
    assert catalog.link(None, contacts, feedback) == ({"feedback_id": "id"}, None)


def test_no_foreign_key_between_two_tables_gives_the_reason() -> None:
    catalog = Catalog(schema(), None)
    holds, sessions = catalog.table("legal_holds"), catalog.table("sessions")
    assert holds is not None and sessions is not None
    mapping, reason = catalog.link(None, holds, sessions)
    assert mapping is None
    assert reason == ("no foreign key between legal_holds and sessions: name the link in 'on'")


# --- the policy walker ---------------------------------------------------------------------


def test_the_walker_yields_every_node_in_document_order_with_its_path(policy: Policy) -> None:
    found = [(n.kind, n.path, n.table, n.links_to) for n in nodes(policy)][:8]
    assert found == [
        (NodeKind.HOLDS, ("holds",), "legal_holds", None),
        (NodeKind.CONDITION, ("holds", "active"), "legal_holds", None),
        (NodeKind.RULE, ("rules", 0), "feedback", None),
        (NodeKind.CONDITION, ("rules", 0, "unless", 0), "feedback", None),
        (NodeKind.RELATED, ("rules", 0, "unless", 0, "related"), "tickets", "feedback"),
        (NodeKind.CONDITION, ("rules", 0, "unless", 0, "related", "where"), "tickets", None),
        (NodeKind.CASCADE, ("rules", 0, "cascade", 0), "feedback_contacts", "feedback"),
        (
            NodeKind.CASCADE,
            ("rules", 0, "cascade", 0, "cascade", 0),
            "contact_notes",
            "feedback_contacts",
        ),
    ]


def test_a_visitor_returning_false_skips_what_is_below_the_node(policy: Policy) -> None:
    seen: list[tuple[str | int, ...]] = []

    def visit(node: Node) -> bool:
        seen.append(node.path)
        return node.kind is not NodeKind.RULE

    walk(policy, visit)
    assert seen == [
        ("holds",),
        ("holds", "active"),
        ("rules", 0),
        ("rules", 1),
        ("rules", 2),
        ("rules", 3),
    ]
