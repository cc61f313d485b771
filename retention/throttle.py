"""How big the next batch is, and when the next batch may start (SPEC section 5).

Replica lag: a rule with ``max_lag`` (seconds) reads the lag before each batch
(``ReplicaWatch``) and waits while a replica lags more, or its lag cannot be read; after
``WAIT_FACTOR`` x ``max_lag`` of waiting the rule stops ``partial`` with the reason. So a
replica is never more than ``max_lag`` plus one batch behind because of this run.

Batches shrink on repeated conflicts and on a cluster's write-set limits and grow back
after clean batches (``BatchSizer``); a batch that failed on a conflict is retried with
back-off, at the size the sizer gives (``retrying``).

The sizes: a rule starts at its ``batch_size`` (the ceiling). Two conflicts in a row
(deadlocks, serialisation or certification failures, lock waits that timed out) halve it,
and so does one write-set refusal (Galera's ``wsrep_max_ws_rows`` / ``wsrep_max_ws_size``),
never below the floor: 1% of the ceiling, at least 10 rows (or the ceiling itself when it
is smaller). After ``GROW_AFTER`` batches committed at their first attempt, it doubles,
never above the ceiling, nor to a size a write-set limit refused in this run. Batches walk
the key forward, so a smaller batch never skips or repeats a row: it takes fewer of the
next due rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, NoSuchModuleError

from retention.backends import Backend, Conflict, backend_for, describe_error
from retention.backends.lag import Lag
from retention.control import Control
from retention.errors import SettingsError
from retention.logs import get_logger
from retention.settings import Settings, mask_url

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
#: the changes of size a summary lists (the first ones; ``resized`` counts them all)
MAX_SHOWN = 20


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
    #: the smallest size a write-set limit refused: growing back stays below it (the
    #: limit is the cluster's setting, it does not pass like a conflict)
    refused: int | None = None
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
        if kind is Conflict.WRITE_SET:
            self.refused = min(self.refused or self.size, self.size)
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
        grown = min(self.ceiling, self.size * 2)
        if self.refused is not None and grown >= self.refused:
            return
        if self.clean >= GROW_AFTER and grown > self.size:
            self._change(batch + 1, grown, "clean batches")

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
            "resized": len(self.changes),
            "changes": [
                {"from_batch": b, "size": s, "reason": r} for b, s, r in self.changes[:MAX_SHOWN]
            ],
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


#: how long a rule waits for its replicas, as a multiple of its max_lag, before it stops
#: ``partial`` (a later run goes on where it stopped)
WAIT_FACTOR = 10
#: seconds between two readings of the lag while a rule waits
LAG_POLL = 1.0
#: seconds between two log lines while a rule waits
LAG_LOG_EVERY = 10.0


@dataclass
class ReplicaWatch:
    """Holds each batch back while a replica lags more than the rule's ``max_lag``.

    ``read`` gives every watched replica's lag; ``on_reading`` receives the largest known
    lag at each reading (the ``serve`` gauge). A lag that cannot be read (an unreachable
    replica, stopped replication, Galera flow control) holds the batch back like a lag
    above ``max_lag``: the rule waits, logging why, and stops ``partial`` at the bound.
    """

    read: Callable[[], list[Lag]]
    on_reading: Callable[[float], None] | None = None
    #: per rule: max_lag, the largest lag seen, seconds waited, and why it stopped
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    close: Callable[[], None] = lambda: None  # disposes the replicas' engines

    def wait(self, rule: str, max_lag: float, control: Control) -> str | None:
        """Wait until every replica is within ``max_lag``; None to go on (or when the run
        is stopping), else why the rule stops ``partial``."""
        stats = self.stats.setdefault(
            rule, {"max_lag": max_lag, "largest_seen": None, "waited_seconds": 0.0}
        )
        started = control.monotonic()
        bound, logged = WAIT_FACTOR * max_lag, -LAG_LOG_EVERY
        while True:
            lags = self.read()
            known = [lag.seconds for lag in lags if lag.seconds is not None]
            if known:
                stats["largest_seen"] = max(stats["largest_seen"] or 0.0, *known)
                if self.on_reading is not None:
                    self.on_reading(max(known))
            waited = control.monotonic() - started
            over = [lag for lag in lags if lag.over(max_lag)]
            if not over or control.stopping():
                stats["waited_seconds"] = round(stats["waited_seconds"] + waited, 3)
                if waited and not over:
                    log.info("replicas within max_lag: going on", rule=rule, waited=waited)
                return None
            why = "; ".join(lag.describe() for lag in over)
            if waited >= bound:
                stats["waited_seconds"] = round(stats["waited_seconds"] + waited, 3)
                stats["stopped"] = reason = (
                    f"replica lag above max_lag {max_lag:g}s for {waited:.1f}s: {why}"
                )
                log.warning("rule stopped: replicas lag", rule=rule, reason=reason)
                return reason
            if waited - logged >= LAG_LOG_EVERY:
                log.warning("replicas lag: batches paused", rule=rule, max_lag=max_lag, lag=why)
                logged = waited
            control.pause(min(LAG_POLL, bound - waited))


@dataclass
class LagSources:
    """Reads the lag: on the primary (what it sees of its replicas) and on each replica
    named in ``RETENTION_REPLICA_URLS`` (shown by their masked URLs, never a password)."""

    primary: Engine
    replicas: list[tuple[str, Engine]]

    def __call__(self) -> list[Lag]:
        with self.primary.connect() as conn:
            lags = backend_for(self.primary).replication_lag(conn)
        for shown, engine in self.replicas:
            try:
                with engine.connect() as conn:
                    lag = backend_for(engine).replica_lag(conn)
            except DBAPIError as exc:
                lag = Lag(shown, None, reason=f"cannot be read ({describe_error(exc)})")
            lags.append(replace(lag, source=shown))
        return lags

    def close(self) -> None:
        for _, engine in self.replicas:
            engine.dispose()


def watch_replicas(
    settings: Settings, engine: Engine, on_reading: Callable[[float], None] | None = None
) -> ReplicaWatch:
    """The watch of a run: the primary and every replica URL of the settings. A URL
    whose driver is missing is a ``SettingsError`` here, before the first write."""
    replicas = []
    for url in settings.replica_url_list():
        parsed = make_url(url)
        backend = backend_for(parsed.get_backend_name())
        options = {"hide_parameters": True, **backend.engine_options(settings.lock_timeout_ms)}
        try:
            replica = create_engine(backend.engine_url(parsed, read_only=True), **options)
        except (ImportError, NoSuchModuleError):
            raise SettingsError(
                f"RETENTION_REPLICA_URLS: the driver for {parsed.drivername}:// is not "
                f"installed: {backend.driver_hint or 'see the operations guide'}"
            ) from None
        replicas.append((mask_url(url), replica))
    sources = LagSources(engine, replicas)
    return ReplicaWatch(sources, on_reading, close=sources.close)
