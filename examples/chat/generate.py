"""Synthetic, seeded data for the chat example: users, posts, uploads and login events.

``rows(seed, now)`` returns every table's rows as plain dicts, so a test can hold the
database against its own reading of the policy; ``load`` inserts them. Besides rows spread
over the past two years, a few sit exactly on each rule's boundary (a millisecond either
side of the cutoff), since that is where an off-by-one would remove the wrong row.

    python -m examples.chat.generate sqlite:///chat.db --seed 7 [--now 2026-06-01T12:00Z]

creates the tables and fills them (names, addresses and texts are made up; e-mail
addresses use the reserved example domains).
"""

from __future__ import annotations

import argparse
import random
import string
from datetime import UTC, datetime, timedelta
from typing import Any

from dateutil.relativedelta import relativedelta
from sqlalchemy import Engine, create_engine, insert

from examples.chat.schema import metadata

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MS = timedelta(milliseconds=1)
DAY = timedelta(days=1)
WORDS = [
    "deploy",
    "build",
    "release",
    "ticket",
    "lunch",
    "standup",
    "review",
    "merge",
    "branch",
    "outage",
    "fix",
    "hotfix",
    "meeting",
    "agenda",
    "coffee",
    "docs",
    "backup",
    "restore",
    "metrics",
    "alert",
    "dashboard",
]
AGENTS = ("Mozilla/5.0 (X11; Linux x86_64)", "ChatDesktop/5.9 (Windows 10)", "ChatMobile/2.3")

Rows = dict[str, list[dict[str, Any]]]


def ms(at: datetime) -> int:
    """Unix milliseconds of an aware time, exactly (no float rounding)."""
    return (at - EPOCH) // MS


class _Maker:
    def __init__(self, seed: int, now: datetime) -> None:
        self.rng = random.Random(seed)  # noqa: S311 (made-up data, not a secret)
        self.now = now
        self.users: list[str] = []
        self.channels = [self.id() for _ in range(3)]

    def id(self) -> str:
        return "".join(self.rng.choices(string.ascii_lowercase + "0123456789", k=26))

    def time(self, days_back: float) -> int:
        """Unix ms somewhere in the last ``days_back`` days."""
        return ms(self.now - timedelta(days=self.rng.uniform(0, days_back)))

    def sentence(self) -> str:
        return " ".join(self.rng.choices(WORDS, k=self.rng.randint(3, 12))).capitalize() + "."

    def ip(self) -> str:
        if self.rng.random() < 0.2:
            return f"2001:db8:{self.rng.randint(0, 0xFFFF):x}::{self.rng.randint(1, 0xFFFF):x}"
        return f"198.51.100.{self.rng.randint(1, 254)}"


def rows(seed: int = 7, now: datetime | None = None, *, scale: int = 1) -> Rows:
    """Every table's rows for a clock reading ``now`` (default: the current time)."""
    m = _Maker(seed, now or datetime.now(UTC))
    return {
        "users": _users(m, 12 * scale),
        "posts": _posts(m, 120 * scale),
        "file_info": _files(m, 60 * scale),
        "login_events": _logins(m, 80 * scale),
    }


def _users(m: _Maker, n: int) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        m.users.append(m.id())
        name = f"user{i:03d}"
        domain = m.rng.choice(("example.com", "example.org"))
        out.append(
            {
                "id": m.users[-1],
                "username": name,
                "email": f"{name}@{domain}",
                "create_at": m.time(900),
            }
        )
    return out


def _post(m: _Maker, create_at: int, **extra: Any) -> dict[str, Any]:
    tags = " ".join(f"#{w}" for w in m.rng.sample(WORDS, 2)) if m.rng.random() < 0.3 else None
    row = {
        "id": m.id(),
        "user_id": m.rng.choice(m.users),
        "channel_id": m.rng.choice(m.channels),
        "message": m.sentence(),
        "hashtags": tags,
        "is_pinned": m.rng.random() < 0.05,
        "create_at": create_at,
        "update_at": create_at,
    }
    return row | extra


def _posts(m: _Maker, n: int) -> list[dict[str, Any]]:
    out = []
    for _ in range(n):
        post = _post(m, m.time(730))
        if m.rng.random() < 0.15:  # edited some time after it was written
            post["update_at"] = m.rng.randint(post["create_at"], ms(m.now))
        out.append(post)
    year = ms(m.now - relativedelta(years=1))
    recent = ms(m.now - 10 * DAY)
    out += [
        _post(m, year, is_pinned=False),  # exactly a year old: not yet
        _post(m, year - 1, is_pinned=False),  # a millisecond more: anonymised
        _post(m, year - 400 * 86_400_000, update_at=recent, is_pinned=False),  # edited lately
        _post(m, year - 5 * 86_400_000, is_pinned=True),  # pinned: kept by unless
        # Already anonymised by an earlier run: recognised by the prefix and the NULL.
        _post(
            m,
            year - 30 * 86_400_000,
            message="anon-0f3c5a1b2d4e6f70",
            hashtags=None,
            is_pinned=False,
        ),
    ]
    return out


def _files(m: _Maker, n: int) -> list[dict[str, Any]]:
    def upload(create_at: int, last_access_at: int | None) -> dict[str, Any]:
        word = m.rng.choice(WORDS)
        return {
            "id": m.id(),
            "creator_id": m.rng.choice(m.users),
            "post_id": m.id() if m.rng.random() < 0.8 else None,
            "name": f"{word}-{m.rng.randint(1, 99)}.{m.rng.choice(('png', 'pdf', 'txt'))}",
            "size": m.rng.randint(200, 5_000_000),
            "create_at": create_at,
            "last_access_at": last_access_at,
        }

    out = []
    for _ in range(n):
        created = m.time(365)
        accessed = None if m.rng.random() < 0.4 else m.rng.randint(created, ms(m.now))
        out.append(upload(created, accessed))
    cut = ms(m.now - 90 * DAY)
    old = cut - 200 * 86_400_000
    out += [
        upload(cut, None),  # uploaded exactly 90 days ago: not yet
        upload(cut - 1, None),  # a millisecond more, never opened: deleted
        upload(old, cut),  # opened exactly 90 days ago: still "in the last 90 days"
        upload(old, cut - 1),  # opened a millisecond before that: deleted
    ]
    return out


def _logins(m: _Maker, n: int) -> list[dict[str, Any]]:
    def login(create_at: int, event_id: str | None) -> dict[str, Any]:
        return {
            "event_id": event_id,
            "user_id": m.rng.choice(m.users),
            "ip_address": m.ip(),
            "user_agent": m.rng.choice((*AGENTS, None)),
            "create_at": create_at,
        }

    out = []
    for _ in range(n):
        legacy = m.rng.random() < 0.1  # imported from the old server: no event id
        out.append(login(m.time(60), None if legacy else m.id()))
    cut = ms(m.now - 30 * DAY)
    out += [
        login(cut, m.id()),  # exactly 30 days old: not yet
        login(cut - 1, m.id()),  # a millisecond more: deleted
        login(cut - 1, None),  # as old, but no key names it: unaddressable, kept
    ]
    return out


def load(engine: Engine, data: Rows) -> None:
    """Create the tables and insert the rows, in one transaction."""
    meta = metadata()
    with engine.begin() as conn:
        meta.create_all(conn)
        for name, table_rows in data.items():
            if table_rows:
                conn.execute(insert(meta.tables[name]), table_rows)


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
