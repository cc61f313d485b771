"""`audit find` under another hash key (issue 10, SPEC section 6).

Digests are keyed, so a lookup under a wrong or rotated key finds nothing: the answer must
say the records were written under another key instead of reading as a plain "no record".
"""

from __future__ import annotations

import json

from builders import Invocation, invoke, write_policy
from conftest import HASH_KEY
from sqlalchemy import Engine
from test_audit_chain import NOW, chain_policy, make_feedback

from retention import api
from retention.settings import Settings

ROTATED = "a-rotated-key-0123456789abcdef"
KEYED = "audit:\n  record_keys: true\n"


def find_cli(settings: Settings, key: str, hash_key: str, *args: str) -> Invocation:
    url = settings.database_url.get_secret_value()
    return invoke(
        [
            "audit",
            "find",
            "--table",
            "feedback",
            "--key",
            key,
            *args,
            "--database",
            url,
            "--policy",
            str(settings.policy_file),
        ],
        env={"RETENTION_HASH_KEY": hash_key},
    )


def removed_under_key_a(settings: Settings, engine: Engine) -> None:
    """Rows 1 and 2 removed in one run under HASH_KEY, with per-key digests."""
    make_feedback(engine, [1, 2], [3])
    write_policy(settings.policy_file, chain_policy(batch_size=1, extra=KEYED))
    assert api.run(settings, now=NOW).head is not None


def test_find_under_the_key_of_the_run_finds_the_record(settings: Settings, engine: Engine) -> None:
    removed_under_key_a(settings, engine)

    text = find_cli(settings, "1", HASH_KEY)
    as_json = find_cli(settings, "1", HASH_KEY, "--format", "json")

    assert text.exit_code == as_json.exit_code == 0, text.output + as_json.output
    assert text.stdout.startswith("removed at ")
    assert "another hash key" not in text.output
    document = json.loads(as_json.stdout)
    assert len(document["found"]) == 1
    assert document["found"][0]["action"] == "removed"
    assert document["written_under_other_key"] == 0
    assert HASH_KEY not in text.output + as_json.output


def test_find_under_another_key_says_the_records_were_written_under_another(
    settings: Settings, engine: Engine
) -> None:
    removed_under_key_a(settings, engine)

    text = find_cli(settings, "1", ROTATED)
    as_json = find_cli(settings, "1", ROTATED, "--format", "json")

    assert text.exit_code == as_json.exit_code == 0, text.output + as_json.output
    lines = text.stdout.splitlines()
    assert lines[0] == "no record of removing that key"
    assert "1 run wrote their records under another hash key" in lines[1]
    document = json.loads(as_json.stdout)
    assert document["found"] == []
    assert document["written_under_other_key"] == 1
    for output in (text.output, as_json.output):
        assert ROTATED not in output and HASH_KEY not in output


def test_a_key_never_removed_under_the_same_key_has_no_note(
    settings: Settings, engine: Engine
) -> None:
    removed_under_key_a(settings, engine)

    result = find_cli(settings, "3", HASH_KEY)

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "no record of removing that key"
