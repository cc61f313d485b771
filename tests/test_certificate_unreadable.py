"""The certificate of a log holding a record that does not parse (issue 10, SPEC section 6).

The record is named as unreadable in the red box and left out of the figures; its stored
text is never shown, since a tamperer could have written anything there.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from builders import invoke
from sqlalchemy import Engine
from test_audit_chain import seven_records
from test_verify_tamper import tamper

from retention.settings import Settings

FORGED = "alice@example.com {"


def report(settings: Settings, out: Path, fmt: str) -> str:
    url = settings.database_url.get_secret_value()
    result = invoke(
        [
            "audit",
            "report",
            "--format",
            fmt,
            "--output",
            str(out),
            "--database",
            url,
            "--policy",
            str(settings.policy_file),
        ]
    )
    assert result.exit_code == 4, result.output
    assert FORGED not in result.output
    return out.read_text(encoding="utf-8")


def test_details_that_are_not_json_are_named_never_shown(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    seven_records(settings, engine)
    tamper(engine, "UPDATE retention_audit SET details = :d WHERE seq = 1", d=FORGED)

    document = json.loads(report(settings, tmp_path / "c.json", "json"))
    page = report(settings, tmp_path / "c.html", "html")

    assert document["unreadable_records"] == [1]
    assert document["records_in_period"] == 7
    assert FORGED not in json.dumps(document)
    box = page.split('<div class="verdict broken">', 1)[1].split("</div>", 1)[0]
    assert "broken at record 1" in box
    assert "Unreadable record, left out of the figures below: 1 " in box
    assert "alice@example.com" not in page


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_timestamp_that_is_not_one_is_named(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    """SQLite keeps any text in a timestamp column; the servers refuse the update."""
    seven_records(settings, engine)
    tamper(engine, "UPDATE retention_audit SET at = :a WHERE seq = 3", a=FORGED)

    document = json.loads(report(settings, tmp_path / "c.json", "json"))

    assert document["verification"]["broken_at_record"] == 3
    assert document["unreadable_records"] == [3]
    assert FORGED not in json.dumps(document)
