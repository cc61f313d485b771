"""The one structlog configuration: JSON lines for machines, colours for people, stderr.

Standard-library loggers (SQLAlchemy, APScheduler) are routed through the same
processors, so every line on stderr has one format. Logs never go to stdout, which
belongs to ``--output json``.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, Literal

import structlog

_SECRET_KEYS = frozenset({"hash_key", "password", "database_url", "secret"})


def _drop_secrets(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Belt and braces: a secret passed to a log call by mistake is never written."""
    for key in list(event_dict):
        if key in _SECRET_KEYS:
            event_dict[key] = "***"
    return event_dict


_FORMATS = ("auto", "json", "console")


def configure_logging(
    fmt: Literal["auto", "json", "console"] = "auto", level: str = "info"
) -> None:
    """Configure structlog and the standard library once, writing to stderr."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _drop_secrets,
    ]
    exceptions: Any = structlog.processors.format_exc_info if use_json else _identity
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            exceptions,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # SQLAlchemy's engine logger would print statements; parameters are hidden anyway
    # (hide_parameters=True), but statements are noise at info level.
    logging.getLogger("sqlalchemy").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.INFO)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


def forget_logging() -> None:
    """Forget the configuration, so ``ensure_logging`` knows whether this command made one
    (a process that runs several commands, such as a test, keeps the previous one's stream).
    """
    structlog.reset_defaults()


def ensure_logging() -> None:
    """Configure logging when the settings never could (a bad setting ends the command
    before they exist): the format from ``RETENTION_LOG_FORMAT`` when it is valid, else
    ``auto``. Unconfigured, structlog would print console lines to stdout.
    """
    if structlog.is_configured():
        return
    fmt = os.environ.get("RETENTION_LOG_FORMAT", "auto").strip().lower()
    configure_logging(fmt if fmt in _FORMATS else "auto")  # type: ignore[arg-type]


def _identity(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    return event_dict


def get_logger(name: str = "retention") -> Any:
    return structlog.get_logger(name)
