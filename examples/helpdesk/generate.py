"""Synthetic, seeded data for the helpdesk example.

``rows(seed, now)`` returns every table's rows as plain dicts, so a test can hold the
database against its own reading of the policy; ``load`` inserts them. Tickets and tasks
number from 1 alike, so ticket 7 and task 7 both own a thread with ``object_id`` 7, and
knowledge-base attachments share ids with thread entries: exactly the overlaps a policy
that forgets ``object_type`` would get wrong. A few rows sit on each boundary (a second
either side of the cutoff), and a few on each reason to keep a row (a reopened ticket, a
legal hold, a released hold, a closed ticket without a close time, an orphaned thread).

    python -m examples.helpdesk.generate mysql+pymysql://user@host/helpdesk --seed 7

creates the tables and fills them (names, addresses and texts are made up; e-mail
addresses use the reserved example domains).
"""

from __future__ import annotations

import argparse
import random
from datetime import UTC, datetime, timedelta
from typing import Any

from dateutil.relativedelta import relativedelta
from sqlalchemy import Engine, create_engine, insert

from examples.helpdesk.schema import ENTRY, FAQ, TASK, TICKET, metadata

Row = dict[str, Any]
Rows = dict[str, list[Row]]
FIRST = ("Ana", "Bo", "Chen", "Dara", "Eli", "Fang", "Gus", "Hui", "Ines", "Jun", "Kai", "Lei")
LAST = ("Wang", "Li", "Smith", "Garcia", "Zhang", "Novak", "Okafor", "Liu", "Chen", "Silva")
TOPICS = (
    "Printer offline",
    "Cannot log in",
    "Refund request",
    "Order not delivered",
    "Invoice address wrong",
    "App crashes on start",
    "Password reset mail missing",
)
WORDS = [
    "please",
    "check",
    "the",
    "order",
    "again",
    "thanks",
    "attached",
    "screenshot",
    "error",
    "since",
    "update",
]


class _Maker:
    def __init__(self, seed: int, now: datetime) -> None:
        self.rng = random.Random(seed)  # noqa: S311 (made-up data, not a secret)
        self.now = now.astimezone(UTC).replace(tzinfo=None, microsecond=0)  # naive UTC
        self.data: Rows = {name: [] for name in metadata().tables}

    def add(self, table: str, **row: Any) -> Row:
        row = {"id": len(self.data[table]) + 1, **row}
        self.data[table].append(row)
        return row

    def ago(self, days: float) -> datetime:
        return self.now - timedelta(seconds=int(self.rng.uniform(0, days) * 86_400))

    def between(self, start: datetime, end: datetime) -> datetime:
        span = max(int((end - start).total_seconds()), 0)
        return start + timedelta(seconds=self.rng.randint(0, span))

    def text(self) -> str:
        return " ".join(self.rng.choices(WORDS, k=self.rng.randint(4, 14))).capitalize() + "."


def rows(seed: int = 7, now: datetime | None = None, *, scale: int = 1) -> Rows:
    """Every table's rows for a clock reading ``now`` (default: the current time)."""
    m = _Maker(seed, now or datetime.now(UTC))
    _users(m, 14 * scale)
    held, released = m.data["users"][0]["id"], m.data["users"][1]["id"]
    m.add("legal_holds", user_id=held, reason="Dispute 2026-014", placed=m.ago(300), released=None)
    placed = m.ago(300)
    m.add(
        "legal_holds",
        user_id=released,
        reason="Dispute 2025-031",
        placed=placed,
        released=m.between(placed, m.now),
    )
    for _ in range(40 * scale):
        _ticket(m, m.rng.choice(m.data["users"])["id"])
    _edge_tickets(m, held, released)
    for _ in range(16 * scale):
        _task(m)
    _edge_tasks(m)
    # A ticket deleted by hand long ago left its thread behind: no ticket, never due.
    _thread(m, 10_000, TICKET, m.ago(700), m.now, user=None)
    _faq_attachments(m)
    return m.data


def _users(m: _Maker, n: int) -> None:
    for i in range(n):
        name = f"{m.rng.choice(FIRST)} {m.rng.choice(LAST)}"
        email = (
            f"{name.lower().replace(' ', '.')}{i}@{m.rng.choice(('example.com', 'example.net'))}"
        )
        m.add("users", name=name, email=email, created=m.ago(900))


def _ticket(
    m: _Maker,
    user_id: int,
    *,
    status: str | None = None,
    closed: datetime | None = None,
    created: datetime | None = None,
) -> Row:
    created = created or m.ago(400)
    if status is None:
        status = "closed" if m.rng.random() < 0.75 else "open"
        if status == "closed":
            closed = min(created + timedelta(seconds=m.rng.randint(3_600, 700 * 3_600)), m.now)
    ticket = m.add(
        "tickets",
        number=f"{100000 + len(m.data['tickets']) + 1}",
        user_id=user_id,
        status=status,
        subject=m.rng.choice(TOPICS),
        created=created,
        closed=closed,
    )
    _thread(m, ticket["id"], TICKET, created, closed or m.now, user=user_id)
    return ticket


def _edge_tickets(m: _Maker, held: int, released: int) -> None:
    cutoff = m.now - timedelta(days=90)
    old = m.now - timedelta(days=200)
    someone = m.data["users"][2]["id"]
    _ticket(m, someone, status="closed", closed=cutoff, created=old)  # exactly 90 days: not yet
    _ticket(m, someone, status="closed", closed=cutoff - timedelta(seconds=1), created=old)
    _ticket(m, someone, status="open", closed=old, created=old)  # reopened: kept by unless
    _ticket(m, held, status="closed", closed=old, created=old)  # on hold: kept
    _ticket(m, released, status="closed", closed=old, created=old)  # hold released: due
    _ticket(m, someone, status="closed", closed=None, created=old)  # no close time: never due


def _task(m: _Maker, *, closed: datetime | None = None, created: datetime | None = None) -> Row:
    created = created or m.ago(700)
    if closed is None and m.rng.random() < 0.8:
        closed = min(created + timedelta(seconds=m.rng.randint(3_600, 300 * 3_600)), m.now)
    task = m.add(
        "tasks",
        number=f"T{5000 + len(m.data['tasks']) + 1}",
        title=f"Follow up: {m.rng.choice(TOPICS).lower()}",
        created=created,
        closed=closed,
    )
    _thread(m, task["id"], TASK, created, closed or m.now, user=None)
    return task


def _edge_tasks(m: _Maker) -> None:
    cutoff = m.now - relativedelta(years=1)
    created = cutoff - timedelta(days=30)
    _task(m, closed=cutoff, created=created)  # exactly a year: not yet
    _task(m, closed=cutoff - timedelta(seconds=1), created=created)  # a second more: due


def _thread(
    m: _Maker, object_id: int, object_type: str, start: datetime, end: datetime, user: int | None
) -> None:
    thread = m.add("threads", object_id=object_id, object_type=object_type, created=start)
    for i in range(m.rng.randint(1, 4)):
        from_user = user is not None and i % 2 == 0
        poster = (
            next(u["name"] for u in m.data["users"] if u["id"] == user)
            if from_user
            else f"Agent {m.rng.choice(LAST)}"
        )
        entry = m.add(
            "thread_entries",
            thread_id=thread["id"],
            user_id=user if from_user else None,
            poster=poster,
            body=m.text(),
            created=m.between(start, end),
        )
        for _ in range(m.rng.choice((0, 0, 0, 1, 2))):
            kind = m.rng.choice(("screenshot.png", "invoice.pdf", "log.txt"))
            m.add(
                "attachments",
                object_id=entry["id"],
                object_type=ENTRY,
                name=kind,
                size=m.rng.randint(1_000, 900_000),
            )


def _faq_attachments(m: _Maker) -> None:
    # Knowledge-base articles 1..8: the same ids as the first thread entries.
    for article in range(1, 9):
        m.add("attachments", object_id=article, object_type=FAQ, name="howto.pdf", size=52_000)


def load(engine: Engine, data: Rows) -> None:
    """Create the tables and insert the rows, in one transaction."""
    meta = metadata()
    with engine.begin() as conn:
        meta.create_all(conn)
        for table in meta.sorted_tables:
            if data.get(table.name):
                conn.execute(insert(table), data[table.name])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="SQLAlchemy database URL; the tables are created there")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--scale", type=int, default=1, help="multiply the row counts")
    parser.add_argument(
        "--now", type=datetime.fromisoformat, help="the clock the ages are counted from"
    )
    args = parser.parse_args()
    now = args.now and (args.now if args.now.tzinfo else args.now.replace(tzinfo=UTC))
    engine = create_engine(args.url)
    try:
        load(engine, rows(args.seed, now, scale=args.scale))
    finally:
        engine.dispose()


if __name__ == "__main__":
    main()
