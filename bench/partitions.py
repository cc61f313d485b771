#!/usr/bin/env python3
"""Partition drop against the row-by-row delete of the same rows (issue: speed, item 3).

Not part of the test suite. One run per database and repetition:

1. a table ``feedback_log`` RANGE-partitioned by ``submitted_at``, one partition per month
   of the year before NOW, bounds on the 25th, so the 3-month cutoff falls exactly on a
   bound: 9 partitions lie wholly before it, 3 after;
2. ``retention run`` (in a child process, as bench/run.py measures it) deletes the 9 old
   partitions whole;
3. the same rows in the same table without partitions; the same run deletes them row by
   row in batches;
4. both audit logs must hold the same row count and the same key digests' coverage
   (every removed key), checked here by the row counts.

    .venv/bin/python bench/partitions.py --rows 1000000 --repeat 3 --db postgresql,mariadb

Results are appended to bench/results.json (scenario ``partition-drop`` and
``partition-rows``); ``python bench/run.py --report`` shows them with the others.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run as harness  # noqa: E402  (bench/run.py: children, spawn, admin helpers)

DB = "bench_part"
NOW = harness.NOW.replace(tzinfo=None)
FIRST = datetime(2025, 11, 25)
POLICY = """version: 1
defaults:
  timezone: UTC
  batch_size: {batch}
  guard: {{max_rows: 100000000, max_fraction: 1}}
rules:
  - name: bench-log-delete
    table: feedback_log
    clock: submitted_at
    after: P3M
    action: delete
"""


def bounds() -> list[datetime]:
    """The 13 month bounds from 2025-11-25 to 2026-12-25 (the last partition ends after NOW)."""
    out, d = [], FIRST
    for _ in range(14):
        out.append(d)
        d = (d.replace(day=1) + timedelta(days=32)).replace(day=25)
    return out


def ddl(backend: str, partitioned: bool) -> str:
    ts = "timestamp" if backend == "postgresql" else "datetime(6)"
    table = f"""CREATE TABLE feedback_log (
        id bigint NOT NULL,
        submitted_at {ts} NOT NULL,
        channel varchar(16) NOT NULL,
        email varchar(255) NULL,
        body varchar(200) NOT NULL,
        PRIMARY KEY (id, submitted_at))"""
    if not partitioned:
        return table
    b = bounds()
    if backend == "postgresql":
        return table + " PARTITION BY RANGE (submitted_at)"
    parts = ", ".join(
        f"PARTITION p{lo:%Y_%m} VALUES LESS THAN ('{hi:%Y-%m-%d}')" for lo, hi in zip(b, b[1:])
    )
    return table + f" PARTITION BY RANGE COLUMNS (submitted_at) ({parts})"


def load(backend: str, n: int, partitioned: bool) -> float:
    """Creates DB with the table (partitioned or not) and n rows; returns seconds taken."""
    t = time.perf_counter()
    spr = (NOW - FIRST).total_seconds() / n
    if backend == "postgresql":
        import psycopg

        harness.psql_admin(f"DROP DATABASE IF EXISTS {DB}")
        harness.psql_admin(f"CREATE DATABASE {DB}")
        with psycopg.connect(dbname=DB, autocommit=True, **harness.PG) as c:
            c.execute(ddl(backend, partitioned))
            if partitioned:
                b = bounds()
                for lo, hi in zip(b, b[1:]):
                    c.execute(
                        f"CREATE TABLE feedback_log_p{lo:%Y_%m} PARTITION OF feedback_log "
                        f"FOR VALUES FROM ('{lo:%Y-%m-%d}') TO ('{hi:%Y-%m-%d}')"
                    )
            c.execute(f"""INSERT INTO feedback_log
                SELECT g, timestamp '{FIRST:%Y-%m-%d}' + make_interval(secs => (g - 1) * {spr!r}),
                       CASE WHEN g % 3 = 0 THEN 'web' ELSE 'app' END, 'user' || g || '@example.com',
                       rpad('Log line ' || g || ': ', 120, 'the screen flickers ')
                FROM generate_series(1, {n}) g""")
            c.execute("VACUUM (ANALYZE, FREEZE)")
            c.execute("CHECKPOINT")
    else:
        import pymysql

        harness.my_admin(f"DROP DATABASE IF EXISTS {DB}")
        harness.my_admin(f"CREATE DATABASE {DB}")
        c = pymysql.connect(database=DB, autocommit=True, **harness.MY)
        cur = c.cursor()
        cur.execute(ddl(backend, partitioned))
        cur.execute(f"""INSERT INTO feedback_log
            SELECT seq, TIMESTAMP'{FIRST:%Y-%m-%d %H:%M:%S}' + INTERVAL ((seq - 1) * {int(spr * 1e6)}) MICROSECOND,
                   IF(seq % 3 = 0, 'web', 'app'), CONCAT('user', seq, '@example.com'),
                   RPAD(CONCAT('Log line ', seq, ': '), 120, 'the screen flickers ')
            FROM seq_1_to_{n}""")
        cur.execute("ANALYZE TABLE feedback_log")
        cur.fetchall()
        c.close()
    return time.perf_counter() - t


def url(backend: str) -> str:
    if backend == "postgresql":
        return f"postgresql+psycopg://postgres@127.0.0.1/{DB}"
    return f"mysql+pymysql://root@127.0.0.1/{DB}?charset=utf8mb4"


def evidence(backend: str) -> dict:
    """What the audit log recorded: rows in batch records, and batches naming a partition."""
    rows = harness.query(
        "postgresql" if backend == "postgresql" else "mariadb",
        DB,
        "SELECT row_count, details FROM retention_audit WHERE event = 'batch'",
    )
    whole = [r for r in rows if r[1] and "partition" in str(r[1])]
    return {
        "audit_rows": sum(int(r[0]) for r in rows),
        "audit_batches": len(rows),
        "partition_records": len(whole),
    }


def measure(backend: str, n: int, partitioned: bool, batch: int, rep: int) -> dict:
    loaded = load(backend, n, partitioned)
    policy = harness.WORK / f"policy-partitions-{batch}.yaml"
    policy.write_text(POLICY.format(batch=batch))
    tag = f"partitions-{backend}-{n}-{'drop' if partitioned else 'rows'}-{rep}"
    data, wall, rss, rc = harness.spawn(
        [
            sys.executable,
            str(HERE / "run.py"),
            "--child",
            "tool",
            "--url",
            url(backend),
            "--policy",
            str(policy),
        ],
        log_name=tag,
    )
    if data is None or rc != 0:
        raise RuntimeError(f"{tag}: child failed (rc={rc}); see {harness.WORK / tag}.stderr.log")
    data.pop("batch_seconds", None)
    data.update(evidence(backend))
    data.update(
        backend=backend,
        rows_total=n,
        shape="partitioned" if partitioned else "plain",
        scenario="partition-drop" if partitioned else "partition-rows",
        rep=rep,
        batch_size=batch,
        load_seconds=loaded,
        wall=wall,
        rss_mib=rss / 1024,
        date=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    return data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--db", default="postgresql,mariadb")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=5000)
    ap.add_argument("--out", default=str(HERE / "results.json"))
    args = ap.parse_args()
    harness.WORK.mkdir(exist_ok=True)
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else []
    ratios: dict[str, list[float]] = {}
    for backend in args.db.split(","):
        for rep in range(args.repeat):
            pair = {}
            for partitioned in (True, False):
                r = measure(backend, args.rows, partitioned, args.batch_size, rep)
                results.append(r)
                out.write_text(json.dumps(results, indent=1, default=str))
                pair[partitioned] = r
                print(
                    f"{backend:10} {r['scenario']:15} {r['seconds']:8.2f}s rows={r['rows']} "
                    f"audit_rows={r['audit_rows']} records={r['audit_batches']} "
                    f"whole={r['partition_records']}",
                    flush=True,
                )
            if pair[True]["rows"] != pair[False]["rows"]:
                print(f"  ROWS DIFFER: {pair[True]['rows']} vs {pair[False]['rows']}")
            ratios.setdefault(backend, []).append(pair[False]["seconds"] / pair[True]["seconds"])
        admin = harness.psql_admin if backend == "postgresql" else harness.my_admin
        admin(f"DROP DATABASE IF EXISTS {DB}")
    for backend, r in ratios.items():
        print(
            f"{backend}: rows path / partition drop, median of {len(r)}: "
            f"{statistics.median(r):.1f}x ({', '.join(f'{x:.1f}' for x in r)})"
        )


if __name__ == "__main__":
    main()
