"""The evidence beside the tallies: the chain's verdict, the heads kept outside the
database, and the oldest rows that rules keep on purpose.

A broken chain is a result here, not an error: the certificate states it first and is
still written (the command then exits 4).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection

from retention.audit.query import hashes_present, stored_head
from retention.audit.verify import verify_table
from retention.errors import AuditTampered


@dataclass(frozen=True)
class Verification:
    """The chain's state over the whole log, and the head the database holds."""

    ok: bool
    records: int
    head: str | None
    broken_at: int | None = None
    reason: str | None = None
    stored_head: tuple[int, str] | None = None
    expected_head: str | None = None
    error: AuditTampered | None = None


@dataclass(frozen=True)
class HeadsCheck:
    """Heads kept outside the database, and how many of them the log still holds."""

    file: str | None = None
    heads: int = 0
    found: int = 0
    expected_head: str | None = None
    expected_head_matches: bool | None = None  # it is the log's head now
    expected_head_in_log: bool | None = None  # the head now, or an earlier one (the log grew)

    @property
    def checked(self) -> bool:
        return self.file is not None or self.expected_head is not None


@dataclass(frozen=True)
class OldestKept:
    """Per rule, the age of the oldest row past its cutoff kept by ``unless`` and by holds.

    Read from the tables when the report is made; ``note`` says why it could not be.
    """

    unless_days: int | None = None
    holds_days: int | None = None
    note: str | None = None


def check_chain(
    conn: Connection,
    table_name: str,
    expect_head: str | None = None,
    kept_heads: Sequence[str] = (),
) -> Verification:
    """Verify the whole chain; a broken chain is a result here, not an error."""
    stored = stored_head(conn, table_name)
    try:
        verified = verify_table(conn, table_name, expect_head, kept_heads)
    except AuditTampered as exc:
        return Verification(False, 0, None, exc.seq, exc.reason, stored, expect_head, exc)
    return Verification(True, verified.records, verified.head, None, None, stored, expect_head)


def check_heads(
    conn: Connection,
    table_name: str,
    verification: Verification,
    heads_file: str | None,
    kept_heads: Sequence[str],
) -> HeadsCheck:
    """Counted apart from the chain's verdict, so a broken chain still says which heads hold."""
    distinct = set(kept_heads)
    expected = verification.expected_head
    wanted = distinct | ({expected} if expected is not None else set())
    present = hashes_present(conn, table_name, wanted) if wanted else set()
    if expected is None:
        return HeadsCheck(heads_file, len(distinct), len(distinct & present))
    matches = verification.ok and verification.head == expected
    return HeadsCheck(
        heads_file, len(distinct), len(distinct & present), expected, matches, expected in present
    )
