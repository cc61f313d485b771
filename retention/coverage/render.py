"""A coverage report as plain data (``--output json``) and as text for people.

Only names, categories, detector names and counts: never a sampled value.
"""

from __future__ import annotations

from typing import Any

from retention.coverage.scan import CoverageReport, Finding, Status


def _finding(f: Finding) -> dict[str, Any]:
    return {
        "table": f.table,
        "column": f.column,
        "status": f.status.value,
        "by_name": list(f.by_name),
        "by_values": f.by_values,
        "values_sampled": f.sampled,
        "covered_by": list(f.covered_by),
        "reason": f.reason,
    }


def coverage_data(report: CoverageReport) -> dict[str, Any]:
    counts = {s.value: sum(f.status is s for f in report.findings) for s in Status}
    return {
        "tables": report.tables,
        "columns": report.columns,
        "sample_rows": report.sample_rows,
        "personal_columns": len(report.findings),
        **counts,
        "findings": [_finding(f) for f in report.findings],
        "uncovered_columns": [f.name for f in report.uncovered],
        "stale_ignores": list(report.stale_ignores),
    }


def _why(f: Finding) -> str:
    parts = []
    if f.by_name:
        parts.append("name: " + ", ".join(f.by_name))
    if f.by_values:
        found = ", ".join(f"{name} {n}" for name, n in f.by_values.items())
        parts.append(f"values: {found} of {f.sampled} sampled")
    return "; ".join(parts)


def coverage_text(report: CoverageReport) -> str:
    lines = [
        f"coverage: {report.tables} tables, {report.columns} columns, "
        f"up to {report.sample_rows} rows sampled per table"
    ]
    width = max((len(f.name) for f in report.findings), default=0)
    for f in report.findings:
        label = "UNCOVERED" if f.status is Status.UNCOVERED else f.status.value
        line = f"  {label:<9}  {f.name:<{width}}  {_why(f)}"
        if f.covered_by:
            line += "; by " + ", ".join(f.covered_by)
        if f.reason is not None:
            line += f"; reviewed: {f.reason}"
        lines.append(line)
    for stale in report.stale_ignores:
        lines.append(f"  note: coverage.ignore names {stale}, which is not in the database")
    data = coverage_data(report)
    lines.append(
        f"{data['personal_columns']} columns look personal: {data['covered']} covered, "
        f"{data['ignored']} reviewed (coverage.ignore), {data['uncovered']} uncovered"
    )
    return "\n".join(lines)


__all__ = ["coverage_data", "coverage_text"]
