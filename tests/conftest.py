"""Shared fixtures: one suite, parametrized over SQLite, PostgreSQL and MariaDB.

SQLite always runs. PostgreSQL and MariaDB run when ``RETENTION_TEST_POSTGRES_URL`` /
``RETENTION_TEST_MYSQL_URL`` are set; a URL that is set but unreachable FAILS the test:
a silent skip would hide a broken product.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, MetaData, create_engine, text
from sqlalchemy.engine import make_url

from retention.settings import Settings

HASH_KEY = "test-hash-key-0123456789abcdef"
ROOT = Path(__file__).resolve().parent.parent

BACKENDS = {
    "sqlite": None,
    "postgresql": "RETENTION_TEST_POSTGRES_URL",
    "mysql": "RETENTION_TEST_MYSQL_URL",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="rewrite tests/golden/<case>/<database>.sql from what the planner prints now",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, each worker gets its own databases (``test_gw0``, ...), created
    on first use, so workers never wipe each other's tables. An unreachable server fails
    here, loudly."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return
    for variable in ("RETENTION_TEST_POSTGRES_URL", "RETENTION_TEST_MYSQL_URL"):
        url = os.environ.get(variable)
        if not url:
            continue
        base = make_url(url)
        name = f"{base.database}_{worker}"
        engine = create_engine(base, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                if engine.dialect.name == "postgresql":
                    known = conn.execute(
                        text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
                    ).first()
                    if known is None:
                        conn.execute(text(f'CREATE DATABASE "{name}"'))
                else:
                    conn.execute(text(f"CREATE DATABASE IF NOT EXISTS `{name}`"))
        finally:
            engine.dispose()
        os.environ[variable] = base.set(database=name).render_as_string(hide_password=False)


def _server_url(backend: str) -> str:
    variable = BACKENDS[backend]
    assert variable is not None
    url = os.environ.get(variable)
    if not url:
        pytest.skip(f"{variable} is not set")
    return url


def wipe(url: str) -> None:
    """Drop every table in the database, so each test starts from nothing."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
                conn.execute(text("CREATE SCHEMA public"))
                conn.execute(text("DROP SCHEMA IF EXISTS support CASCADE"))
            elif engine.dialect.name == "mysql":
                conn.execute(text("SET FOREIGN_KEY_CHECKS = 0"))
                meta = MetaData()
                meta.reflect(conn)
                for table in meta.sorted_tables:
                    conn.execute(text(f"DROP TABLE IF EXISTS `{table.name}`"))
                conn.execute(text("SET FOREIGN_KEY_CHECKS = 1"))
            else:
                meta = MetaData()
                meta.reflect(conn)
                meta.drop_all(conn)
    finally:
        engine.dispose()


@pytest.fixture(params=list(BACKENDS))
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of an empty database, on each backend in turn."""
    backend = request.param
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    url = _server_url(backend)
    wipe(url)  # fails, not skips, when the server is unreachable
    return url


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=db_url,  # type: ignore[arg-type]
        hash_key=HASH_KEY,  # type: ignore[arg-type]
        policy_file=tmp_path / "policies.yaml",
        _env_file=None,  # type: ignore[call-arg]
    )


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    from retention.db import make_engine

    eng = make_engine(settings, hash_key=HASH_KEY.encode())
    yield eng
    eng.dispose()


@pytest.fixture
def db(settings: Settings) -> Iterator[Engine]:
    """An engine on the test database as an application sees it: none of retention's
    session set-up (SQLite's functions and BEGIN IMMEDIATE, PostgreSQL's time zone)."""
    eng = create_engine(settings.database_url.get_secret_value())
    yield eng
    eng.dispose()


@pytest.fixture(autouse=True)
def _no_stray_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests never read the developer's .env or RETENTION_* variables by accident."""
    for name in list(os.environ):
        if name.startswith("RETENTION_") and not name.startswith("RETENTION_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
