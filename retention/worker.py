"""``retention serve``: the scheduler, the signals and the metrics endpoint around runs.

Each scheduled job calls the same ``run`` as ``retention run`` (handed in by the api, so
imports keep their direction). SIGTERM/SIGINT let the current batch finish, then stop the
scheduler; SIGHUP reloads the policy when it validates and keeps the old one otherwise.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from retention.errors import RetentionError, SettingsError
from retention.logs import get_logger
from retention.metrics import Metrics
from retention.policy.loader import LoadedPolicy
from retention.runner import RunResult
from retention.scheduler import install_jobs, make_scheduler, next_runs
from retention.settings import Settings

log = get_logger("retention.worker")


class Worker:
    def __init__(
        self,
        settings: Settings,
        *,
        load_checked: Callable[[], LoadedPolicy],
        run: Callable[..., RunResult],
    ) -> None:
        self.settings = settings
        self.load_checked = load_checked
        self.run = run
        self.loaded = load_checked()
        self.stop = threading.Event()
        self.metrics = Metrics()
        self.scheduler = make_scheduler(self.loaded.policy)

    def serve(self) -> None:
        port = self.settings.metrics_port
        if port:
            try:
                self.metrics.serve(port)
            except OSError as exc:
                raise SettingsError(
                    f"RETENTION_METRICS_PORT {port}: cannot listen ({exc.strerror})"
                ) from None
        install_jobs(self.scheduler, self.loaded.policy, self.run_rule)
        signal.signal(signal.SIGTERM, self.on_stop)
        signal.signal(signal.SIGINT, self.on_stop)
        signal.signal(signal.SIGHUP, self.on_reload)
        jobs = len(self.scheduler.get_jobs())
        log.info("worker started", rules=jobs, next_runs=self.next_runs())
        self.scheduler.start()
        log.info("worker stopped")

    def run_rule(self, rule: str, run_id: str, slot: str | None = None) -> None:
        if self.stop.is_set():
            return
        started = time.monotonic()
        try:
            result = self.run(
                self.settings,
                rules=[rule],
                stop_requested=self.stop.is_set,
                loaded=self.loaded,
                run_id=run_id,  # the job's logs and its audit records share one run id
                slot=slot,  # replicas of `serve` run each scheduled run of a rule once
                on_lag=self.metrics.replica_lag.set,  # the gauge follows each reading
            )
        except RetentionError as exc:
            log.error("scheduled run failed", error=type(exc).__name__, reason=str(exc))
            return
        except Exception as exc:
            # Only the class: a database's message can quote row values.
            log.error("scheduled run failed unexpectedly", error=type(exc).__name__)
            return
        self.metrics.observe(result, time.monotonic() - started)
        log.info(
            "scheduled run result",
            run_id=result.run_id,
            exit_code=result.exit_code,
            statuses={r.rule: r.status for r in result.rules},
        )

    def on_stop(self, signum: int, _frame: object) -> None:
        if self.stop.is_set():
            return  # already stopping: a second signal changes nothing
        log.info("stopping: finishing the current batch", signal=signal.Signals(signum).name)
        self.stop.set()
        # From here on a second signal changes nothing, also while the interpreter exits
        # (it puts the default handlers back then, and a late SIGTERM would kill with -15).
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        self.scheduler.shutdown(wait=True)

    def on_reload(self, _signum: int, _frame: object) -> None:
        try:
            fresh = self.load_checked()
        except RetentionError as exc:
            log.error("policy reload failed; keeping the previous policy", reason=str(exc))
            return
        self.loaded = fresh
        install_jobs(self.scheduler, fresh.policy, self.run_rule)
        log.info("policy reloaded", policy_sha256=fresh.sha256, next_runs=self.next_runs())

    def next_runs(self) -> dict[str, Any]:
        runs = next_runs(self.scheduler, datetime.now(UTC))
        return {k: v.isoformat() if v else None for k, v in runs.items()}
