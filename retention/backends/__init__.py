"""What differs per database (see ``base.py``): ``backend_for(engine)`` is the way in.

Importing the package registers every backend class and its ``@compiles`` functions.
"""

from __future__ import annotations

# Imported for their registrations (backend classes, @compiles functions).
import retention.backends.mysql
import retention.backends.postgresql
import retention.backends.sqlite  # noqa: F401
from retention.backends.base import Backend
from retention.backends.errors import Conflict, describe_error
from retention.backends.pads import HmacKeys
from retention.backends.registry import backend_for

__all__ = ["Backend", "Conflict", "HmacKeys", "backend_for", "describe_error"]
