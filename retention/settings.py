"""Settings from the environment and ``.env`` (SPEC section 3): the only place they are read.

One frozen ``Settings`` object is built at the edge (the CLI, or a caller of the API) and
passed down. The hash key is a ``SecretStr`` and the database URL is only ever shown with
its password masked.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TextIO

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from retention.errors import SettingsError

if TYPE_CHECKING:
    from sqlalchemy import URL

# Only `retention demo` falls back to this file; every other command needs a URL named.
DEFAULT_DATABASE_URL = "sqlite:///retention-demo.db"
MIN_HASH_KEY_LENGTH = 16


class Settings(BaseSettings):
    """Everything the environment configures."""

    model_config = SettingsConfigDict(
        env_prefix="RETENTION_", env_file=".env", extra="ignore", frozen=True
    )

    # Empty when not configured: require_database_url() says what is missing.
    database_url: SecretStr = SecretStr("")
    policy_file: Path = Path("policies.yaml")
    hash_key: SecretStr | None = None
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # Bounded waits for row locks, in milliseconds (lock_timeout, innodb_lock_wait_timeout,
    # busy_timeout); MySQL's setting is whole seconds, rounded up.
    lock_timeout_ms: int = Field(default=5000, gt=0, le=600_000)
    max_retries: int = Field(default=5, ge=0, le=100)
    # Rule leases (SPEC section 5): how long one lasts unrenewed, and how often a run
    # renews it (a third of the lease when not set).
    lease_seconds: float = Field(default=300.0, ge=1, le=86_400, allow_inf_nan=False)
    lease_renew_seconds: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    audit_head_file: Path | None = None
    # Observability (SPEC section 3 leaves these to the worker issue).
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    metrics_file: Path | None = None
    pushgateway_url: str | None = None
    ping_url: SecretStr | None = None  # often carries a token in its path
    # MySQL/MariaDB replicas whose lag max_lag watches, comma-separated (SPEC section 3);
    # secret as a whole, since each URL may carry a password.
    replica_urls: SecretStr = SecretStr("")

    @field_validator("database_url")
    @classmethod
    def _parse_url(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value():
            return value
        if _read_url(value.get_secret_value()) is None:
            raise ValueError("not a database URL such as postgresql+psycopg://host/db")
        return value

    @field_validator("replica_urls")
    @classmethod
    def _parse_replica_urls(cls, value: SecretStr) -> SecretStr:
        for number, url in enumerate(_split_urls(value.get_secret_value()), 1):
            if _read_url(url) is None:
                raise ValueError(
                    f"URL {number} is not a database URL such as mysql+pymysql://host/db"
                )
        return value

    def replica_url_list(self) -> list[str]:
        """The replica URLs, unmasked: for connecting only, never for output."""
        return _split_urls(self.replica_urls.get_secret_value())

    @field_validator("lease_renew_seconds")
    @classmethod
    def _renew_within_lease(cls, value: float | None, info: ValidationInfo) -> float | None:
        lease = info.data.get("lease_seconds")
        if value is not None and lease is not None and value > lease / 2:
            raise ValueError(
                f"{value:g} s renews too late for a {lease:g} s lease (RETENTION_LEASE_SECONDS): "
                "use at most half of it, a third is the default"
            )
        return value

    @property
    def lease_renew_every(self) -> float:
        """Seconds between two renewals of a held lease."""
        return self.lease_renew_seconds or self.lease_seconds / 3

    def masked_url(self) -> str:
        if not self.database_url.get_secret_value():
            return "<no database URL>"
        return mask_url(self.database_url.get_secret_value())

    def require_database_url(self) -> str:
        """The database URL; ``SettingsError`` naming what is missing when none is set.

        No command quietly falls back to a file: a mistyped variable name would otherwise
        check, plan or run against an empty database (SPEC section 3).
        """
        url = self.database_url.get_secret_value()
        if not url:
            raise SettingsError(
                "RETENTION_DATABASE_URL is not set: name the database with --database URL or "
                "RETENTION_DATABASE_URL (`retention demo` creates a SQLite one and writes its "
                "URL to .env)"
            )
        return url

    def open_audit_head_file(self) -> TextIO | None:
        """``RETENTION_AUDIT_HEAD_FILE`` opened for appending, or None when not set.

        Opened before a run touches any row: a file that cannot take the head is a
        configuration error (78), not a failure after the deletes. The caller closes it.
        """
        if self.audit_head_file is None:
            return None
        try:
            return self.audit_head_file.open("a", encoding="utf-8")
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise SettingsError(
                f"RETENTION_AUDIT_HEAD_FILE: cannot append to {self.audit_head_file}: {reason}"
            ) from None

    def require_hash_key(self) -> bytes:
        """The hash key's bytes; ``SettingsError`` when it is missing or too short."""
        if self.hash_key is None or not self.hash_key.get_secret_value():
            raise SettingsError(
                "RETENTION_HASH_KEY is not set: it keys the audit digests and hash strategies "
                "(`retention demo` writes one to .env; in production, use a secret store)"
            )
        key = self.hash_key.get_secret_value().encode()
        if len(key) < MIN_HASH_KEY_LENGTH:
            raise SettingsError(
                f"RETENTION_HASH_KEY is too short: use at least {MIN_HASH_KEY_LENGTH} characters"
            )
        return key


# Query parameters that carry a credential, or a whole connection string that may hold one
# (``?password=``, ``passwd``, ``sslpassword``, ``odbc_connect=...;PWD=...``, tokens).
_SECRET_PARAM = re.compile(r"pass|pwd|secret|token|key|auth|credential|dsn|odbc|conninfo", re.I)
_MASK = "***"


def mask_url(url: str) -> str:
    """The URL with its password and every credential-bearing parameter as ``***``.

    Safe for any output: errors, logs, ``validate``, the certificate.
    """
    parsed = _read_url(url)
    if parsed is None:
        return "<invalid database URL>"
    query = {
        name: (_MASK if _secret_param(name, value) else value)
        for name, value in parsed.query.items()
    }
    # The URL encoder writes the mask as %2A%2A%2A; people read ``***``.
    return parsed.set(query=query).render_as_string(hide_password=True).replace("%2A%2A%2A", _MASK)


def _read_url(url: str) -> URL | None:
    """``url`` parsed, or None when it is not a database URL. SQLAlchemy is imported here,
    when there is a URL to read, so that commands without a database start without it."""
    from sqlalchemy.engine import make_url  # noqa: PLC0415  (see the docstring)
    from sqlalchemy.exc import ArgumentError  # noqa: PLC0415

    try:
        return make_url(url)
    except (ArgumentError, ValueError):
        return None


def _split_urls(text: str) -> list[str]:
    return [url.strip() for url in text.split(",") if url.strip()]


def _secret_param(name: str, value: str | tuple[str, ...]) -> bool:
    values = (value,) if isinstance(value, str) else value
    return bool(_SECRET_PARAM.search(name)) or any(_SECRET_PARAM.search(v) for v in values)


def load_settings(
    *, database_url: str | None = None, policy_file: str | Path | None = None
) -> Settings:
    """Build the settings; command-line values override the environment."""
    overrides: dict[str, object] = {}
    if database_url is not None:
        overrides["database_url"] = SecretStr(database_url)
    if policy_file is not None:
        overrides["policy_file"] = Path(policy_file)
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        name = "RETENTION_" + str(first["loc"][0]).upper() if first["loc"] else "settings"
        reason = str(first["msg"]).removeprefix("Value error, ")
        raise SettingsError(f"{name}: {reason}") from None
