"""The helpdesk of ``builders.helpdesk_schema``: polymorphic threads and form entries."""

from __future__ import annotations

from builders import helpdesk_schema
from sqlalchemy import MetaData


def build(meta: MetaData) -> None:
    helpdesk_schema(meta)
