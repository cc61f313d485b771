"""A rule's cascades as plan steps: the counts ``plan`` shows, and the statements each
batch runs for its dependent rows, in the order it runs them (``planner.rules`` builds
the statements)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Executable, Table

from retention.plan import Step, StepKind


@dataclass(frozen=True)
class PlannedCascade:
    """A cascade's statements, before they are laid out as steps."""

    table: Table
    action: str  # delete | anonymise | detach
    link: dict[str, str]  # {this table's column: parent's column}
    needs: tuple[str, ...]  # this table's columns its own cascades link to
    select_links: Executable | None  # rows' ``needs`` for the parent values, locked
    apply: Executable  # delete / update WHERE link IN :parent_values
    count: Executable  # dependents of every due parent row (for plan)
    children: tuple[PlannedCascade, ...]

    @property
    def name(self) -> str:
        return self.table.fullname


def count_steps(cascades: Sequence[PlannedCascade]) -> list[Step]:
    out: list[Step] = []
    for cascade in cascades:
        out.append(
            Step(
                StepKind.COUNT_DEPENDENTS,
                f"count dependents in {cascade.name}",
                cascade.count,
                cascade.name,
            )
        )
        out.extend(count_steps(cascade.children))
    return out


def dependents_steps(
    cascades: Sequence[PlannedCascade],
    source: int | None,
    columns: Sequence[str],
    steps: list[Step],
) -> None:
    """Each cascade's steps in the order a batch runs them: select the columns its own
    cascades link to, those cascades, then the cascade's own statement. A cascade's
    parent values are read from the rows of ``source`` (the batch's rows when None)."""
    for cascade in cascades:
        positions = tuple(columns.index(p) for p in cascade.link.values())
        own: int | None = None
        if cascade.select_links is not None:
            steps.append(
                Step(
                    StepKind.SELECT_DEPENDENTS,
                    f"select and lock dependents in {cascade.name}",
                    cascade.select_links,
                    cascade.name,
                    source=source,
                    columns=positions,
                )
            )
            own = len(steps) - 1
        dependents_steps(cascade.children, own, cascade.needs, steps)
        steps.append(
            Step(
                StepKind.APPLY_DEPENDENTS,
                f"{cascade.action} dependents in {cascade.name}",
                cascade.apply,
                cascade.name,
                source=source,
                columns=positions,
            )
        )
