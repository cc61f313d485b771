"""The scalar pieces of the policy model: names, periods, cron expressions and values.

Shared by the conditions, the strategies and the rules (``policy.conditions``,
``policy.strategies``, ``policy.model``); each type carries its own check and message.
"""

from __future__ import annotations

import math
from datetime import date, datetime
from typing import Annotated, Any, TypeAlias

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

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


class Frozen(BaseModel):
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


def huge_as_infinite(value: Any) -> Any:
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
