"""Sources: code that reads another system and returns plain records. A source
never loops and never writes to the store; the poller role does both.

- ``bpjs_plan``: a visit's BPJS Antrean steps from a booking record (pure).
- ``khanza``: SIMRS Khanza (MariaDB/MySQL) bookings and task times.
- ``khanza_sqlite``: the same SQL on a Khanza-like SQLite file (the demo's).
"""

from __future__ import annotations


class SourceError(Exception):
    """The source could not be read (down, refused, too slow, a bad query); the
    text says why in one line, never with a password."""
