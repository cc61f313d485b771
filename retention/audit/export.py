"""Export the audit log to JSON Lines or CSV, written as it is read (flat memory).

Keys and columns are SPEC section 6's fields, in that order. Timestamps are ISO 8601 UTC
with microseconds and a ``Z``; numbers stay numbers; NULL is ``null`` in JSON Lines and
an empty field in CSV. ``dependents`` and ``details`` are JSON objects in JSON Lines and
compact JSON text in CSV. So an export of the whole log verifies without this tool:
``hash`` is SHA-256 over ``prev_hash`` and the canonical JSON of the other fields.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from typing import Any, TextIO

from retention.audit.formats import FORMATS, Format
from retention.audit.records import FIELDS, JSON_FIELDS, TIME_FIELDS, iso


def exportable(record: dict[str, Any]) -> dict[str, Any]:
    """A record as JSON-ready values, in SPEC field order."""
    out: dict[str, Any] = {}
    for name in FIELDS:
        value = record.get(name)
        out[name] = iso(value) if name in TIME_FIELDS else value
    return out


def jsonl_line(record: dict[str, Any]) -> str:
    return json.dumps(exportable(record), ensure_ascii=False, separators=(",", ":")) + "\n"


def csv_row(record: dict[str, Any]) -> list[Any]:
    row: list[Any] = []
    for name, value in exportable(record).items():
        if value is None:
            row.append("")
        elif name in JSON_FIELDS:
            row.append(json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False))
        else:
            row.append(value)
    return row


def write_export(records: Iterable[dict[str, Any]], fmt: Format, out: TextIO) -> int:
    """Write ``records`` to ``out`` one at a time; returns how many were written.

    ``out`` should be opened with ``newline=""`` for CSV, as the csv module asks.
    """
    count = 0
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(FIELDS)
        for record in records:
            writer.writerow(csv_row(record))
            count += 1
    elif fmt == "jsonl":
        for record in records:
            out.write(jsonl_line(record))
            count += 1
    else:
        raise ValueError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    return count
