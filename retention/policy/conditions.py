"""Conditions (``where``, ``unless``, ``holds.active``, ``related.where``): column tests,
``related`` and ``all``/``any``/``not``, nesting freely (SPEC section 2, "Conditions")."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictStr,
    Tag,
    model_validator,
)
from pydantic_core import PydanticCustomError
from typing_extensions import TypeAliasType

from retention.policy.fields import (
    IDENTIFIER_PATTERN,
    RESERVED,
    TEST_OPERATORS,
    TIME_TESTS,
    Frozen,
    Identifier,
    PeriodField,
    TableName,
    Value,
    ValueList,
)


class Tests(Frozen):
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


class Related(Frozen):
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
