#!/usr/bin/env python3
"""Retention benchmark: `retention run` against bare set-based statements (the physical limit).

Not part of the test suite. See bench/README.md for how to run it and bench/RESULTS.md for
the figures. One command:

    .venv/bin/python bench/run.py --rows 100000 --db sqlite,postgresql,mariadb

Every measured run happens in a child process (this same file with ``--child``), on a fresh,
identical copy of the data set; the parent reads the child's peak RSS with ``os.wait4``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / ".work"
NOW = datetime(2026, 11, 25, tzinfo=UTC)
CUTOFF = datetime(2026, 8, 25)  # NOW - P3M, naive UTC, as the rule computes it
START = datetime(2025, 11, 25)  # first submitted_at; one year up to NOW: ~74.8% due
# The data set's shape (--shape): "year" spreads submitted_at over the year before NOW;
# "steady" over the 93 days before NOW, so ~1% is past the cutoff: a table in its steady
# state, run daily, whose ids grow with time (its cost must follow the rows due).
SHAPES = {
    "year": START,
    "steady": NOW.replace(tzinfo=None) - (NOW.replace(tzinfo=None) - CUTOFF) / 0.99,
}
SHAPE = "year"
HASH_KEY = "bench-hash-key-0123456789abcdefX"  # 32 characters, benchmark only
OPEN = ("open",)
PG = dict(host="127.0.0.1", user="postgres")
MY = dict(host="127.0.0.1", user="root")
FORBIDDEN = {"test", "ha", "hb", "hc", "hd", "devpg", "devmy", "corpus", "lead", "postgres"}

# ----------------------------------------------------------------------------------------
# Policies: one rule per file, so each run does exactly one kind of work.

POLICY_HEAD = """version: 1
defaults:
  timezone: UTC
  batch_size: {batch}
  guard: {{max_rows: 100000000, max_fraction: 1}}
rules:
"""
RULES = {
    "delete": """  - name: bench-feedback-delete
    table: feedback
    clock: submitted_at
    after: P3M
    unless:
      - related:
          table: tickets
          on: {id: ticket_id}
          where: {status: {in: [open]}}
    action: delete
    cascade:
      - table: feedback_contacts
        on: {feedback_id: id}
        action: delete
""",
    "anonymise": """  - name: bench-feedback-anonymise
    table: feedback
    clock: submitted_at
    after: P3M
    unless:
      - related:
          table: tickets
          on: {id: ticket_id}
          where: {status: {in: [open]}}
    action: anonymise
    mark: anonymised_at
    set:
      email: null
      phone: null
      author: redact
""",
    "hash": """  - name: bench-feedback-hash
    table: feedback
    clock: submitted_at
    after: P3M
    unless:
      - related:
          table: tickets
          on: {id: ticket_id}
          where: {status: {in: [open]}}
    action: anonymise
    set:
      email: {hash: {prefix: "anon-"}}
      author: {hash: {prefix: "anon-", length: 16}}
""",
}


def policy_file(kind: str, batch: int) -> Path:
    path = WORK / f"policy-{kind}-{batch}.yaml"
    path.write_text(POLICY_HEAD.format(batch=batch) + RULES[kind])
    return path


# ----------------------------------------------------------------------------------------
# Data: the same schema and the same rows on all three databases.
#   tickets: n/4 rows, every 10th open.  feedback: n rows, submitted_at spread evenly over
#   the year before NOW (plus up to 2 h of jitter), ticket_id spread over all tickets.
#   feedback_contacts: an email row for every feedback, a phone row for every even one.


def n_tickets(n: int) -> int:
    return max(10, n // 4)


def seconds_per_row(n: int) -> float:
    return (NOW.replace(tzinfo=None) - first_submitted()).total_seconds() / n


def first_submitted() -> datetime:
    return SHAPES[SHAPE]


def tpl_name(n: int) -> str:
    return f"bench_tpl_{n}" if SHAPE == "year" else f"bench_tpl_{SHAPE}_{n}"


def ddl(dialect: str) -> list[str]:
    ts = (
        "timestamp"
        if dialect == "postgresql"
        else ("datetime(6)" if dialect == "mysql" else "timestamp")
    )
    big = "bigint" if dialect != "sqlite" else "integer"
    tail = " ENGINE=InnoDB" if dialect == "mysql" else ""
    return [
        f"CREATE TABLE tickets (id {big} NOT NULL PRIMARY KEY, status varchar(16) NOT NULL){tail}",
        f"""CREATE TABLE feedback (
              id {big} NOT NULL PRIMARY KEY,
              ticket_id {big} NULL REFERENCES tickets (id),
              submitted_at {ts} NOT NULL,
              channel varchar(16) NOT NULL,
              author varchar(100) NULL,
              email varchar(255) NULL,
              phone varchar(32) NULL,
              body text NOT NULL,
              anonymised_at {ts} NULL){tail}""",
        f"""CREATE TABLE feedback_contacts (
              id {big} NOT NULL PRIMARY KEY,
              feedback_id {big} NOT NULL REFERENCES feedback (id),
              kind varchar(16) NOT NULL,
              value varchar(255) NOT NULL){tail}""",
    ]


INDEXES = [
    "CREATE INDEX ix_feedback_submitted_at ON feedback (submitted_at)",
    "CREATE INDEX ix_feedback_contacts_feedback_id ON feedback_contacts (feedback_id)",
]


def load_postgresql(db: str, n: int) -> None:
    import psycopg

    t = n_tickets(n)
    spr = seconds_per_row(n)
    with psycopg.connect(dbname=db, autocommit=True, **PG) as c:
        # Tables without constraints first, keys and indexes after the bulk load.
        for stmt in ddl("postgresql"):
            stmt = (
                stmt.replace(" NOT NULL PRIMARY KEY", " NOT NULL")
                .replace(" REFERENCES tickets (id)", "")
                .replace(" REFERENCES feedback (id)", "")
            )
            c.execute(stmt)
        c.execute(
            f"INSERT INTO tickets SELECT g, CASE WHEN g % 10 = 0 THEN 'open' ELSE 'closed' END FROM generate_series(1, {t}) g"
        )
        c.execute(f"""INSERT INTO feedback SELECT g, ((g::bigint * 7919) % {t}) + 1,
              timestamp '{first_submitted():%Y-%m-%d %H:%M:%S}' + make_interval(secs => (g - 1) * {spr!r} + ((g::bigint * 37) % 7200)),
              CASE WHEN g % 3 = 0 THEN 'web' ELSE 'app' END, 'User ' || g, 'user' || g || '@example.com',
              '+86 138' || lpad((g % 100000000)::text, 8, '0'),
              rpad('Feedback number ' || g || ': ', 120, 'the screen flickers when charging '), NULL
            FROM generate_series(1, {n}) g""")
        c.execute(f"""INSERT INTO feedback_contacts SELECT 2 * g - 1 + k, g, CASE k WHEN 0 THEN 'email' ELSE 'phone' END,
              CASE k WHEN 0 THEN 'user' || g || '@example.com' ELSE '+86 139' || lpad((g % 100000000)::text, 8, '0') END
            FROM generate_series(1, {n}) g CROSS JOIN generate_series(0, 1) k WHERE k = 0 OR g % 2 = 0""")
        c.execute("ALTER TABLE tickets ADD PRIMARY KEY (id)")
        c.execute("ALTER TABLE feedback ADD PRIMARY KEY (id)")
        c.execute("ALTER TABLE feedback_contacts ADD PRIMARY KEY (id)")
        for stmt in INDEXES:
            c.execute(stmt)
        c.execute("ALTER TABLE feedback ADD FOREIGN KEY (ticket_id) REFERENCES tickets (id)")
        c.execute(
            "ALTER TABLE feedback_contacts ADD FOREIGN KEY (feedback_id) REFERENCES feedback (id)"
        )
        c.execute("VACUUM (ANALYZE, FREEZE)")
        c.execute("CHECKPOINT")


def load_mariadb(db: str, n: int) -> None:
    import pymysql

    t = n_tickets(n)
    spr = seconds_per_row(n)
    c = pymysql.connect(database=db, autocommit=True, **MY)
    cur = c.cursor()
    cur.execute("SET SESSION foreign_key_checks = 0, unique_checks = 0")
    for stmt in ddl("mysql"):
        cur.execute(
            stmt.replace(" REFERENCES tickets (id)", "").replace(" REFERENCES feedback (id)", "")
        )
    cur.execute(
        f"INSERT INTO tickets SELECT seq, IF(seq % 10 = 0, 'open', 'closed') FROM seq_1_to_{t}"
    )
    cur.execute(f"""INSERT INTO feedback SELECT seq, ((seq * 7919) % {t}) + 1,
          TIMESTAMP'{first_submitted():%Y-%m-%d %H:%M:%S}' + INTERVAL ((seq - 1) * {int(spr * 1_000_000)} + ((seq * 37) % 7200) * 1000000) MICROSECOND,
          IF(seq % 3 = 0, 'web', 'app'), CONCAT('User ', seq), CONCAT('user', seq, '@example.com'),
          CONCAT('+86 138', LPAD(seq % 100000000, 8, '0')),
          RPAD(CONCAT('Feedback number ', seq, ': '), 120, 'the screen flickers when charging '), NULL
        FROM seq_1_to_{n}""")
    cur.execute(f"""INSERT INTO feedback_contacts SELECT 2 * s.seq - 1 + k.seq, s.seq, IF(k.seq = 0, 'email', 'phone'),
          IF(k.seq = 0, CONCAT('user', s.seq, '@example.com'), CONCAT('+86 139', LPAD(s.seq % 100000000, 8, '0')))
        FROM seq_1_to_{n} s CROSS JOIN seq_0_to_1 k WHERE k.seq = 0 OR s.seq % 2 = 0 ORDER BY 1""")
    for stmt in INDEXES:
        cur.execute(stmt)
    cur.execute("ALTER TABLE feedback ADD FOREIGN KEY (ticket_id) REFERENCES tickets (id)")
    cur.execute(
        "ALTER TABLE feedback_contacts ADD FOREIGN KEY (feedback_id) REFERENCES feedback (id)"
    )
    cur.execute("ANALYZE TABLE tickets, feedback, feedback_contacts")
    cur.fetchall()
    c.close()


def load_sqlite(path: Path, n: int) -> None:
    import sqlite3

    t = n_tickets(n)
    spr = seconds_per_row(n)
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("PRAGMA journal_mode = DELETE")
    c.execute("BEGIN")
    for stmt in ddl("sqlite"):
        c.execute(stmt)
    seq = "WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {}) "
    c.execute(
        seq.format(t)
        + "INSERT INTO tickets SELECT g, CASE WHEN g % 10 = 0 THEN 'open' ELSE 'closed' END FROM s"
    )
    # Timestamps as SQLAlchemy stores them on SQLite: 'YYYY-MM-DD HH:MM:SS.ffffff'.
    c.execute(
        seq.format(n)
        + f"""INSERT INTO feedback SELECT g, ((g * 7919) % {t}) + 1,
          strftime('%Y-%m-%d %H:%M:%f000', '{first_submitted():%Y-%m-%d %H:%M:%S}', '+' || ((g - 1) * {spr!r} + ((g * 37) % 7200)) || ' seconds'),
          CASE WHEN g % 3 = 0 THEN 'web' ELSE 'app' END, 'User ' || g, 'user' || g || '@example.com',
          '+86 138' || substr('00000000' || (g % 100000000), -8, 8),
          substr('Feedback number ' || g || ': ' || 'the screen flickers when charging the screen flickers when charging the screen flickers when charging the screen flickers', 1, 120), NULL
        FROM s"""
    )
    c.execute(
        seq.format(n)
        + """INSERT INTO feedback_contacts SELECT 2 * g - 1 + k, g, CASE k WHEN 0 THEN 'email' ELSE 'phone' END,
          CASE k WHEN 0 THEN 'user' || g || '@example.com' ELSE '+86 139' || substr('00000000' || (g % 100000000), -8, 8) END
        FROM s CROSS JOIN (SELECT 0 AS k UNION ALL SELECT 1) WHERE k = 0 OR g % 2 = 0 ORDER BY 1"""
    )
    for stmt in INDEXES:
        c.execute(stmt)
    c.execute("COMMIT")
    c.execute("ANALYZE")
    c.close()


# ----------------------------------------------------------------------------------------
# Databases: a template per size, a fresh copy per measured run.


def psql_admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as c:
        c.execute(sql)


def my_admin(sql: str) -> None:
    import pymysql

    c = pymysql.connect(autocommit=True, **MY)
    c.cursor().execute(sql)
    c.close()


class Backend:
    name = ""

    def __init__(self, n: int, rebuild: bool) -> None:
        self.n = n
        self.rebuild = rebuild

    def url(self, db: str) -> str:
        raise NotImplementedError


class Postgres(Backend):
    name = "postgresql"

    def template(self) -> str:
        return tpl_name(self.n)

    def prepare(self) -> float:
        import psycopg

        tpl = self.template()
        with psycopg.connect(dbname="postgres", autocommit=True, **PG) as c:
            have = c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (tpl,)).fetchone()
        if have and not self.rebuild:
            return 0.0
        t = time.perf_counter()
        psql_admin(f"DROP DATABASE IF EXISTS {tpl}")
        psql_admin(f"CREATE DATABASE {tpl}")
        load_postgresql(tpl, self.n)
        return time.perf_counter() - t

    def fresh(self) -> str:
        db = "bench_run"
        psql_admin(f"DROP DATABASE IF EXISTS {db}")
        psql_admin(f"CREATE DATABASE {db} TEMPLATE {self.template()}")
        return db

    def drop(self, db: str) -> None:
        psql_admin(f"DROP DATABASE IF EXISTS {db}")

    def url(self, db: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1/{db}"


class MariaDB(Backend):
    """No cheap copy: each fresh copy is rebuilt by the same deterministic generator."""

    name = "mariadb"

    def prepare(self) -> float:
        return 0.0

    def fresh(self) -> str:
        db = "bench_run"
        my_admin(f"DROP DATABASE IF EXISTS {db}")
        my_admin(f"CREATE DATABASE {db}")
        t = time.perf_counter()
        load_mariadb(db, self.n)
        self.last_load = time.perf_counter() - t
        return db

    def drop(self, db: str) -> None:
        my_admin(f"DROP DATABASE IF EXISTS {db}")

    def url(self, db: str) -> str:
        return f"mysql+pymysql://root@127.0.0.1/{db}?charset=utf8mb4"


class SQLite(Backend):
    name = "sqlite"

    def template(self) -> Path:
        return WORK / f"{tpl_name(self.n)}.db"

    def prepare(self) -> float:
        tpl = self.template()
        if tpl.exists() and not self.rebuild:
            return 0.0
        t = time.perf_counter()
        tpl.unlink(missing_ok=True)
        load_sqlite(tpl, self.n)
        return time.perf_counter() - t

    def fresh(self) -> str:
        db = WORK / "bench_run.db"
        for p in WORK.glob("bench_run.db*"):
            p.unlink()
        shutil.copyfile(self.template(), db)
        with open(db, "rb") as fh:  # warm the page cache, as the template is warm on the servers
            while fh.read(1 << 24):
                pass
        return str(db)

    def drop(self, db: str) -> None:
        for p in WORK.glob("bench_run.db*"):
            p.unlink()

    def url(self, db: str) -> str:
        return f"sqlite:///{db}"


BACKENDS = {"postgresql": Postgres, "mariadb": MariaDB, "sqlite": SQLite}

# ----------------------------------------------------------------------------------------
# Bare statements: the same work as set-based SQL in one transaction.

PREDICATE = {
    "postgresql": "f.submitted_at < %(cutoff)s AND NOT EXISTS (SELECT 1 FROM tickets t WHERE t.id = f.ticket_id AND t.status IN ('open'))",
    "mariadb": "f.submitted_at < %(cutoff)s AND NOT EXISTS (SELECT 1 FROM tickets t WHERE t.id = f.ticket_id AND t.status IN ('open'))",
    "sqlite": "f.submitted_at < :cutoff AND NOT EXISTS (SELECT 1 FROM tickets t WHERE t.id = f.ticket_id AND t.status IN ('open'))",
}


def bare_statements(backend: str, kind: str) -> list[str]:
    p = PREDICATE[backend]
    mark = "%(now)s" if backend != "sqlite" else ":now"
    if kind == "delete":
        if backend == "mariadb":
            # MariaDB 10.x plans a single-table DELETE ... IN (subquery) row by row;
            # the multi-table form is its fastest set-based spelling.
            return [
                f"DELETE c FROM feedback_contacts c JOIN feedback f ON c.feedback_id = f.id WHERE {p}",
                f"DELETE f FROM feedback f WHERE {p}",
            ]
        return [
            f"DELETE FROM feedback_contacts WHERE feedback_id IN (SELECT f.id FROM feedback f WHERE {p})",
            f"DELETE FROM feedback AS f WHERE {p}"
            if backend == "postgresql"
            else f"DELETE FROM feedback WHERE id IN (SELECT f.id FROM feedback f WHERE {p})",
        ]
    if kind == "anonymise":
        target = "feedback f" if backend != "sqlite" else "feedback AS f"
        return [
            f"UPDATE {target} SET email = NULL, phone = NULL, author = '[redacted]', anonymised_at = {mark} WHERE {p} AND f.anonymised_at IS NULL"
        ]
    if kind == "hash":
        if backend == "postgresql":

            def h(col: str) -> str:
                return f"encode(sha256(%(outer)s || sha256(%(inner)s || convert_to({col}, 'UTF8'))), 'hex')"
        elif backend == "mariadb":

            def h(col: str) -> str:
                return f"lower(sha2(concat(%(outer)s, unhex(sha2(concat(%(inner)s, {col}), 256))), 256))"
        else:

            def h(col: str) -> str:
                return f"bench_hmac({col})"

        if backend == "mariadb":

            def cat(a: str, b: str) -> str:
                return f"concat({a}, {b})"
        else:

            def cat(a: str, b: str) -> str:
                return f"{a} || {b}"

        target = "feedback f" if backend != "sqlite" else "feedback AS f"
        like = "'anon-%%'" if backend != "sqlite" else "'anon-%'"
        done = f"(f.email IS NULL OR f.email LIKE {like}) AND (f.author IS NULL OR f.author LIKE {like})"
        email = cat("'anon-'", h("email"))
        author = cat("'anon-'", f"substr({h('author')}, 1, 16)")
        return [
            f"UPDATE {target} SET email = {email}, author = {author} WHERE {p} AND NOT ({done})"
        ]
    raise ValueError(kind)


def hmac_pads() -> tuple[bytes, bytes]:
    key = HASH_KEY.encode().ljust(64, b"\0")
    return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)


def child_bare(backend: str, db: str, kind: str) -> dict:
    inner, outer = hmac_pads()
    params = {"cutoff": CUTOFF, "now": NOW.replace(tzinfo=None), "inner": inner, "outer": outer}
    out = {"statements": [], "rowcounts": []}
    t0 = time.perf_counter()
    if backend == "postgresql":
        import psycopg

        conn = psycopg.connect(dbname=db, **PG)
        cur = conn.cursor()
        cur.execute("SET TIME ZONE 'UTC'")
    elif backend == "mariadb":
        import pymysql

        conn = pymysql.connect(database=db, **MY)
        cur = conn.cursor()
        cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        cur.execute("SET SESSION time_zone = '+00:00'")
        conn.begin()
    else:
        import hashlib
        import hmac
        import sqlite3

        conn = sqlite3.connect(db, isolation_level=None)
        conn.execute("PRAGMA foreign_keys = ON")  # as the product's connections have it
        conn.create_function(
            "bench_hmac",
            1,
            lambda v: (
                None
                if v is None
                else hmac.new(HASH_KEY.encode(), str(v).encode(), hashlib.sha256).hexdigest()
            ),
            deterministic=True,
        )
        cur = conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        params = {
            "cutoff": CUTOFF.strftime("%Y-%m-%d %H:%M:%S.%f"),
            "now": NOW.strftime("%Y-%m-%d %H:%M:%S.%f"),
        }
    t1 = time.perf_counter()
    for sql in bare_statements(backend, kind):
        s = time.perf_counter()
        cur.execute(sql, params)
        out["rowcounts"].append(cur.rowcount)
        out["statements"].append(round(time.perf_counter() - s, 4))
    s = time.perf_counter()
    if backend == "sqlite":
        cur.execute("COMMIT")
    else:
        conn.commit()
    out["commit_seconds"] = round(time.perf_counter() - s, 4)
    out["seconds"] = time.perf_counter() - t1
    out["seconds_with_connect"] = time.perf_counter() - t0
    conn.close()
    out["rows"] = out["rowcounts"][-1]
    out["dependents"] = out["rowcounts"][0] if kind == "delete" else 0
    return out


# ----------------------------------------------------------------------------------------
# The product, through its API, with timing hooks around (never inside) its code.


def _fits(owner: object, name: str, params: list[str]) -> Any:
    """The product function a what-if replaces, checked to still take ``params``.

    The replacements call private functions of the product; when a refactor changes one,
    the child stops here with one line naming it, not with a TypeError mid-batch.
    """
    import inspect

    target = getattr(owner, name, None)
    if target is None:
        raise RuntimeError(f"what-if: {getattr(owner, '__name__', owner)}.{name} is gone")
    found = list(inspect.signature(target).parameters)
    if found[: len(params)] != params:
        raise RuntimeError(
            f"what-if: {name}({', '.join(found)}) no longer matches ({', '.join(params)}); "
            "update apply_whatif"
        )
    return target


def apply_whatif() -> None:
    """The changes proposed in RESULTS.md ("change 2"), applied in this child process only by
    replacing three functions (retention/ is not edited), to measure what they would gain.

    All three have since landed in the product (0ce3e91, 823418d); the replacements stay
    byte-for-byte compatible with it, so ``whatif-*`` still runs and is the template for
    the next proposal:

    1. the batch's key digest (audit.records.encode_keys): same bytes, without one
       json.dumps per key for integer keys.
    2. executor._parent_values: sort single-column link values naturally, falling back to
       repr() only for values that do not compare.
    3. SQLiteBackend.keys_in: ``col IN (SELECT value FROM json_each(:p))`` with one JSON
       parameter instead of an expanding IN of up to 5000 placeholders.
    """
    import hashlib
    import hmac

    from sqlalchemy import bindparam, column, func, select
    from sqlalchemy.dialects import sqlite as sqlite_dialect

    import retention.executor as ex
    from retention.audit import records
    from retention.backends.sqlite import SQLiteBackend

    slow_encode = _fits(records, "encode_keys", ["keys"])
    _fits(ex, "key_digest", ["hash_key", "keys"])
    _fits(ex, "_parent_values", ["rows", "positions"])
    slow_keys_in = _fits(SQLiteBackend, "keys_in", ["self", "cols", "name"])

    def encode_keys(keys):
        # The same bytes as the product's encode_keys (sorted by value, compact JSON).
        if keys and all(len(k) == 1 and type(k[0]) is int for k in keys):
            return ("[" + ",".join("[%d]" % v for v in sorted(k[0] for k in keys)) + "]").encode()
        return slow_encode(keys)

    def key_digest(hash_key, keys):
        return hmac.new(hash_key, encode_keys(keys), hashlib.sha256).hexdigest()

    ex.key_digest = key_digest

    def _parent_values(rows, positions):
        if len(positions) == 1:
            i = positions[0]
            distinct = {row[i] for row in rows}
            distinct.discard(None)
            try:
                return sorted(distinct)
            except TypeError:
                return sorted(distinct, key=repr)
        return sorted(
            {
                tuple(row[i] for i in positions)
                for row in rows
                if all(row[i] is not None for i in positions)
            },
            key=repr,
        )

    ex._parent_values = _parent_values

    def keys_in(self, cols, name):
        if len(cols) == 1:
            values = select(column("value")).select_from(
                func.json_each(bindparam(name, type_=sqlite_dialect.JSON()))
            )
            return cols[0].in_(values.scalar_subquery())
        return slow_keys_in(self, cols, name)

    SQLiteBackend.keys_in = keys_in


def child_tool(url: str, policy: Path) -> dict:
    t_import = time.perf_counter()
    import retention.executor as ex
    from retention import api
    from retention.settings import load_settings

    imported = time.perf_counter() - t_import
    batches: list[float] = []
    counting: list[float] = []
    orig_batch = ex.Executor._one_batch
    orig_count = ex.counts_for_run

    def timed_batch(self, conn, plan, *args):  # the whole transaction: begin .. commit
        s = time.perf_counter()
        result = orig_batch(self, conn, plan, *args)
        if result is not None:
            batches.append(time.perf_counter() - s)
        return result

    def timed_count(conn, plan, *args, **kwargs):
        s = time.perf_counter()
        result = orig_count(conn, plan, *args, **kwargs)
        counting.append(time.perf_counter() - s)
        return result

    if os.environ.get("BENCH_WHATIF"):
        apply_whatif()
    ex.Executor._one_batch = timed_batch
    ex.counts_for_run = timed_count
    settings = load_settings(database_url=url, policy_file=policy)
    s = time.perf_counter()
    result = api.run(settings, now=NOW)
    seconds = time.perf_counter() - s
    rule = result.rules[0]
    return {
        "seconds": seconds,
        "import_seconds": imported,
        "count_seconds": sum(counting),
        "status": rule.status,
        "error": rule.error,
        "rows": rule.rows,
        "dependents": sum(rule.dependents.values()),
        "batches": rule.batches,
        "batch_seconds": batches,
    }


def audit_batch_gaps(backend: str, db: str) -> list[float]:
    """Per-batch durations from the audit log: differences of consecutive `at` of batches."""
    rows = query(backend, db, "SELECT at FROM retention_audit WHERE event = 'batch' ORDER BY seq")
    ats = [r[0] if isinstance(r[0], datetime) else datetime.fromisoformat(r[0]) for r in rows]
    return [(b - a).total_seconds() for a, b in zip(ats, ats[1:])]


def query(backend: str, db: str, sql: str) -> list[tuple]:
    if backend == "postgresql":
        import psycopg

        with psycopg.connect(dbname=db, **PG) as c:
            return c.execute(sql).fetchall()
    if backend == "mariadb":
        import pymysql

        c = pymysql.connect(database=db, **MY)
        cur = c.cursor()
        cur.execute(sql)
        rows = list(cur.fetchall())
        c.close()
        return rows
    import sqlite3

    c = sqlite3.connect(db)
    rows = c.execute(sql).fetchall()
    c.close()
    return rows


# ----------------------------------------------------------------------------------------
# Parent side: spawn, measure, summarise.


def spawn(
    args: list[str], env: dict | None = None, log_name: str = "child"
) -> tuple[dict | None, float, int, int]:
    """Run a child; returns (its JSON, wall seconds, peak RSS in KiB, exit code)."""
    full_env = dict(os.environ)
    full_env.update(
        {"RETENTION_HASH_KEY": HASH_KEY, "RETENTION_LOG_FORMAT": "json", "PYTHONPATH": str(ROOT)}
    )
    full_env.update(env or {})
    out = tempfile.TemporaryFile()
    err = open(WORK / f"{log_name}.stderr.log", "wb")
    t = time.perf_counter()
    proc = subprocess.Popen(args, stdout=out, stderr=err, env=full_env, cwd=WORK)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    err.close()
    out.seek(0)
    text = out.read().decode()
    data = None
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            try:
                data = json.loads(line)
            except ValueError:
                continue
            break
    return data, wall, usage.ru_maxrss, proc.returncode


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(q * (len(s) - 1)))))
    return s[k]


class SnapshotHolder:
    """Another transaction holding a snapshot open during a run (REPEATABLE READ + SELECT)."""

    def __init__(self, backend: str, db: str) -> None:
        self.backend, self.db = backend, db

    def __enter__(self):
        if self.backend == "postgresql":
            import psycopg

            self.conn = psycopg.connect(dbname=self.db, **PG)
            self.conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            self.conn.execute("SELECT count(*) FROM feedback_contacts").fetchone()
        elif self.backend == "mariadb":
            import pymysql

            self.conn = pymysql.connect(database=self.db, **MY)
            cur = self.conn.cursor()
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            cur.execute("SELECT count(*) FROM feedback_contacts")
            cur.fetchall()
        else:
            raise ValueError("snapshot scenario: PostgreSQL and MariaDB only")
        return self

    def __exit__(self, *exc):
        self.conn.rollback()
        self.conn.close()


def run_tool(be: Backend, db: str, kind: str, batch: int, tag: str, whatif: bool = False) -> dict:
    policy = policy_file(kind, batch)
    env = {"BENCH_WHATIF": "1"} if whatif else None
    data, wall, rss, rc = spawn(
        [sys.executable, __file__, "--child", "tool", "--url", be.url(db), "--policy", str(policy)],
        env=env,
        log_name=tag,
    )
    if data is None or rc != 0:
        raise RuntimeError(
            f"{tag}: tool child failed (rc={rc}); see {WORK / (tag + '.stderr.log')}"
        )
    gaps = audit_batch_gaps(be.name, db)
    b = data.pop("batch_seconds")
    data.update(
        wall=wall,
        rss_mib=rss / 1024,
        batch_p50=pct(b, 0.5),
        batch_p99=pct(b, 0.99),
        batch_max=max(b) if b else None,
        batch_over_250ms=sum(1 for x in b if x > 0.25),
        batch_over_1s=sum(1 for x in b if x > 1.0),
        audit_gap_p99=pct(gaps, 0.99),
        audit_gap_max=max(gaps) if gaps else None,
    )
    return data


def run_bare(be: Backend, db: str, kind: str, tag: str) -> dict:
    data, wall, rss, rc = spawn(
        [
            sys.executable,
            __file__,
            "--child",
            "bare",
            "--backend",
            be.name,
            "--db",
            db,
            "--kind",
            kind,
        ],
        log_name=tag,
    )
    if data is None or rc != 0:
        raise RuntimeError(
            f"{tag}: bare child failed (rc={rc}); see {WORK / (tag + '.stderr.log')}"
        )
    data.update(wall=wall, rss_mib=rss / 1024)
    return data


def run_nothing_due(be: Backend, db: str, batch: int, tag: str) -> dict:
    """A second run over the same copy: nothing is due. The CLI, timed as a whole process."""
    policy = policy_file("delete", batch)
    cli = str(ROOT / ".venv" / "bin" / "retention")
    # --now: the cutoff of the run before it, so that nothing is due (the clock has moved).
    args = ["run", "--database", be.url(db), "--policy", str(policy), "--now", NOW.isoformat()]
    _, wall, rss, rc = spawn([cli, *args, "--output", "json"], log_name=tag)
    api_data = run_tool(be, db, "delete", batch, tag + "-api")
    return {
        "cli_wall": wall,
        "cli_rc": rc,
        "cli_rss_mib": rss / 1024,
        "api_seconds": api_data["seconds"],
        "api_count_seconds": api_data["count_seconds"],
        "rows": api_data["rows"],
    }


def run_pt_archiver(be: Backend, db: str, batch: int, tag: str) -> dict:
    """pt-archiver --purge on the children (same selection of parents), then on the parents."""
    cutoff = CUTOFF.strftime("%Y-%m-%d %H:%M:%S")
    parent_where = f"submitted_at < '{cutoff}' AND NOT EXISTS (SELECT 1 FROM tickets t WHERE t.id = feedback.ticket_id AND t.status IN ('open'))"
    child_where = f"feedback_id IN (SELECT f.id FROM feedback f WHERE f.submitted_at < '{cutoff}' AND NOT EXISTS (SELECT 1 FROM tickets t WHERE t.id = f.ticket_id AND t.status IN ('open')))"
    out = {"steps": []}
    total = 0.0
    peak = 0
    for table, where in (("feedback_contacts", child_where), ("feedback", parent_where)):
        args = [
            "pt-archiver",
            "--source",
            f"h=127.0.0.1,u=root,D={db},t={table}",
            "--where",
            where,
            "--purge",
            "--bulk-delete",
            "--commit-each",
            "--limit",
            str(batch),
            "--no-safe-auto-increment",
            "--no-check-charset",
            "--statistics",
        ]
        t = time.perf_counter()
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=WORK)
        text = proc.stdout.read().decode()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t
        rc = os.waitstatus_to_exitcode(status)
        (WORK / f"{tag}-{table}.log").write_text(text)
        if rc != 0:
            raise RuntimeError(f"pt-archiver on {table} failed rc={rc}: {text[-2000:]}")
        deleted = next(
            (int(l.split()[1]) for l in text.splitlines() if l.startswith("DELETE ")), None
        )
        out["steps"].append({"table": table, "seconds": wall, "deleted": deleted})
        total += wall
        peak = max(peak, usage.ru_maxrss)
    out["seconds"] = total
    out["rss_mib"] = peak / 1024
    out["rows"] = out["steps"][1]["deleted"]
    out["dependents"] = out["steps"][0]["deleted"]
    return out


def scenario_list(backend: str, wanted: list[str]) -> list[str]:
    order = [
        "bare-delete",
        "delete",
        "whatif-delete",
        "snapshot",
        "bare-snapshot",
        "pt-archiver",
        "bare-anonymise",
        "anonymise",
        "whatif-anonymise",
        "bare-hash",
        "hash",
        "whatif-hash",
    ]
    out = [s for s in order if s in wanted]
    if backend == "sqlite":
        out = [s for s in out if s not in ("snapshot", "bare-snapshot")]
    if backend != "mariadb":
        out = [s for s in out if s != "pt-archiver"]
    return out


def bench(args: argparse.Namespace) -> None:
    WORK.mkdir(exist_ok=True)
    results_path = Path(args.out)
    results = json.loads(results_path.read_text()) if results_path.exists() else []
    started = datetime.now(UTC).isoformat(timespec="seconds")  # pairs runs of one command
    for n in args.rows:
        for name in args.db:
            be = BACKENDS[name](n, args.rebuild)
            built = be.prepare()
            if built:
                print(f"[{name} {n}] template built in {built:.1f}s", flush=True)
            for rep in range(args.repeat):
                for sc in scenario_list(name, args.scenarios):
                    tag = f"{name}-{n}-{sc}-{rep}"
                    t = time.perf_counter()
                    db = be.fresh()
                    prep = time.perf_counter() - t
                    rec = {
                        "backend": name,
                        "rows_total": n,
                        "shape": SHAPE,
                        "invocation": started,
                        "scenario": sc,
                        "rep": rep,
                        "batch_size": args.batch_size,
                        "copy_seconds": prep,
                        "date": datetime.now(UTC).isoformat(timespec="seconds"),
                    }
                    try:
                        if sc == "bare-snapshot":
                            with SnapshotHolder(name, db):
                                rec.update(run_bare(be, db, "delete", tag))
                        elif sc.startswith("bare-"):
                            rec.update(run_bare(be, db, sc[5:], tag))
                        elif sc == "pt-archiver":
                            rec.update(run_pt_archiver(be, db, args.batch_size, tag))
                        elif sc.startswith("whatif-"):
                            rec.update(run_tool(be, db, sc[7:], args.batch_size, tag, whatif=True))
                        elif sc == "snapshot":
                            with SnapshotHolder(name, db):
                                rec.update(run_tool(be, db, "delete", args.batch_size, tag))
                        else:
                            rec.update(run_tool(be, db, sc, args.batch_size, tag))
                            if sc == "delete" and "nothing" in args.scenarios:
                                rec["nothing_due"] = run_nothing_due(
                                    be, db, args.batch_size, tag + "-nothing"
                                )
                    except Exception as exc:  # keep going: record the failure
                        rec["failed"] = f"{type(exc).__name__}: {exc}"
                    finally:
                        if not args.keep:
                            be.drop(db)
                    results.append(rec)
                    results_path.write_text(json.dumps(results, indent=1, default=str))
                    print(summary_line(rec), flush=True)
    print()
    print(report(results, args.since))


def summary_line(r: dict) -> str:
    if "failed" in r:
        return f"{r['backend']:10} {r['rows_total']:>8} {r['scenario']:15} FAILED {r['failed']}"
    s = r["seconds"]
    line = (
        f"{r['backend']:10} {r['rows_total']:>8} {r['scenario']:15} {s:8.2f}s rows={r['rows']} "
        f"dep={r.get('dependents', 0)} rows/s={r['rows'] / s:,.0f} rss={r.get('rss_mib', 0):.0f}MiB"
    )
    if "batch_p99" in r and r["batch_p99"] is not None:
        line += f" batches={r['batches']} p99={r['batch_p99'] * 1000:.0f}ms max={r['batch_max'] * 1000:.0f}ms count={r['count_seconds']:.2f}s"
    if "nothing_due" in r:
        nd = r["nothing_due"]
        line += f" | nothing-due: cli {nd['cli_wall']:.2f}s api {nd['api_seconds']:.2f}s"
    return line


def report(results: list[dict], since: str = "") -> str:
    """Medians per (backend, size, scenario), and ratios to the bare statements."""
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        if "failed" in r or (since and r.get("date", "") < since):
            continue
        b = r["backend"] if r.get("shape", "year") == "year" else f"{r['backend']}/{r['shape']}"
        groups.setdefault((b, r["rows_total"], r["scenario"], r["batch_size"]), []).append(r)
    med = {k: statistics.median(x["seconds"] for x in v) for k, v in groups.items()}
    lines = [
        "backend     rows      scenario        n  median_s   rows/s     ratio  paired  p99_ms  max_ms  rss_MiB  nothing_due_cli_s"
    ]
    for (b, n, sc, bs), v in sorted(groups.items()):
        m = med[(b, n, sc, bs)]
        rows = v[0]["rows"]
        base = {
            "delete": "bare-delete",
            "snapshot": "bare-delete",
            "pt-archiver": "bare-delete",
            "whatif-delete": "bare-delete",
            "bare-snapshot": "bare-delete",
            "anonymise": "bare-anonymise",
            "whatif-anonymise": "bare-anonymise",
            "hash": "bare-hash",
            "whatif-hash": "bare-hash",
        }.get(sc)
        ratio = med[(b, n, base, bs)] / m if base and (b, n, base, bs) in med else None

        # Side by side: the bare run of the same repetition (same --repeat loop, minutes
        # apart), divided by this run; the median of those pairs.
        def pair(x: dict) -> tuple:
            return x.get("invocation", x["date"][:10]), x["rep"]

        bare_by_rep = {pair(x): x for x in groups.get((b, n, base, bs), [])}
        pairs = [
            bare_by_rep[pair(x)]["seconds"] / x["seconds"] for x in v if pair(x) in bare_by_rep
        ]
        paired = statistics.median(pairs) if pairs else None
        p99 = (
            statistics.median(x["batch_p99"] for x in v)
            if v[0].get("batch_p99") is not None
            else None
        )
        mx = max(x["batch_max"] for x in v) if v[0].get("batch_max") is not None else None
        rss = max(x.get("rss_mib", 0) for x in v)
        nds = [x["nothing_due"]["cli_wall"] for x in v if "nothing_due" in x]
        nd = statistics.median(nds) if nds else None
        lines.append(
            f"{b:11} {n:>8}  {sc:15} {len(v):2} {m:8.2f} {rows / m:9,.0f}  "
            f"{'' if ratio is None else f'{ratio:5.2f}':>5}  "
            f"{'' if paired is None else f'{paired:5.2f} ({len(pairs)})':>6}  {'' if p99 is None else f'{p99 * 1000:6.0f}':>6}  "
            f"{'' if mx is None else f'{mx * 1000:6.0f}':>6}  {rss:7.0f}  {'' if nd is None else f'{nd:.2f}'}"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--rows",
        default="100000",
        help="feedback rows, comma-separated sizes (e.g. 1000000,3000000)",
    )
    ap.add_argument("--db", default="sqlite,postgresql,mariadb", help="backends, comma-separated")
    ap.add_argument(
        "--scenarios",
        default="bare-delete,delete,nothing,snapshot,pt-archiver,bare-anonymise,anonymise,bare-hash,hash",
        help="comma-separated subset of the default",
    )
    ap.add_argument("--batch-size", type=int, default=5000)
    ap.add_argument(
        "--repeat", type=int, default=1, help="repeat each scenario N times (medians are reported)"
    )
    ap.add_argument("--out", default=str(HERE / "results.json"), help="results file (appended to)")
    ap.add_argument(
        "--rebuild", action="store_true", help="rebuild the templates even if they exist"
    )
    ap.add_argument(
        "--keep", action="store_true", help="keep the last copy (bench_run) for inspection"
    )
    ap.add_argument(
        "--report", action="store_true", help="only print the table of the results file"
    )
    ap.add_argument(
        "--shape",
        choices=sorted(SHAPES),
        default="year",
        help="year: ~67%% due (the headline); steady: ~1%% due (a table run daily)",
    )
    ap.add_argument("--since", default="", help="report only results from this ISO date-time on")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--policy", help=argparse.SUPPRESS)
    ap.add_argument("--backend", help=argparse.SUPPRESS)
    ap.add_argument("--kind", help=argparse.SUPPRESS)
    args, _ = ap.parse_known_args()
    if args.child == "tool":
        print(json.dumps(child_tool(args.url, Path(args.policy))))
        return
    if args.child == "bare":
        print(json.dumps(child_bare(args.backend, args.db, args.kind)))
        return
    if args.report:
        print(report(json.loads(Path(args.out).read_text()), args.since))
        return
    global SHAPE
    SHAPE = args.shape
    args.rows = [int(x) for x in args.rows.split(",")]
    args.db = [x.strip() for x in args.db.split(",")]
    args.scenarios = [x.strip() for x in args.scenarios.split(",")]
    bench(args)


if __name__ == "__main__":
    main()
