"""How big the next batch is, and when the next batch may start (SPEC section 5).

Batches shrink on repeated conflicts and on a cluster's write-set limits and grow back
after clean batches (``BatchSizer``); a batch that failed on a conflict is retried with
back-off, at the size the sizer gives (``retrying``).

The sizes: a rule starts at its ``batch_size`` (the ceiling). Two conflicts in a row
(deadlocks, serialisation or certification failures, lock waits that timed out) halve it,
and so does one write-set refusal (Galera's ``wsrep_max_ws_rows`` / ``wsrep_max_ws_size``),
never below the floor: 1% of the ceiling, at least 10 rows (or the ceiling itself when it
is smaller). After ``GROW_AFTER`` batches committed at their first attempt, it doubles,
never above the ceiling. Batches walk the key forward, so a smaller batch never skips or
repeats a row: it takes fewer of the next due rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError

from retention.backends import Backend, Conflict, describe_error
from retention.control import Control
from retention.logs import get_logger

log = get_logger("retention.throttle")

T = TypeVar("T")

#: the smallest a batch shrinks to: this share of the rule's batch_size ...
FLOOR_SHARE = 0.01
#: ... but never fewer rows than this (unless the batch_size itself is smaller)
FLOOR_ROWS = 10
#: conflicts in a row that halve the batch
SHRINK_AFTER = 2
#: batches committed at the first attempt, in a row, that double it again
GROW_AFTER = 5


def floor_for(ceiling: int) -> int:
    """The smallest batch of a rule whose batch_size is ``ceiling``."""
    return min(ceiling, max(FLOOR_ROWS, int(ceiling * FLOOR_SHARE)))


@dataclass
class BatchSizer:
    """The size of a rule's next batch; one per rule and run."""

    ceiling: int
    floor: int = 0
    size: int = 0
    #: conflicts since the last clean batch or the last change of size
    conflicts: int = 0
    #: batches committed at their first attempt since the last change of size
    clean: int = 0
    #: the sizes of the batches that committed
    smallest: int | None = None
    largest: int | None = None
    #: every change: (the batch it applies from, counting from 1, new size, why)
    changes: list[tuple[int, int, str]] = field(default_factory=list)
    _failed_this_batch: bool = False

    def __post_init__(self) -> None:
        self.floor = self.floor or floor_for(self.ceiling)
        self.size = self.size or self.ceiling

    def failed(self, kind: Conflict, batch: int) -> bool:
        """A conflict failed batch number ``batch``; True when the size went down."""
        self._failed_this_batch = True
        self.clean = 0
        self.conflicts += 1
        if kind is Conflict.CONTENTION and self.conflicts < SHRINK_AFTER:
            return False
        if self.size <= self.floor:
            return False
        self._change(batch, max(self.floor, self.size // 2), kind.value)
        return True

    def committed(self, batch: int) -> None:
        """Batch number ``batch`` committed at the current size."""
        self.smallest = min(self.smallest or self.size, self.size)
        self.largest = max(self.largest or self.size, self.size)
        if self._failed_this_batch:
            # Its conflicts still count: one conflict in each of two batches is repeated.
            self._failed_this_batch = False
            return
        self.conflicts = 0
        self.clean += 1
        if self.clean >= GROW_AFTER and self.size < self.ceiling:
            self._change(batch + 1, min(self.ceiling, self.size * 2), "clean batches")

    def _change(self, batch: int, size: int, why: str) -> None:
        grew = size > self.size
        self.size, self.conflicts, self.clean = size, 0, 0
        self.changes.append((batch, size, why))
        say = log.info if grew else log.warning
        say("batch size grown" if grew else "batch size shrunk", size=size, reason=why)

    def summary(self) -> dict[str, Any] | None:
        """The sizes used, for the audit record and the run's output (None: no batch)."""
        if self.smallest is None or self.largest is None:
            return None
        return {
            "min": self.smallest,
            "max": self.largest,
            "changes": [{"from_batch": b, "size": s, "reason": r} for b, s, r in self.changes],
        }


def retrying(
    attempt: Callable[[int], T],
    sizer: BatchSizer,
    batch: int,
    backend: Backend,
    control: Control,
) -> T:
    """``attempt(size)`` until it commits. A conflict is retried with back-off; a retry
    at a smaller size costs none of ``max_retries`` (halving ends at the floor, so the
    attempts stay bounded); a write-set refusal at the floor is final."""
    delay, tries, attempts = 0.05, 0, 1
    while True:
        try:
            return attempt(sizer.size)
        except DBAPIError as exc:
            kind = backend.conflict(exc)
            if kind is None or control.stopping():
                raise
            shrunk = sizer.failed(kind, batch)
            if not shrunk:
                tries += 1
                if kind is Conflict.WRITE_SET or tries > control.max_retries:
                    raise
            log.warning(
                "batch retried",
                error=describe_error(exc),
                conflict=kind.value,
                size=sizer.size,
                attempt=attempts,
            )
            attempts += 1
            control.pause(delay)
            delay = min(delay * 2, 2.0)
