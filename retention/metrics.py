"""Prometheus metrics (the dead-man's-switch ping is in ``ping.py``).

``serve`` exposes ``/metrics`` (``RETENTION_METRICS_PORT``); a one-shot ``run`` writes a
textfile for node_exporter (``RETENTION_METRICS_FILE``) or pushes to a Pushgateway
(``RETENTION_PUSHGATEWAY_URL``). Labels carry rule and table names only, never a row's
value. Imported only by ``serve`` and by a run with a metrics option set (start-up time).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from http.client import HTTPException

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    push_to_gateway,
    start_http_server,
    write_to_textfile,
)

from retention.logs import get_logger
from retention.outcomes import Status
from retention.runner import RunResult

log = get_logger("retention.metrics")


@dataclass
class Metrics:
    """One registry per process; ``observe`` folds a run's result into it."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.rows = Counter(
            "retention_rows", "Rows removed or anonymised.", ["rule", "table", "action"], registry=r
        )
        self.dependents = Counter(
            "retention_dependent_rows",
            "Dependent rows handled by cascades.",
            ["rule", "table"],
            registry=r,
        )
        self.last_success = Gauge(
            "retention_last_success_timestamp_seconds",
            "When the rule last finished without error.",
            ["rule"],
            registry=r,
        )
        self.duration = Gauge(
            "retention_run_duration_seconds", "Duration of the last run.", registry=r
        )
        self.guard_trips = Counter("retention_guard_trips", "Guards tripped.", ["rule"], registry=r)
        self.failures = Counter(
            "retention_rule_failures", "Rules failed at run time.", ["rule"], registry=r
        )
        self.skips = Counter(
            "retention_rule_skips", "Rules skipped: held by another run.", ["rule"], registry=r
        )
        self.replica_lag = Gauge(
            "retention_replica_lag_seconds",
            "Largest replica lag at the last reading before a batch of a rule with max_lag.",
            registry=r,
        )

    def observe(self, result: RunResult, seconds: float) -> None:
        self.duration.set(seconds)
        for rule in result.rules:
            seen = (rule.replica_lag or {}).get("largest_seen")
            if seen is not None:
                self.replica_lag.set(seen)
            self.rows.labels(rule.rule, rule.table, rule.action).inc(rule.rows)
            for table, n in rule.dependents.items():
                self.dependents.labels(rule.rule, table).inc(n)
            if rule.status in (Status.DONE, Status.PARTIAL):
                self.last_success.labels(rule.rule).set(time.time())
            elif rule.status == Status.GUARD_TRIPPED:
                self.guard_trips.labels(rule.rule).inc()
            elif rule.status == Status.FAILED:
                self.failures.labels(rule.rule).inc()
            elif rule.status == Status.SKIPPED:
                self.skips.labels(rule.rule).inc()

    def serve(self, port: int) -> None:
        start_http_server(port, registry=self.registry)
        log.info("metrics endpoint started", port=port)

    def export(self, textfile: str | None, pushgateway: str | None) -> None:
        """Write and push the metrics; a failure is logged, never fatal (the run is done)."""
        if textfile:
            try:
                write_to_textfile(textfile, self.registry)
            except OSError as exc:
                log.warning("metrics textfile not written", error=type(exc).__name__)
        if pushgateway:
            try:
                push_to_gateway(pushgateway, job="retention", registry=self.registry, timeout=10)
            except (OSError, ValueError, HTTPException) as exc:  # a bad URL or answer too
                log.warning("pushgateway push failed", error=type(exc).__name__)
