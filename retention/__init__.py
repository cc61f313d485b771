"""retention: enforce data-retention promises with evidence.

The public API lives in ``retention.api``; the command line in ``retention.cli``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("retention-enforcer")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
