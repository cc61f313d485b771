"""The anonymisation strategies of a ``set:`` mapping (SPEC section 2)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeAlias

from pydantic import BaseModel, Discriminator, Field, StrictInt, StrictStr, Tag

from retention.policy.fields import FixedValue, Frozen, Identifier


class HashParams(Frozen):
    prefix: StrictStr = Field(
        "", description="Text put before the digest; lets a second run recognise the result"
    )
    suffix: StrictStr = Field("", description="Text put after the digest")
    length: Annotated[StrictInt, Field(ge=8, le=64)] = Field(
        64, description="Hex characters of the digest kept, 8 to 64 (default 64)"
    )


class HashStrategy(Frozen):
    """Keyed HMAC-SHA-256 of the old value, lowercase hex; NULL stays NULL."""

    hash: HashParams = Field(
        HashParams(), description="Keyed HMAC-SHA-256 (RETENTION_HASH_KEY) of the old value"
    )


class MaskParams(Frozen):
    keep_last: Annotated[StrictInt, Field(ge=0, le=64)] = Field(
        4, description="Characters kept at the end (default 4)"
    )
    char: Annotated[StrictStr, Field(min_length=1, max_length=1)] = Field(
        "*", description="The masking character (default *)"
    )


class MaskStrategy(Frozen):
    """All but the last ``keep_last`` characters replaced by ``char``."""

    mask: MaskParams = Field(
        MaskParams(), description="All but the last keep_last characters replaced by char"
    )


class ValueStrategy(Frozen):
    """A fixed replacement value."""

    value: FixedValue = Field(description="The fixed value, in the column's type")


class TruncateDateStrategy(Frozen):
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
    if strategy in (None, "redact", "truncate_ip") or isinstance(
        strategy, ValueStrategy | TruncateDateStrategy
    ):
        return True
    return isinstance(strategy, HashStrategy) and bool(strategy.hash.prefix)
