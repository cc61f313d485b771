"""How far behind a replica is, as a backend reads it (SPEC section 5, ``max_lag``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Lag:
    """One replica's lag. ``seconds`` is None when it cannot be known now (the replica
    is unreachable, replication is stopped, a cluster is in flow control); ``reason``
    then says why, in words safe for any log (never a URL's password, never a value)."""

    source: str
    seconds: float | None
    bytes: int | None = None
    reason: str | None = None

    def over(self, max_lag: float) -> bool:
        """Whether this replica holds the next batch back: lagging more, or unknown."""
        return self.seconds is None or self.seconds > max_lag

    def describe(self) -> str:
        if self.seconds is None:
            return f"{self.source}: {self.reason or 'lag unknown'}"
        behind = f", {self.bytes} bytes" if self.bytes else ""
        return f"{self.source}: {self.seconds:.1f}s behind{behind}"
