"""The policy file as a frozen pydantic model (SPEC section 2).

The model checks shape, types, ranges, periods, cron expressions and timezones. Checks
that relate several parts of the file (unique names, ``hold_subject`` needs ``holds``)
live in ``policy.semantics``; checks against a database live in ``schema_check``. The
JSON Schema printed by ``retention schema`` is derived from these classes.
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainSerializer,
    PlainValidator,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    Tag,
    TypeAdapter,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError
from typing_extensions import TypeAliasType

from retention.periods import Period, parse_period
from retention.schedules import check_timezone, parse_cron

IDENTIFIER_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
TABLE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}(\.[A-Za-z_][A-Za-z0-9_]{0,63})?$"
RULE_NAME_PATTERN = r"^[a-z0-9]+(-[a-z0-9]+)*$"
RESERVED = frozenset({"related", "all", "any", "not"})
# The widest whole number every supported database binds (BIGINT); also the most rows a
# table can hold, so no guard needs more.
MAX_INT = 2**63 - 1
MIN_INT = -(2**63)
TEST_OPERATORS = (
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "in",
    "not_in",
    "is_null",
    "older_than",
    "newer_than",
    "starts_with",
    "ends_with",
    "contains",
)
TIME_TESTS = ("older_than", "newer_than")
TEXT_TESTS = ("starts_with", "ends_with", "contains")


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


Identifier = Annotated[
    StrictStr,
    Field(pattern=IDENTIFIER_PATTERN, description="A column or table name: letters, digits, _"),
]
TableName = Annotated[
    StrictStr,
    Field(pattern=TABLE_PATTERN, description="A table, optionally schema-qualified: schema.table"),
]
RuleName = Annotated[
    StrictStr,
    Field(pattern=RULE_NAME_PATTERN, max_length=63, description="lowercase letters, digits, '-'"),
]
Timezone = Annotated[
    StrictStr, AfterValidator(check_timezone), Field(description="An IANA timezone name")
]


def _period(value: Any) -> Period:
    if isinstance(value, Period):
        return value
    try:
        return parse_period(value)
    except ValueError as exc:
        raise PydanticCustomError("period", str(exc)) from None


PeriodField = Annotated[
    Period,
    PlainValidator(_period),
    PlainSerializer(str, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "description": "ISO 8601 duration (P3M, P1Y6M, P30D, PT12H) or '<n> <unit>'",
            "pattern": r"^(P(?!$)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+S)?)?"
            r"|\d+\s+(second|minute|hour|day|week|month|year)s?)$",
        }
    ),
]


MAX_CRON_CHARS = 200  # far longer than any real expression; keeps the message one short line


def _cron(value: Any) -> str:
    if not isinstance(value, str):
        raise PydanticCustomError("cron", "a schedule must be a quoted 5-field cron expression")
    if len(value) > MAX_CRON_CHARS:
        raise PydanticCustomError(
            "cron",
            f"a schedule of {len(value)} characters is not a cron expression: "
            "use 5 fields such as '0 3 * * *'",
        )
    try:
        parse_cron(value, "UTC")
    except ValueError as exc:
        raise PydanticCustomError("cron", str(exc)) from None
    return value


Cron = Annotated[
    str,
    PlainValidator(_cron),
    WithJsonSchema({"type": "string", "description": "5-field crontab expression"}),
]

Scalar: TypeAlias = StrictBool | StrictInt | StrictFloat | StrictStr | datetime | date


_SCALAR_TYPES = (bool, int, float, str, datetime, date)


def _single(value: Any) -> Any:
    # A PlainValidator replaces type checking, so the scalar types are checked here.
    if not isinstance(value, _SCALAR_TYPES):
        kind = "a list" if isinstance(value, list) else "a mapping"
        raise PydanticCustomError(
            "scalar",
            f"expected one value (text, a number, true/false or a date), got {kind}"
            + (": use {in: [...]} for a list of values" if isinstance(value, list) else ""),
        )
    # Checked here, not at run time: no database driver binds these.
    if isinstance(value, int) and not isinstance(value, bool) and not MIN_INT <= value <= MAX_INT:
        raise PydanticCustomError(
            "int_range",
            f"a whole number of {len(str(abs(value)))} digits is out of range: "
            f"numbers must lie between {MIN_INT} and {MAX_INT}",
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise PydanticCustomError(
            "finite_number", "not a finite number: infinity and NaN cannot be stored or compared"
        )
    return value


def _huge_as_infinite(value: Any) -> Any:
    # float() of a whole number beyond a double's range raises OverflowError, which
    # pydantic reports as "expected a number"; as infinity it meets the field's bounds.
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    return value


def _no_null(value: Any) -> Any:
    if value is None:
        raise PydanticCustomError(
            "null_value", "a comparison with null is never true: use {is_null: true}"
        )
    return _single(value)


def _fixed_value(value: Any) -> Any:
    if value is None:
        raise PydanticCustomError(
            "null_value", "a fixed value cannot be null: write the column as 'column: null'"
        )
    return _single(value)


Value = Annotated[Scalar, PlainValidator(_no_null, json_schema_input_type=Scalar)]
FixedValue = Annotated[Scalar, PlainValidator(_fixed_value, json_schema_input_type=Scalar)]
ValueList = Annotated[list[Value], Field(min_length=1)]


class Tests(_Frozen):
    """Tests on one column; every test given must hold."""

    eq: Value | None = Field(default=None, description="column = value")
    ne: Value | None = Field(
        default=None, description="column differs from value; holds for NULL (IS DISTINCT FROM)"
    )
    lt: Value | None = Field(default=None, description="column < value")
    le: Value | None = Field(default=None, description="column <= value")
    gt: Value | None = Field(default=None, description="column > value")
    ge: Value | None = Field(default=None, description="column >= value")
    in_: ValueList | None = Field(
        default=None, alias="in", description="column equals one of the values"
    )
    not_in: ValueList | None = Field(
        default=None, description="column equals none of the values; holds for NULL"
    )
    is_null: StrictBool | None = Field(
        default=None, description="true: column IS NULL; false: IS NOT NULL"
    )
    older_than: PeriodField | None = Field(
        default=None, description="column < now - period (a date/time or Unix-time column)"
    )
    newer_than: PeriodField | None = Field(
        default=None, description="column >= now - period (a date/time or Unix-time column)"
    )
    starts_with: Annotated[StrictStr, Field(min_length=1)] | None = Field(
        default=None, description="text begins with this literal text (case-sensitive)"
    )
    ends_with: Annotated[StrictStr, Field(min_length=1)] | None = Field(
        default=None, description="text ends with this literal text (case-sensitive)"
    )
    contains: Annotated[StrictStr, Field(min_length=1)] | None = Field(
        default=None, description="text contains this literal text (case-sensitive)"
    )
    unit: Literal["seconds", "milliseconds"] | None = Field(
        default=None,
        description="beside older_than/newer_than on an integer column: the column holds "
        "Unix time in these units",
    )

    @model_validator(mode="after")
    def _one_test_at_least(self) -> Tests:
        if not self.model_fields_set:
            raise PydanticCustomError(
                "empty_tests", "empty test: use one of " + ", ".join(TEST_OPERATORS)
            )
        for name in self.model_fields_set:
            if getattr(self, name) is None:
                raise PydanticCustomError(
                    "null_value", "a comparison with null is never true: use {is_null: true}"
                )
        if self.unit is not None and not self.model_fields_set & set(TIME_TESTS):
            raise PydanticCustomError(
                "unit", "unit is only valid beside older_than or newer_than (on an integer column)"
            )
        return self

    def items(self) -> list[tuple[str, Any]]:
        """The tests given, as (operator, value), in operator order; ``unit`` qualifies
        the time tests and is not a test itself."""
        out = []
        for name in Tests.model_fields:
            if name in self.model_fields_set and name != "unit":
                out.append((name.rstrip("_"), getattr(self, name)))
        return out


def _test_tag(value: Any) -> str:
    return "<tests>" if isinstance(value, dict) else "<value>"


ColumnTest = Annotated[
    Annotated[Tests, Tag("<tests>")] | Annotated[Value, Tag("<value>")],
    Discriminator(_test_tag),
]


class Related(_Frozen):
    """A row exists in another table, linked by ``on`` (their column: our column)."""

    table: TableName
    on: dict[Identifier, Identifier] | None = Field(
        default=None,
        min_length=1,
        description="{their column: our column}; optional when one foreign key links the tables",
    )
    where: Condition | None = Field(None, description="A condition the related row must also match")


class ConditionMap(BaseModel):
    """A mapping whose entries must all hold: column tests and reserved keys."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=True)
    __pydantic_extra__: dict[str, ColumnTest] = Field(init=False)

    related: Related | None = Field(
        None, description="A row exists in another table: {table, on, where}"
    )
    all_: Annotated[list[Condition], Field(min_length=1)] | None = Field(
        default=None, alias="all", description="Every condition in the list holds"
    )
    any_: Annotated[list[Condition], Field(min_length=1)] | None = Field(
        default=None, alias="any", description="At least one condition in the list holds"
    )
    not_: Condition | None = Field(
        default=None, alias="not", description="True exactly when the condition is not true"
    )

    @model_validator(mode="before")
    @classmethod
    def _check_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            if not data:
                raise PydanticCustomError("empty_condition", "empty condition")
            for key in data:
                if key in RESERVED:
                    continue
                if not isinstance(key, str) or not _is_identifier(key):
                    raise PydanticCustomError(
                        "identifier",
                        f"{str(key)[:40]!r} is not a column name "
                        "(letters, digits and _ only; no SQL is taken from the file)",
                    )
        return data

    def columns(self) -> list[tuple[str, Tests | Any]]:
        return list((self.__pydantic_extra__ or {}).items())


def _is_identifier(text: str) -> bool:
    return re.fullmatch(IDENTIFIER_PATTERN, text) is not None


def _condition_tag(value: Any) -> str | None:
    if isinstance(value, dict | ConditionMap):
        return "<mapping>"
    if isinstance(value, list):
        return "<list>"
    return None


if TYPE_CHECKING:  # mypy cannot follow a recursive TypeAliasType through Annotated
    Condition: TypeAlias = "ConditionMap | list[Any]"
else:
    Condition = TypeAliasType(
        "Condition",
        Annotated[
            Annotated[ConditionMap, Tag("<mapping>")]
            | Annotated[Annotated[list["Condition"], Field(min_length=1)], Tag("<list>")],
            Discriminator(
                _condition_tag,
                custom_error_type="condition",
                custom_error_message=(
                    "a condition must be a mapping of tests, or a list meaning any"
                ),
            ),
        ],
    )


# --- anonymisation strategies -------------------------------------------------------


class HashParams(_Frozen):
    prefix: StrictStr = Field(
        "", description="Text put before the digest; lets a second run recognise the result"
    )
    suffix: StrictStr = Field("", description="Text put after the digest")
    length: Annotated[StrictInt, Field(ge=8, le=64)] = Field(
        64, description="Hex characters of the digest kept, 8 to 64 (default 64)"
    )


class HashStrategy(_Frozen):
    """Keyed HMAC-SHA-256 of the old value, lowercase hex; NULL stays NULL."""

    hash: HashParams = Field(
        HashParams(), description="Keyed HMAC-SHA-256 (RETENTION_HASH_KEY) of the old value"
    )


class MaskParams(_Frozen):
    keep_last: Annotated[StrictInt, Field(ge=0, le=64)] = Field(
        4, description="Characters kept at the end (default 4)"
    )
    char: Annotated[StrictStr, Field(min_length=1, max_length=1)] = Field(
        "*", description="The masking character (default *)"
    )


class MaskStrategy(_Frozen):
    """All but the last ``keep_last`` characters replaced by ``char``."""

    mask: MaskParams = Field(
        MaskParams(), description="All but the last keep_last characters replaced by char"
    )


class ValueStrategy(_Frozen):
    """A fixed replacement value."""

    value: FixedValue = Field(description="The fixed value, in the column's type")


class TruncateDateStrategy(_Frozen):
    """A date or timestamp truncated to the first of its month or year."""

    truncate_date: Literal["month", "year"] = Field(
        description="month or year: the date becomes the first of its month or year"
    )


NamedStrategy = Literal["redact", "truncate_ip"]
STRATEGY_HELP = (
    "use null, redact, truncate_ip, {value: X}, {hash: {prefix, suffix, length}}, "
    "{mask: {keep_last, char}} or {truncate_date: month|year}"
)
_STRATEGY_KEYS = {"value": "<value>", "hash": "<hash>", "mask": "<mask>", "truncate_date": "<date>"}


def _strategy_tag(value: Any) -> str | None:
    if value is None:
        return "<null>"
    if isinstance(value, str):
        return "<name>"
    if isinstance(value, dict) and len(value) == 1:
        return _STRATEGY_KEYS.get(next(iter(value)))
    if isinstance(value, BaseModel):
        return {
            HashStrategy: "<hash>",
            MaskStrategy: "<mask>",
            ValueStrategy: "<value>",
            TruncateDateStrategy: "<date>",
        }.get(type(value))
    return None


Strategy: TypeAlias = Annotated[
    Annotated[None, Tag("<null>")]
    | Annotated[NamedStrategy, Tag("<name>")]
    | Annotated[HashStrategy, Tag("<hash>")]
    | Annotated[MaskStrategy, Tag("<mask>")]
    | Annotated[ValueStrategy, Tag("<value>")]
    | Annotated[TruncateDateStrategy, Tag("<date>")],
    Discriminator(
        _strategy_tag,
        custom_error_type="strategy",
        custom_error_message="unknown anonymisation strategy: " + STRATEGY_HELP,
    ),
]
SetMap = Annotated[dict[Identifier, Strategy], Field(min_length=1)]


def strategy_name(strategy: Strategy) -> str:
    """A short name for a strategy, as used in messages and the audit record."""
    if strategy is None:
        return "null"
    if isinstance(strategy, str):
        return strategy
    return {
        HashStrategy: "hash",
        MaskStrategy: "mask",
        ValueStrategy: "value",
        TruncateDateStrategy: "truncate_date",
    }[type(strategy)]


def is_recognisable(strategy: Strategy) -> bool:
    """Whether a strategy's result can be told apart from data it has not touched."""
    if strategy in (None, "redact", "truncate_ip") or isinstance(strategy, ValueStrategy):
        return True
    return isinstance(strategy, HashStrategy) and bool(strategy.hash.prefix)


# --- rules ---------------------------------------------------------------------------


MaxRows = Annotated[StrictInt, Field(gt=0, le=MAX_INT)]
MaxFraction = Annotated[float, Field(gt=0, le=1, strict=False), BeforeValidator(_huge_as_infinite)]


class Guard(_Frozen):
    """Stop a rule before its first write when it would remove too much."""

    max_rows: MaxRows = Field(
        1_000_000, description="Most rows a rule may handle in one run (default 1000000)"
    )
    max_fraction: MaxFraction = Field(
        0.5,
        description="Largest share of the table a rule may handle, in (0, 1] (default 0.5)",
    )


class GuardOverride(_Frozen):
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


class Cascade(_Frozen):
    """Dependent rows, handled in the same transaction as the rows they depend on."""

    table: TableName
    on: dict[Identifier, Identifier] | None = Field(
        default=None,
        min_length=1,
        description="{their column: our column}; optional when one foreign key links the tables",
    )
    action: Literal["delete", "anonymise", "detach"] = Field(
        "delete",
        description="delete (default), anonymise (with set) or detach (set the link to NULL)",
    )
    set: SetMap | None = Field(None, description="column: strategy, for action anonymise")
    cascade: list[Cascade] = Field(
        [], description="Rows that depend on these dependents, handled the same way"
    )


BatchSize = Annotated[StrictInt, Field(gt=0, le=1_000_000)]
Sleep = Annotated[float, Field(ge=0, le=3600, strict=False), BeforeValidator(_huge_as_infinite)]


class Rule(_Frozen):
    """One retention promise: which rows, how old, and what happens to them."""

    name: RuleName
    description: StrictStr | None = Field(None, description="Free text: what the rule is for")
    basis: StrictStr | None = Field(None, description="Free text: the legal or policy basis")
    table: TableName
    key: Annotated[list[Identifier], Field(min_length=1)] | None = Field(
        None, description="Columns naming a row (default: the primary key)"
    )
    clock: Identifier
    clock_unit: Literal["seconds", "milliseconds"] | None = Field(
        None, description="The clock is an integer of Unix time in seconds or milliseconds"
    )
    after: PeriodField = Field(
        description="The retention period: a row is due when clock < now - after"
    )
    where: Condition | None = Field(None, description="Rows must also match this condition")
    unless: Condition | None = Field(None, description="A row matching this condition is kept")
    hold_subject: Identifier | None = Field(
        None, description="Column naming the subject a legal hold is registered for (needs holds)"
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
    guard: GuardOverride | None = Field(
        None, description="This rule's guard limits (default: defaults.guard)"
    )
    schedule: Cron | None = Field(
        None, description="5-field cron for serve (default: defaults.schedule)"
    )
    enabled: StrictBool = Field(
        True, description="false parks the rule: it is not run, and validate checks it offline only"
    )


class Defaults(_Frozen):
    timezone: Timezone = "UTC"
    schedule: Cron | None = Field(
        None,
        description="5-field cron for serve, for rules without one (default: none)",
    )
    batch_size: BatchSize = Field(5000, description="Rows per batch and transaction (default 5000)")
    sleep: Sleep = Field(0.0, description="Seconds to pause between batches (default 0)")
    guard: Guard = Field(
        Guard(), description="Stop a rule before its first write when it would remove too much"
    )


class AuditSettings(_Frozen):
    table: Identifier = "retention_audit"
    record_keys: StrictBool = Field(
        False,
        description="Record the keys of the rows handled in the audit log (default false)",
    )


class Holds(_Frozen):
    """The legal-hold registry: a subject with an ``active`` row here is kept."""

    table: TableName
    subject_column: Identifier
    active: Condition | None = Field(
        None, description="Which registry rows are active holds (default: every row)"
    )


class Policy(_Frozen):
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
