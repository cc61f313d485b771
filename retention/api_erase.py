"""Erasure requests and reapplying removals as Python functions: erase, reapply,
find_subject, read_subjects.

Each takes a frozen ``Settings`` and explicit arguments and returns data; rendering is
the caller's. ``erase`` and ``reapply`` check everything that can refuse them (the hash
key, the policy against the schema, a writable database) before their first write.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection, Engine

from retention.api import load
from retention.api_db import read_only, reflect_checked
from retention.audit.erasures import ErasureSeen, requests_of, subject_digest
from retention.audit.query import When, check_period
from retention.catalog import Catalog
from retention.control import Control
from retention.db import make_engine, reachable, require_writable
from retention.erase import Eraser, ErasureResult
from retention.errors import UsageError
from retention.leases import LeaseTerms
from retention.policy.loader import LoadedPolicy
from retention.reapply import Reapplier, ReapplyResult
from retention.settings import Settings

#: longer lines in a subjects file are refused: no id of a person is that long
MAX_SUBJECT = 255


def read_subjects(path: Path) -> list[str]:
    """The subject ids of a file: one per line, blank lines and ``#`` comments ignored.

    ``UsageError`` (exit 2) for a file that cannot be read, is not UTF-8 text, holds a line
    longer than ``MAX_SUBJECT`` characters, or holds no id; the error names the file and
    line, never the line's text (it is a person's id).
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"--subjects-file: cannot read {path}: {exc.strerror}") from None
    subjects = []
    for number, line in enumerate(raw.split(b"\n"), 1):
        try:
            text = line.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise UsageError(
                f"{path}:{number}: --subjects-file: not UTF-8 text (hint: save it as UTF-8)"
            ) from None
        if not text or text.startswith("#"):
            continue
        if len(text) > MAX_SUBJECT or any(ord(c) < 32 for c in text):
            raise UsageError(
                f"{path}:{number}: --subjects-file: not a subject id (longer than "
                f"{MAX_SUBJECT} characters or a control character; one id per line)"
            )
        subjects.append(text)
    if not subjects:
        raise UsageError(f"{path}: --subjects-file: no subject id in the file")
    return subjects


def _check_subjects(subjects: Sequence[str]) -> list[str]:
    found = []
    for n, subject in enumerate(subjects, 1):
        text = subject.strip()
        if not text or len(text) > MAX_SUBJECT:
            raise UsageError(f"--subject #{n}: empty or longer than {MAX_SUBJECT} characters")
        found.append(text)
    return found


@contextmanager
def _prepared(
    settings: Settings, *, dry_run: bool
) -> Iterator[tuple[LoadedPolicy, Engine, Catalog, bytes]]:
    hash_key = settings.require_hash_key()
    loaded = load(settings)
    engine = make_engine(settings, read_only=dry_run, hash_key=hash_key)
    try:
        with reachable(engine):
            catalog = reflect_checked(engine, loaded)
            if not dry_run:
                require_writable(engine)
            yield loaded, engine, catalog, hash_key
    finally:
        engine.dispose()


def _control(settings: Settings, stop_requested: Callable[[], bool]) -> Control:
    return Control(stop_requested=stop_requested, max_retries=settings.max_retries)


def _terms(settings: Settings) -> LeaseTerms:
    return LeaseTerms(settings.lease_seconds, settings.lease_renew_every)


def erase(
    settings: Settings,
    subjects: Sequence[str],
    *,
    dry_run: bool = False,
    now: datetime | None = None,
    stop_requested: Callable[[], bool] = lambda: False,
) -> ErasureResult:
    """Erase each data subject's rows now, through every enabled rule with a
    ``hold_subject`` (``retention.erase``); ``dry_run`` counts and writes nothing."""
    wanted = _check_subjects(subjects)
    if not wanted:
        raise UsageError("erase: give --subject ID (repeatable) or --subjects-file FILE")
    now = now or datetime.now(UTC)
    with _prepared(settings, dry_run=dry_run) as (loaded, engine, catalog, hash_key):
        control = _control(settings, stop_requested)
        eraser = Eraser(engine, loaded, catalog, hash_key, now, control, _terms(settings))
        if dry_run:
            with read_only(engine) as conn:
                return eraser.dry_run(conn, wanted)
        return eraser.erase(wanted)


def reapply(
    settings: Settings,
    *,
    table: str | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
    stop_requested: Callable[[], bool] = lambda: False,
) -> ReapplyResult:
    """Remove again the live rows whose keys the log records as removed
    (``retention.reapply``); ``dry_run`` counts and writes nothing."""
    now = now or datetime.now(UTC)
    with _prepared(settings, dry_run=dry_run) as (loaded, engine, catalog, hash_key):
        control = _control(settings, stop_requested)
        reapplier = Reapplier(
            engine, loaded, catalog, hash_key, now, table, control, _terms(settings)
        )
        if dry_run:
            with read_only(engine) as conn:
                return reapplier.dry_run(conn)
        return reapplier.reapply()


@dataclass(frozen=True)
class SubjectProof:
    """``audit find --subject``: the erasure requests the log holds for one subject."""

    requests: tuple[ErasureSeen, ...]


def find_subject(
    settings: Settings,
    subject: str,
    *,
    since: When | None = None,
    until: When | None = None,
) -> SubjectProof:
    """Whether this person's data was erased, when, by which rules, how many rows per
    table: found by the keyed digest of the id, which is never stored or returned."""
    check_period(since, until)
    digest = subject_digest(settings.require_hash_key(), _check_subjects([subject])[0])
    loaded = load(settings)
    engine = make_engine(settings, read_only=True)
    try:
        with reachable(engine), read_only(engine) as conn:
            found = _requests(conn, loaded, digest, since, until)
    finally:
        engine.dispose()
    return SubjectProof(tuple(found))


def _requests(
    conn: Connection, loaded: LoadedPolicy, digest: str, since: When | None, until: When | None
) -> list[ErasureSeen]:
    return requests_of(conn, loaded.policy.audit.table, digest=digest, since=since, until=until)


__all__ = ["SubjectProof", "erase", "find_subject", "read_subjects", "reapply"]
