"""The dead-man's-switch ping (``RETENTION_PING_URL``): ``/start`` when a run starts and
``/<exit code>`` when it ends, as healthchecks-style services expect. Apart from
``metrics.py``, so that a run without metrics does not load prometheus_client."""

from __future__ import annotations

import urllib.error
import urllib.request
from http.client import HTTPException

from retention.logs import get_logger

log = get_logger("retention.ping")


def ping(url: str | None, suffix: str, *, timeout: float = 10.0) -> bool:
    """Ping a dead-man's switch; a failure is logged, never fatal."""
    if not url:
        return False
    target = url.rstrip("/") + "/" + suffix
    if not target.startswith(("http://", "https://")):
        log.warning("ping url is not http(s); not pinged")
        return False
    try:
        with urllib.request.urlopen(target, timeout=timeout) as response:  # noqa: S310 - scheme checked above
            return bool(200 <= response.status < 300)
    # HTTPException: a malformed URL (InvalidURL: a bad port) or a garbled answer.
    except (urllib.error.URLError, OSError, ValueError, HTTPException) as exc:
        log.warning("ping failed", error=type(exc).__name__)
        return False
