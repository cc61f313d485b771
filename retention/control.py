"""Stopping on time (SPEC section 5: SIGTERM, ``--max-runtime``).

``Control`` says how far a run may go; its pauses (a rule's ``sleep``, the back-off
between retries) end within a tick of a signal or the deadline. A batch that waits for a
row lock holds the main thread until the wait ends, which can be
``RETENTION_LOCK_TIMEOUT_MS`` (up to ten minutes) later: far past a Kubernetes grace
period. While a batch is in flight, a ``Watchdog`` thread looks every tick whether the
run was asked to stop, and if so asks the database to cancel the statement (the
backend's ``interrupt``); the batch then rolls back whole and the executor records the
stop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.exc import DBAPIError

from retention.backends import Backend, describe_error
from retention.logs import get_logger

if TYPE_CHECKING:
    from retention.throttle import ReplicaWatch

log = get_logger("retention.control")


@dataclass
class Control:
    """How far a run may go, and the flag a signal handler sets to stop it."""

    max_batches: int | None = None
    deadline: float | None = None  # time.monotonic() value
    stop_requested: Callable[[], bool] = lambda: False
    on_batch: Callable[[str, int, int], None] | None = None
    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic
    max_retries: int = 5
    #: holds each batch of a rule with max_lag back while a replica lags (throttle.py)
    replicas: ReplicaWatch | None = None

    #: how long a pause sleeps before it looks again at the signal flag and the deadline
    TICK = 0.1

    def time_is_up(self) -> bool:
        return self.deadline is not None and self.monotonic() >= self.deadline

    def stopping(self) -> bool:
        return self.stop_requested() or self.time_is_up()

    def ended_a_wait(self, backend: Backend, exc: BaseException) -> bool:
        """Whether ``exc`` is a wait for a lock another connection holds that a stop
        request or the deadline ended: while that lock is held (SQLite's file lock) no
        record can be written either, so the run ends without them."""
        return isinstance(exc, DBAPIError) and self.stopping() and backend.is_retryable(exc)

    def why_stopped(self) -> str | None:
        """What ended the run, in words, or None while it may go on."""
        if self.stop_requested():
            return "a signal stopped the run"
        if self.time_is_up():
            return "--max-runtime ran out"
        return None

    def pause(self, seconds: float) -> None:
        """Sleep ``seconds``, in short ticks: a signal or the deadline ends the pause
        within a tick, not after a rule's whole ``sleep`` (Kubernetes' grace period)."""
        end = self.monotonic() + seconds
        while not self.stop_requested() and not self.time_is_up():
            left = end - self.monotonic()
            if left <= 0:
                return
            self.sleep(min(left, self.TICK))


class Watchdog:
    """Cancels the batch in flight once ``should_stop`` says so; one per rule."""

    def __init__(self, should_stop: Callable[[], bool], cancel: Callable[[], None]) -> None:
        self._should_stop = should_stop
        self._cancel = cancel
        # Held by the main thread while a batch runs, and by the watchdog while it
        # cancels: a cancel never reaches the statements that record the stop.
        self._flight = threading.Lock()
        self._in_flight = False

    @contextmanager
    def batch(self) -> Iterator[None]:
        with self._flight:
            self._in_flight = True
        try:
            yield
        finally:
            with self._flight:
                self._in_flight = False

    @contextmanager
    def watching(self, tick: float) -> Iterator[None]:
        done = threading.Event()

        def watch() -> None:
            while not done.wait(tick):
                if not self._should_stop():
                    continue
                with self._flight:
                    if not self._in_flight:
                        continue
                    try:
                        self._cancel()
                    except DBAPIError as exc:
                        log.warning("could not cancel the batch", error=describe_error(exc))
                    return

        thread = threading.Thread(target=watch, name="retention-watchdog", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()
