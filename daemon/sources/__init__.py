"""Sources: code that reads another system and answers what to store. A source
never loops and never writes to the store; the poller role does both.

- ``base``: the contract and what every source kind declares;
- ``registry``: the kinds by name (``kinds/``, a module each);
- ``khanza``: SIMRS Khanza (MariaDB/MySQL) bookings and task times, and
  ``khanza_sqlite``: the same SQL on a Khanza-like SQLite file (the demo's).
"""

from __future__ import annotations

from daemon.sources.base import SourceError

__all__ = ["SourceError"]
