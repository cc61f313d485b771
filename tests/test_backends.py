"""The backends: one per database, found by dialect name, answering what differs."""

from __future__ import annotations

from datetime import date

import pytest
from pydantic import SecretStr
from sqlalchemy import Column, Date, Engine, Integer, MetaData, String, Table, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from retention import anonymisers
from retention.backends import backend_for
from retention.backends.pads import HmacKeys, hmac_pads
from retention.db import make_engine
from retention.errors import SettingsError
from retention.policy.strategies import MaskParams, MaskStrategy, TruncateDateStrategy
from retention.settings import Settings

KEY = b"test-hash-key-0123456789abcdef"


def test_an_engine_its_connection_and_its_dialect_name_find_the_same_backend(
    engine: Engine,
) -> None:
    with engine.connect() as conn:
        assert backend_for(conn) is backend_for(engine)
    assert backend_for(engine.dialect.name) is backend_for(engine)


def test_mariadb_urls_are_served_by_the_mysql_backend() -> None:
    assert backend_for("mariadb") is backend_for("mysql")


def test_an_unsupported_database_is_a_settings_error_naming_the_supported_ones(
    settings: Settings,
) -> None:
    odd = settings.model_copy(update={"database_url": SecretStr("oracle://u@h/db")})
    with pytest.raises(SettingsError, match=r"'oracle'.*mariadb, mysql, postgresql, sqlite"):
        make_engine(odd)


def test_the_hmac_pads_are_bound_where_sql_computes_the_hash(engine: Engine) -> None:
    params = backend_for(engine).secret_params(KEY)
    if engine.dialect.name == "sqlite":
        assert params == {}  # the registered function holds the key
    else:
        pads = HmacKeys.from_key(KEY)
        assert params == {"hmac_inner": pads.inner, "hmac_outer": pads.outer}


def test_the_pads_of_a_key_are_derived_once() -> None:
    assert hmac_pads(KEY) is hmac_pads(KEY)
    assert hmac_pads(KEY) != hmac_pads(KEY + b"x")


def test_a_strategy_setting_is_part_of_the_cached_statement(engine: Engine) -> None:
    """Two statements differing only in ``keep_last`` or the date unit never share SQL."""
    table = Table(
        "people",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("name", String(40)),
        Column("born", Date),
    )
    table.metadata.create_all(engine)
    seen = []
    with engine.begin() as conn:
        conn.execute(table.insert().values(id=1, name="abcdefgh", born=date(1990, 7, 14)))
        for keep in (4, 0, 2):
            mask = MaskStrategy(mask=MaskParams(keep_last=keep))
            conn.execute(update(table).values(name=anonymisers.expression(mask, table.c.name, "m")))
            seen.append(conn.execute(select(table.c.name)).scalar_one())
            conn.execute(update(table).values(name="abcdefgh"))
        for unit in ("month", "year"):
            strategy = TruncateDateStrategy(truncate_date=unit)
            conn.execute(
                update(table).values(born=anonymisers.expression(strategy, table.c.born, "d"))
            )
            seen.append(str(conn.execute(select(table.c.born)).scalar_one()))
            conn.execute(update(table).values(born=date(1990, 7, 14)))
    assert seen == ["****efgh", "********", "******gh", "1990-07-01", "1990-01-01"]


def test_an_unknown_database_on_a_server_is_a_configuration_error(settings: Settings) -> None:
    url = make_url(settings.database_url.get_secret_value())
    if url.get_backend_name() == "sqlite":
        pytest.skip("SQLite creates the file it is given")
    missing = url.set(database=f"{url.database}_missing").render_as_string(hide_password=False)
    engine = make_engine(settings.model_copy(update={"database_url": SecretStr(missing)}))
    try:
        with pytest.raises(OperationalError) as caught, engine.connect():
            pass
    finally:
        engine.dispose()
    backend = backend_for(engine)
    assert backend.is_configuration_error(caught.value)
    assert not backend.is_retryable(caught.value)


def test_a_server_that_does_not_answer_is_a_connection_failure_not_a_configuration_error(
    settings: Settings,
) -> None:
    url = make_url(settings.database_url.get_secret_value())
    if url.get_backend_name() == "sqlite":
        pytest.skip("SQLite has no server")
    closed = url.set(host="127.0.0.1", port=1).render_as_string(hide_password=False)
    engine = make_engine(settings.model_copy(update={"database_url": SecretStr(closed)}))
    try:
        with pytest.raises(OperationalError) as caught, engine.connect():
            pass
    finally:
        engine.dispose()
    backend = backend_for(engine)
    assert backend.is_connect_failure(caught.value)
    assert not backend.is_configuration_error(caught.value)
