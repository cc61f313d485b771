"""What differs per database (see ``base.py``): ``backend_for(engine)`` is the way in.

``backend_for`` imports the backend module of the database asked for (``registry.py``),
which registers its class and its ``@compiles`` functions; the others stay unloaded.
"""

from __future__ import annotations

from retention.backends.base import Backend
from retention.backends.errors import Conflict, describe_error
from retention.backends.pads import HmacKeys
from retention.backends.registry import backend_for

__all__ = ["Backend", "Conflict", "HmacKeys", "backend_for", "describe_error"]
