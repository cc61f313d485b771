"""The policy's ``coverage`` key: personal-looking columns a person has reviewed.

``retention coverage`` lists the columns that look personal and that no rule deletes or
anonymises; a column named here is reported as reviewed instead, with its reason.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StrictStr

from retention.policy.fields import Frozen

COLUMN_REF_PATTERN = (
    r"^[A-Za-z_][A-Za-z0-9_]{0,63}(\.[A-Za-z_][A-Za-z0-9_]{0,63}){1,2}$"  # [schema.]table.column
)


class IgnoredColumn(Frozen):
    """A column that looks personal and is knowingly kept, with the reason why."""

    column: Annotated[StrictStr, Field(pattern=COLUMN_REF_PATTERN)] = Field(
        description="table.column (or schema.table.column)"
    )
    reason: Annotated[StrictStr, Field(min_length=1, max_length=500)] = Field(
        description="Why no rule removes it: shown beside the column in the report"
    )

    @property
    def table(self) -> str:
        return self.column.rpartition(".")[0]

    @property
    def column_name(self) -> str:
        return self.column.rpartition(".")[2]


class CoverageSettings(Frozen):
    """Settings of ``retention coverage``."""

    ignore: list[IgnoredColumn] = Field(
        [],
        description="Columns reviewed and knowingly kept: reported as ignored, with the "
        "reason, instead of uncovered",
    )
