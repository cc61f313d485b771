"""The export formats, apart from ``export.py`` so that the command line can offer them
without loading the audit log's tables."""

from typing import Literal

Format = Literal["jsonl", "csv"]
FORMATS: tuple[Format, ...] = ("jsonl", "csv")
