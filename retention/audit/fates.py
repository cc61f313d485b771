"""What an anonymise rule leaves in each column it overwrites, in words an auditor can check.

The audit log records that a rule ran, not what its strategies do; the certificate reads
that from the policy in force. A ``hash`` is singled out: it is a pseudonym, not an
anonymisation, for as long as the hash key exists (SPEC section 3).
"""

from __future__ import annotations

from dataclasses import dataclass

from retention.anonymisers import REDACTED
from retention.policy.model import Cascade, Rule
from retention.policy.strategies import (
    HashStrategy,
    MaskStrategy,
    Strategy,
    TruncateDateStrategy,
    ValueStrategy,
    strategy_name,
)

PSEUDONYM_NOTE = (
    "a pseudonym: the same value always gives the same result, so the rows stay linkable "
    "to each other, and whoever holds RETENTION_HASH_KEY can test a guessed value against "
    "it, for as long as the key exists"
)


@dataclass(frozen=True)
class ColumnFate:
    """One overwritten column: ``table.column``, the strategy, and what the value became."""

    table: str
    column: str
    strategy: str
    becomes: str
    pseudonym: bool


def becomes(strategy: Strategy) -> str:
    """The overwritten value, described."""
    if strategy is None:
        return "emptied (NULL)"
    if strategy == "redact":
        return f"replaced by the text {REDACTED}"
    if strategy == "truncate_ip":
        return "cut to its network (IPv4 /24, IPv6 /48); text that is not an address is emptied"
    if isinstance(strategy, HashStrategy):
        params = strategy.hash
        affixes = "".join(
            f", {what} '{text}'"
            for what, text in (("prefix", params.prefix), ("suffix", params.suffix))
            if text
        )
        return f"keyed HMAC-SHA-256, {params.length} hex digits{affixes}: {PSEUDONYM_NOTE}"
    if isinstance(strategy, MaskStrategy):
        return (
            f"every character but the last {strategy.mask.keep_last} replaced by "
            f"'{strategy.mask.char}'"
        )
    if isinstance(strategy, ValueStrategy):
        return f"replaced by the fixed value {strategy.value!r}"
    if isinstance(strategy, TruncateDateStrategy):
        return f"truncated to the first day of its {strategy.truncate_date}"
    return strategy_name(strategy)


def column_fates(rule: Rule) -> tuple[ColumnFate, ...]:
    """Every column the rule and its anonymising cascades overwrite, in policy order."""
    out: list[ColumnFate] = []
    if rule.action == "anonymise" and rule.set:
        out.extend(_fates(rule.table, rule.set))

    def walk(cascades: list[Cascade]) -> None:
        for cascade in cascades:
            if cascade.action == "anonymise" and cascade.set:
                out.extend(_fates(cascade.table, cascade.set))
            walk(cascade.cascade)

    walk(rule.cascade)
    return tuple(out)


def _fates(table: str, set_map: dict[str, Strategy]) -> list[ColumnFate]:
    return [
        ColumnFate(table, column, strategy_name(s), becomes(s), isinstance(s, HashStrategy))
        for column, s in set_map.items()
    ]
