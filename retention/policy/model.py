"""The policy file as a frozen pydantic model (SPEC section 2).

The model checks shape, types, ranges, periods, cron expressions and timezones. Checks
that relate several parts of the file (unique names, ``hold_subject`` needs ``holds``)
live in ``policy.semantics``; checks against a database live in ``schema_check``. The
JSON Schema printed by ``retention schema`` is derived from these classes. The scalar
types live in ``policy.fields``, conditions in ``policy.conditions`` and strategies in
``policy.strategies``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Discriminator,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    Tag,
    TypeAdapter,
)

from retention.policy.conditions import Condition, Related
from retention.policy.coverage import CoverageSettings
from retention.policy.fields import (
    MAX_INT,
    Cron,
    Frozen,
    Identifier,
    PeriodField,
    RuleName,
    TableName,
    Timezone,
    huge_as_infinite,
)
from retention.policy.strategies import SetMap

MaxRows = Annotated[StrictInt, Field(gt=0, le=MAX_INT)]
MaxFraction = Annotated[float, Field(gt=0, le=1, strict=False), BeforeValidator(huge_as_infinite)]


class Guard(Frozen):
    """Stop a rule before its first write when it would remove too much."""

    max_rows: MaxRows = Field(
        1_000_000, description="Most rows a rule may handle in one run (default 1000000)"
    )
    max_fraction: MaxFraction = Field(
        0.5,
        description="Largest share of the table a rule may handle, in (0, 1] (default 0.5)",
    )


class GuardOverride(Frozen):
    max_rows: MaxRows | None = Field(
        None, description="Most rows this rule may handle in one run (default: defaults.guard)"
    )
    max_fraction: MaxFraction | None = Field(
        None,
        description="Largest share of the table, in (0, 1] (default: defaults.guard)",
    )

    def over(self, base: Guard) -> Guard:
        return Guard(
            max_rows=self.max_rows if self.max_rows is not None else base.max_rows,
            max_fraction=self.max_fraction if self.max_fraction is not None else base.max_fraction,
        )


class Cascade(Frozen):
    """Dependent rows, handled in the same transaction as the rows they depend on."""

    table: TableName
    on: dict[Identifier, Identifier] | None = Field(
        default=None,
        min_length=1,
        description="{their column: our column}; optional when one foreign key links the tables",
    )
    where: Condition | None = Field(
        None,
        description="Only dependents matching this condition are handled (polymorphic links: "
        "{object_type: ticket}); a foreign key from this table to the parent must then be "
        "ON DELETE CASCADE or SET NULL",
    )
    action: Literal["delete", "anonymise", "detach"] = Field(
        "delete",
        description="delete (default), anonymise (with set) or detach (set the link to NULL)",
    )
    set: SetMap | None = Field(None, description="column: strategy, for action anonymise")
    cascade: list[Cascade] = Field(
        [], description="Rows that depend on these dependents, handled the same way"
    )


class RelatedColumn(Frozen):
    """A value read in a related row instead of the rule's own: ``clock`` or
    ``hold_subject`` one or more joins away."""

    related: Related = Field(
        description="The related row: {table, on: {their column: our column}, where}"
    )
    column: ColumnOrRelated = Field(
        description="The column read in the related table, or a further {related, column} "
        "reached from it"
    )


def _column_tag(value: Any) -> str | None:
    if isinstance(value, str):
        return "<column>"
    if isinstance(value, dict | RelatedColumn):
        return "<related>"
    return None


ColumnOrRelated = Annotated[
    Annotated[Identifier, Tag("<column>")] | Annotated[RelatedColumn, Tag("<related>")],
    Discriminator(
        _column_tag,
        custom_error_type="column_or_related",
        custom_error_message="expected a column name, or {related: {table, on}, column}",
    ),
]


def hops(value: str | RelatedColumn) -> tuple[list[Related], str]:
    """The relations a value is read through, outermost first, and its column."""
    out: list[Related] = []
    while isinstance(value, RelatedColumn):
        out.append(value.related)
        value = value.column
    return out, value


BatchSize = Annotated[StrictInt, Field(gt=0, le=1_000_000)]
Sleep = Annotated[float, Field(ge=0, le=3600, strict=False), BeforeValidator(huge_as_infinite)]
MaxLag = Annotated[float, Field(gt=0, le=86400, strict=False), BeforeValidator(huge_as_infinite)]


class EraseSettings(Frozen):
    """How ``retention erase`` applies a rule to one data subject's rows."""

    ignore_unless: StrictBool = Field(
        False,
        description="Erase the subject's rows even where the rule's unless would keep them "
        "(default false: unless keeps them, as in a run)",
    )


class Rule(Frozen):
    """One retention promise: which rows, how old, and what happens to them."""

    name: RuleName
    description: StrictStr | None = Field(None, description="Free text: what the rule is for")
    basis: StrictStr | None = Field(None, description="Free text: the legal or policy basis")
    table: TableName
    key: Annotated[list[Identifier], Field(min_length=1)] | None = Field(
        None, description="Columns naming a row (default: the primary key)"
    )
    clock: ColumnOrRelated = Field(
        description="The row's age: a date/time column (or Unix time with clock_unit), or "
        "{related: {table, on}, column} to read it in a related row"
    )
    clock_unit: Literal["seconds", "milliseconds"] | None = Field(
        None,
        description="The clock (its related column, when read through a relation) is an "
        "integer of Unix time in seconds or milliseconds",
    )
    after: PeriodField = Field(
        description="The retention period: a row is due when clock < now - after"
    )
    where: Condition | None = Field(None, description="Rows must also match this condition")
    unless: Condition | None = Field(None, description="A row matching this condition is kept")
    hold_subject: ColumnOrRelated | None = Field(
        None,
        description="Column naming the subject a legal hold is registered for (needs holds), "
        "or {related: {table, on}, column} to read it in a related row",
    )
    action: Literal["delete", "anonymise"] = Field(description="delete or anonymise")
    set: SetMap | None = Field(None, description="column: strategy, for action anonymise")
    mark: Identifier | None = Field(
        None,
        description="Nullable date/time column set to the run's clock; rows with it set are done",
    )
    cascade: list[Cascade] = Field(
        [], description="Dependent rows, handled in the same transaction"
    )
    batch_size: BatchSize | None = Field(
        None, description="Rows per batch (default: defaults.batch_size)"
    )
    sleep: Sleep | None = Field(
        None, description="Seconds to pause between batches (default: defaults.sleep)"
    )
    max_lag: MaxLag | None = Field(
        None,
        description="Seconds a replica may lag before batches pause (default: defaults.max_lag)",
    )
    guard: GuardOverride | None = Field(
        None, description="This rule's guard limits (default: defaults.guard)"
    )
    schedule: Cron | None = Field(
        None, description="5-field cron for serve (default: defaults.schedule)"
    )
    erase: EraseSettings = Field(
        EraseSettings(),
        description="How retention erase applies this rule to a data subject's rows "
        "(it needs hold_subject): {ignore_unless: false}",
    )
    enabled: StrictBool = Field(
        True, description="false parks the rule: it is not run, and validate checks it offline only"
    )


class Defaults(Frozen):
    timezone: Timezone = "UTC"
    schedule: Cron | None = Field(
        None,
        description="5-field cron for serve, for rules without one (default: none)",
    )
    batch_size: BatchSize = Field(5000, description="Rows per batch and transaction (default 5000)")
    sleep: Sleep = Field(0.0, description="Seconds to pause between batches (default 0)")
    max_lag: MaxLag | None = Field(
        None,
        description=(
            "Seconds a replica may lag before batches pause; after 10 x max_lag of waiting "
            "the rule stops partial (default: none, replicas not watched)"
        ),
    )
    guard: Guard = Field(
        Guard(), description="Stop a rule before its first write when it would remove too much"
    )


class AuditSettings(Frozen):
    table: Identifier = "retention_audit"
    record_keys: StrictBool = Field(
        False,
        description="Record the keys of the rows handled in the audit log (default false)",
    )


class Holds(Frozen):
    """The legal-hold registry: a subject with an ``active`` row here is kept."""

    table: TableName
    subject_column: Identifier
    active: Condition | None = Field(
        None, description="Which registry rows are active holds (default: every row)"
    )


class Policy(Frozen):
    """A whole policy file."""

    version: Literal[1] = Field(description="The file format's version: 1")
    defaults: Defaults = Field(
        Defaults(), description="Values every rule uses unless it sets its own"
    )
    audit: AuditSettings = Field(
        AuditSettings(), description="Where the audit log lives and what it records"
    )
    holds: Holds | None = Field(None, description="The legal-hold registry (optional)")
    rules: Annotated[list[Rule], Field(min_length=1)] = Field(
        description="The retention rules, run in file order (see the rule order)"
    )
    coverage: CoverageSettings = Field(
        CoverageSettings(),
        description="Settings of retention coverage: personal-looking columns reviewed",
    )

    def rule(self, name: str) -> Rule:
        for rule in self.rules:
            if rule.name == name:
                return rule
        raise KeyError(name)


POLICY_ADAPTER: TypeAdapter[Policy] = TypeAdapter(Policy)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the policy file, derived from the model."""
    schema = Policy.model_json_schema(by_alias=True, mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "retention policy"
    return schema
