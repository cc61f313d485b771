"""The one exception tree of retention.

Every error the package raises on purpose derives from ``RetentionError``; the CLI alone
maps these classes to exit codes (SPEC section 4)::

    RetentionError
    ├── ConfigError                 78  invalid policy or configuration; nothing was done
    │   ├── PolicyError                 one or more ``file:line:col: ...`` problems
    │   └── SettingsError               environment / .env / missing hash key
    ├── UsageError                   2  an unknown ``--rule`` name and the like
    ├── DatabaseUnavailable         75  the database cannot be reached; retry later
    │   ├── DatabaseReadOnly            it takes no writes now (a hot standby, read_only)
    │   └── DatabaseBusy                a lock another connection held stopped the run
    ├── RuleFailed                   1  a rule failed at run time (carries rule and table)
    ├── LockNotAcquired                 another run holds the rule (a skip, not a failure)
    ├── LeaseLost                    1  the run lost a rule's lease mid-rule (the rule fails)
    ├── AuditTampered                4  ``audit verify`` found a broken chain
    └── DemoRefused                 78  ``demo`` would overwrite a database holding other tables

Errors carry the rule, the table and counts as attributes, never a row's value. A rule
that fails, trips its guard or is skipped does not end the run: the executor turns those
into the rule's ``Status`` (``retention.outcomes``), and ``RunResult.exit_code`` into the
run's exit code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime


class RetentionError(Exception):
    """Base class of every error retention raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One actionable problem in a policy file, rendered as a single line."""

    file: str
    line: int | None
    column: int | None
    message: str
    rule: str | None = None
    field: str | None = None

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        parts = [where]
        if self.rule is not None:
            parts.append(f"rule '{self.rule}'")
        if self.field:
            parts.append(self.field)
        parts.append(self.message)
        return ": ".join(parts)


class ConfigError(RetentionError):
    """Invalid policy or configuration: exit 78, nothing was done."""


class PolicyError(ConfigError):
    """A policy file failed validation; ``problems`` holds one line each."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class SettingsError(ConfigError):
    """The environment or ``.env`` holds an invalid or missing setting."""


class UsageError(RetentionError):
    """The command was called wrongly (exit 2)."""


class DatabaseUnavailable(RetentionError):
    """The database could not be reached (exit 75)."""

    #: what the message says the database is
    state = "unreachable"

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"database {url} is {self.state}: {reason}")


class DatabaseReadOnly(DatabaseUnavailable):
    """The database takes no writes now: a hot standby, a read-only server or session
    (exit 75, found before the first write)."""

    state = "read-only"


class DatabaseBusy(DatabaseUnavailable):
    """A lock another connection held (SQLite's file lock) outlasted
    ``RETENTION_LOCK_TIMEOUT_MS`` while the run wrote its own records (exit 75)."""

    state = "busy"


class RuleFailed(RetentionError):
    """A rule failed at run time; other rules still ran (exit 1)."""

    def __init__(self, rule: str, table: str, reason: str, *, rows_done: int = 0) -> None:
        self.rule = rule
        self.table = table
        self.reason = reason
        self.rows_done = rows_done
        super().__init__(f"rule '{rule}' on {table} failed after {rows_done} rows: {reason}")


class LockNotAcquired(RetentionError):
    """Another run holds this rule's lease; the rule is skipped.

    ``holder`` and ``expires_at`` name that run and when its lease runs out (run ids and
    times only: nothing secret, no row value); ``reason`` says why the rule is not taken.
    """

    def __init__(
        self,
        rule: str,
        *,
        holder: str | None = None,
        expires_at: datetime | None = None,
        reason: str = "lease held by another run",
    ) -> None:
        self.rule = rule
        self.holder = holder
        self.expires_at = expires_at
        self.reason = reason
        super().__init__(f"rule '{rule}' is not taken: {reason}")


class LeaseLost(RetentionError):
    """A run's lease on a rule expired or was taken over: no further batch may commit."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"lease {name} lost: {reason}")


class AuditTampered(RetentionError):
    """The audit chain does not verify (exit 4)."""

    def __init__(self, seq: int | None, reason: str) -> None:
        self.seq = seq
        self.reason = reason
        where = f"record {seq}" if seq is not None else "the log"
        super().__init__(f"audit chain broken at {where}: {reason}")


class DemoRefused(ConfigError):
    """``retention demo`` refused to touch a database that holds other tables."""
