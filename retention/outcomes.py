"""The outcomes a run can have, the audit events that record them, and the exit codes.

One vocabulary for the executor, the runner, the audit log, the renderers and the
metrics. The enums are ``StrEnum``/``IntEnum``: a status or an event is stored, logged
and printed as exactly the text it always was, and an exit code is a plain number.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class _Text(StrEnum):
    def __repr__(self) -> str:
        # Logs print containers by repr (a run's {rule: status}): show the text they
        # always showed, not the enum member.
        return repr(self.value)


class Status(_Text):
    """What happened to one rule in a run (or would happen, in a plan)."""

    PLANNED = "planned"
    DONE = "done"
    PARTIAL = "partial"  # --max-batches or --max-runtime ended it with work left
    SKIPPED = "skipped"  # another run holds the rule
    GUARD_TRIPPED = "guard_tripped"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # a signal stopped it between batches


class Event(_Text):
    """The ``event`` of an audit record (SPEC section 6)."""

    RUN_STARTED = "run_started"
    BATCH = "batch"
    RULE_FINISHED = "rule_finished"
    RULE_SKIPPED = "rule_skipped"
    GUARD_TRIPPED = "guard_tripped"
    RULE_FAILED = "rule_failed"
    RUN_FINISHED = "run_finished"
    RUN_INTERRUPTED = "run_interrupted"
    ERASURE_STARTED = "erasure_started"
    ERASURE_FINISHED = "erasure_finished"
    REAPPLIED = "reapplied"


class ExitCode(IntEnum):
    """SPEC section 4. When several apply, the first in this order wins: 78, 2, 1, 3, 75, 0."""

    def __repr__(self) -> str:
        return repr(self.value)

    OK = 0
    FAILED = 1  # a rule failed at run time
    USAGE = 2
    GUARD = 3  # a guard tripped
    TAMPERED = 4  # audit verify found a broken chain
    TEMPFAIL = 75  # nothing could run now; retry later
    CONFIG = 78  # invalid policy or configuration; nothing was done
