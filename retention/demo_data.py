"""The demo's rows: a support system of a consumer-electronics company (``retention demo``).

Accounts, tickets, feedback with the contact details submitted with it, an access log,
marketing consents and a legal-hold registry, spread over the two years before ``now``.
The rows are a pure function of ``(now, seed)``, so a demo can be rebuilt exactly. At
``now`` every rule of the shipped policy has rows that are due, rows kept by its
``unless`` and rows kept by an active legal hold.

The data must never be mistaken for, or reach, real people: IP addresses come from the
documentation ranges (RFC 5737, RFC 3849) and email addresses use the reserved
``example.*`` domains. The tables these rows fill are in ``retention.demo``.
"""

from __future__ import annotations

import random
from bisect import bisect_right
from datetime import UTC, datetime, timedelta
from typing import Any

from retention import demo_pools as pools

DEFAULT_SEED = 20261125

Row = dict[str, Any]

_ACCOUNTS, _TICKETS, _FEEDBACK, _ACCESS_LOG, _HOLDS = 600, 1500, 3000, 8000, 20
_DAY = timedelta(days=1)
_SPAN = timedelta(days=730)


# --- the rows -------------------------------------------------------------------------


def demo_rows(*, now: datetime, seed: int = DEFAULT_SEED) -> dict[str, list[Row]]:
    """The demo rows per table, with naive UTC timestamps; a pure function of its args."""
    rng = random.Random(seed)  # noqa: S311 - demo data, not secrets; must be reproducible
    t = now.astimezone(UTC).replace(tzinfo=None)
    accounts = _accounts(rng, t)
    people = _Population(accounts)
    tickets = _tickets(rng, t, people)
    feedback = _feedback(rng, t, people, tickets)
    contacts = _contacts(rng, feedback, people.by_id)
    holds = _holds(rng, t, accounts, tickets, feedback)
    subjects = [h["subject_id"] for h in holds]
    return {
        "accounts": accounts,
        "tickets": tickets,
        "feedback": feedback,
        "feedback_contacts": contacts,
        "access_log": _access_log(rng, t, people, subjects),
        "marketing_consents": _consents(rng, t, accounts, subjects),
        "legal_holds": holds,
    }


def _between(rng: random.Random, start: datetime, end: datetime) -> datetime:
    return start + timedelta(seconds=rng.uniform(0, (end - start).total_seconds()))


def _accounts(rng: random.Random, now: datetime) -> list[Row]:
    ids = rng.sample(range(1_000_000_000, 3_000_000_000), _ACCOUNTS)
    created = sorted(_between(rng, now - _SPAN - 170 * _DAY, now - 2 * _DAY) for _ in ids)
    taken: set[str] = set()
    rows: list[Row] = []
    for account_id, created_at in zip(ids, created, strict=True):
        username = _username(rng, taken)
        rows.append(
            {
                "id": str(account_id),
                "username": username,
                "phone": _mobile(rng) if rng.random() < 0.8 else None,
                "email": f"{username}@{rng.choice(pools.DOMAINS)}" if rng.random() < 0.85 else None,
                "qq_number": _qq(rng) if rng.random() < 0.4 else None,
                "wechat_id": _wechat(rng, username) if rng.random() < 0.5 else None,
                "created_at": created_at,
                "closed_at": None,
                "anonymised_at": None,
            }
        )
    candidates = [row for row in rows if row["created_at"] < now - 60 * _DAY]
    for i, row in enumerate(rng.sample(candidates, round(_ACCOUNTS * 0.12))):
        # Every eighth closure is recent, so the closed-accounts rule has rows not yet due.
        recent = i % 8 == 0
        start = max(row["created_at"] + _DAY, now - (30 if recent else 365) * _DAY)
        end = now - (timedelta(hours=1) if recent else 31 * _DAY)
        row["closed_at"] = _between(rng, start, end)
    return rows


class _Population:
    """The accounts, sorted by creation, to draw the account active at a moment from."""

    def __init__(self, accounts: list[Row]) -> None:
        self.accounts = accounts
        self.created = [a["created_at"] for a in accounts]
        self.by_id = {a["id"]: a for a in accounts}

    def active_at(self, rng: random.Random, at: datetime) -> Row:
        pool = self.accounts[: max(bisect_right(self.created, at), 1)]
        for _ in range(20):
            account = rng.choice(pool)
            if account["closed_at"] is None or account["closed_at"] > at:
                return account
        return pool[0]


def _tickets(rng: random.Random, now: datetime, people: _Population) -> list[Row]:
    opened = sorted(_between(rng, now - _SPAN, now - timedelta(hours=1)) for _ in range(_TICKETS))
    rows: list[Row] = []
    for ticket_id, opened_at in enumerate(opened, start=1):
        roll = rng.random()
        status = "open" if roll < 0.10 else "pending" if roll < 0.15 else "closed"
        closed_at = None
        if status == "closed":
            took = timedelta(seconds=rng.uniform(1800, 21 * 86400))
            closed_at = min(opened_at + took, now - timedelta(minutes=5))
        rows.append(
            {
                "id": ticket_id,
                "account_id": people.active_at(rng, opened_at)["id"],
                "status": status,
                "opened_at": opened_at,
                "closed_at": closed_at,
            }
        )
    return rows


def _feedback(
    rng: random.Random, now: datetime, people: _Population, tickets: list[Row]
) -> list[Row]:
    drafts: list[Row] = []
    for _ in range(_FEEDBACK):
        if rng.random() < 0.6:
            ticket = rng.choice(tickets)
            delay = timedelta(seconds=rng.uniform(60, 3 * 86400))
            submitted_at = min(ticket["opened_at"] + delay, now - timedelta(minutes=1))
            account_id, ticket_id = ticket["account_id"], ticket["id"]
        else:
            submitted_at = _between(rng, now - _SPAN, now - timedelta(minutes=1))
            anonymous = rng.random() < 0.08
            account_id = None if anonymous else people.active_at(rng, submitted_at)["id"]
            ticket_id = None
        channel = rng.choices(("app", "web", "email"), weights=(70, 20, 10))[0]
        drafts.append(
            {
                "account_id": account_id,
                "ticket_id": ticket_id,
                "channel": channel,
                "body": _body(rng),
                "submitted_at": submitted_at,
            }
        )
    drafts.sort(key=lambda row: row["submitted_at"])
    return [{"id": i, **row} for i, row in enumerate(drafts, start=1)]


def _contacts(rng: random.Random, feedback: list[Row], accounts: dict[str, Row]) -> list[Row]:
    rows: list[Row] = []
    columns = {"mobile": "phone", "email": "email", "qq": "qq_number", "wechat": "wechat_id"}
    for item in feedback:
        account = accounts.get(item["account_id"]) if item["account_id"] else None
        for kind in rng.sample(list(columns), 1 if rng.random() < 0.6 else 2):
            # Most people leave the details of their own account.
            value = account[columns[kind]] if account and rng.random() < 0.7 else None
            if value is None:
                value = _contact(rng, kind)
            rows.append(
                {"id": len(rows) + 1, "feedback_id": item["id"], "kind": kind, "value": value}
            )
    return rows


def _holds(
    rng: random.Random, now: datetime, accounts: list[Row], tickets: list[Row], feedback: list[Row]
) -> list[Row]:
    """Holds on long-standing accounts with old feedback about a settled problem."""
    still_open = {t["id"] for t in tickets if t["status"] != "closed"}
    first_old: dict[str, datetime] = {}
    veterans = {a["id"] for a in accounts if a["created_at"] < now - 420 * _DAY}
    for item in feedback:
        if (
            item["account_id"] in veterans
            and item["submitted_at"] < now - 120 * _DAY
            and item["ticket_id"] not in still_open
        ):
            first_old.setdefault(item["account_id"], item["submitted_at"])
    closed = {a["id"] for a in accounts if a["closed_at"] and a["closed_at"] < now - 45 * _DAY}
    # Some holds, active and lifted, fall on long-closed accounts, for the accounts rule.
    long_closed = [s for s in first_old if s in closed]
    on_closed = rng.sample(long_closed, min(4, len(long_closed)))
    rest = rng.sample([s for s in first_old if s not in on_closed], _HOLDS - len(on_closed))
    first = _HOLDS // 2 - len(on_closed[:3])  # active holds besides those on closed accounts
    subjects = on_closed[:3] + rest[:first] + on_closed[3:] + rest[first:]
    active = _HOLDS // 2  # the first half stays active
    drafts: list[Row] = []
    for n, subject in enumerate(subjects):
        placed_at = _between(rng, first_old[subject] + _DAY, now - 14 * _DAY)
        released_at = None if n < active else _between(rng, placed_at + 7 * _DAY, now - _DAY)
        reason = rng.choice(pools.HOLD_REASONS).format(
            year=placed_at.year, n=rng.randint(1, 9999), days=rng.randint(30, 180)
        )
        drafts.append(
            {
                "subject_id": subject,
                "reason": reason,
                "placed_at": placed_at,
                "released_at": released_at,
            }
        )
    drafts.sort(key=lambda row: row["placed_at"])
    return [{"id": i, **row} for i, row in enumerate(drafts, start=1)]


def _access_log(
    rng: random.Random, now: datetime, people: _Population, subjects: list[str]
) -> list[Row]:
    drafts: list[Row] = []
    # Every account with a hold, active or lifted, visited more than a year ago.
    for subject in subjects:
        account = people.by_id[subject]
        start = max(account["created_at"], now - _SPAN)
        at = _between(rng, start, min(now - 400 * _DAY, account["closed_at"] or now))
        drafts.append(_visit(rng, at, subject, ipv4=True))
    for _ in range(_ACCESS_LOG - len(drafts)):
        # Traffic grew: visits are denser towards now (about 20% in the last 30 days).
        at = now - _SPAN * rng.random() ** 2
        account_id = people.active_at(rng, at)["id"] if rng.random() < 0.7 else None
        drafts.append(_visit(rng, at, account_id, ipv4=False))
    drafts.sort(key=lambda row: row["logged_at"])
    return [{"id": i, **row} for i, row in enumerate(drafts, start=1)]


def _visit(rng: random.Random, at: datetime, account_id: str | None, *, ipv4: bool) -> Row:
    roll = 1.0 if ipv4 else rng.random()
    if roll < 0.02:
        ip = None
    elif roll < 0.15:
        groups = ":".join(f"{rng.randrange(0x10000):x}" for _ in range(2))
        ip = f"2001:db8:{groups}::{rng.randrange(1, 0x10000):x}"
    else:
        ip = f"{rng.choice(('192.0.2', '198.51.100', '203.0.113'))}.{rng.randint(1, 254)}"
    path = rng.choice(pools.PATHS).format(n=rng.randint(1, _TICKETS))
    agent = rng.choice(pools.USER_AGENTS) if rng.random() < 0.99 else None
    return {
        "account_id": account_id,
        "ip_address": ip,
        "user_agent": agent,
        "path": path,
        "logged_at": at,
        "ip_anonymised_at": None,
    }


def _consents(
    rng: random.Random, now: datetime, accounts: list[Row], subjects: list[str]
) -> list[Row]:
    held = set(subjects)  # accounts with a hold, active or lifted, withdrew a consent
    drafts: list[Row] = []
    withdrawals = 0
    for account in accounts:
        for channel, column, share in (("sms", "phone", 0.6), ("email", "email", 0.55)):
            if rng.random() >= share and account["id"] not in held:
                continue
            contact = account[column] or (
                _mobile(rng) if channel == "sms" else f"{account['username']}@example.net"
            )
            signed_up = rng.random() < 0.7
            start = account["created_at"]
            given_at = (
                start + timedelta(seconds=rng.uniform(5, 600))
                if signed_up
                else _between(rng, start, account["closed_at"] or now)
            )
            withdrawn_at = None
            if account["closed_at"] is not None:
                withdrawn_at = account["closed_at"]  # closing an account withdraws consent
            elif rng.random() < 0.12 or account["id"] in held:
                withdrawals += 1
                # Every sixth withdrawal is from the last three days.
                start = max(given_at, now - 3 * _DAY) if withdrawals % 6 == 0 else given_at
                withdrawn_at = _between(rng, start, now - timedelta(minutes=1))
            drafts.append(
                {
                    "account_id": account["id"],
                    "channel": channel,
                    "contact": contact,
                    "given_at": given_at,
                    "withdrawn_at": withdrawn_at,
                }
            )
    drafts.sort(key=lambda row: row["given_at"])
    return [{"id": i, **row} for i, row in enumerate(drafts, start=1)]


# --- values ---------------------------------------------------------------------------


def _username(rng: random.Random, taken: set[str]) -> str:
    surname, given = rng.choice(pools.SURNAMES), rng.choice(pools.GIVEN)
    pattern = rng.randrange(4)
    if pattern == 0:
        name = f"{surname}{given}{rng.randint(1, 999)}"
    elif pattern == 1:
        name = f"{given}_{surname}"
    elif pattern == 2:
        name = f"{surname}.{given}{rng.randint(80, 99)}"
    else:
        name = f"mi_{rng.randint(100000, 99999999)}"
    while name in taken:
        name += str(rng.randint(0, 9))
    taken.add(name)
    return name


def _mobile(rng: random.Random) -> str:
    prefix = rng.choice(pools.MOBILE_PREFIXES)
    return f"+86 {prefix} {rng.randint(0, 9999):04d} {rng.randint(0, 9999):04d}"


def _qq(rng: random.Random) -> str:
    digits = rng.choices(range(5, 12), weights=(1, 2, 4, 8, 10, 8, 3))[0]
    return str(rng.randint(10 ** (digits - 1), 10**digits - 1))


def _wechat(rng: random.Random, username: str) -> str:
    if rng.random() < 0.5:
        return "wxid_" + "".join(rng.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=14))
    return f"{username.replace('.', '_')}_{rng.randint(10, 99)}"[:20]


def _contact(rng: random.Random, kind: str) -> str:
    if kind == "mobile":
        return _mobile(rng)
    if kind == "qq":
        return _qq(rng)
    name = _username(rng, set())
    return _wechat(rng, name) if kind == "wechat" else f"{name}@{rng.choice(pools.DOMAINS)}"


def _body(rng: random.Random) -> str:
    if rng.random() < 0.15:
        return rng.choice(pools.CHINESE)
    issue = rng.choice(pools.ISSUES)
    follow_up = rng.choice(pools.FOLLOW_UPS).format(n=rng.randint(10**15, 10**16 - 1))
    return f"My {rng.choice(pools.PRODUCTS)}: {issue}.{follow_up}"
