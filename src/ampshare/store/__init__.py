"""Persistence: SQLite by default (one file, WAL), PostgreSQL by URL.

``open_store(url)`` returns a ``SqlStore`` (migrated to the newest schema). ``sqlite:///:memory:``
gives a real, throw-away store for tests; there is no separate fake because the real one costs
nothing to run. Every method is one transaction: it happened completely, or it raised
``StoreError`` / ``InputError`` and nothing changed.

Repository API (times in s since the epoch, passed in by the caller):

- chargers: ``upsert_charger``, ``chargers``
- sessions with driver/manager inputs and energy: ``save_session``, ``session``, ``sessions``,
  ``edit_session``, ``record_energy``, ``end_session``
- events and alerts with reasons: ``add_event``, ``events``, ``resolve_alert``
- installed charging profiles: ``save_profile``, ``profiles``
- time series, 1 s recent + 60 s history: ``append``, ``history``, ``series_names``, ``compact``
- settings (policy, admin caps): ``put_setting``, ``get_setting``
"""

from __future__ import annotations

from ampshare.store._migrations import MIGRATIONS
from ampshare.store._records import (
    ChargerRecord,
    EventRecord,
    InstalledProfile,
    SeriesPoint,
    SessionRecord,
    Severity,
)
from ampshare.store._sql import EDITABLE_SESSION_FIELDS, SqlStore, open_store

__all__ = [
    "EDITABLE_SESSION_FIELDS",
    "MIGRATIONS",
    "ChargerRecord",
    "EventRecord",
    "InstalledProfile",
    "SeriesPoint",
    "SessionRecord",
    "Severity",
    "SqlStore",
    "open_store",
]
