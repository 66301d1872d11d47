"""Versioned schema migrations, applied in order inside one transaction each.

A migration is never edited once released: a change to the schema is a new entry at the end.
``{pk}`` and ``{real}`` are filled per backend (see ``Dialect``). ``schema_version`` holds one
row per applied migration, so a store opened by an older ampshare is recognised and a store
from a newer one is refused rather than silently misread.
"""

from __future__ import annotations

from ampshare.errors import StoreError
from ampshare.store._backend import Backend

__all__ = ["MIGRATIONS", "migrate"]

MIGRATIONS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (
        1,
        "chargers, sessions, events, profiles, samples, settings",
        (
            """CREATE TABLE chargers (
                charger_id TEXT PRIMARY KEY, protocol TEXT NOT NULL, status TEXT NOT NULL,
                last_seen_s {real}, vendor TEXT NOT NULL, model TEXT NOT NULL)""",
            """CREATE TABLE sessions (
                session_id TEXT PRIMARY KEY, charger_id TEXT NOT NULL, arrival_s {real} NOT NULL,
                departure_s {real}, energy_wanted_wh {real}, energy_delivered_wh {real} NOT NULL,
                priority INTEGER NOT NULL, weight {real} NOT NULL, vehicle_max_current_a {real},
                vehicle_phases INTEGER, user_id TEXT, ended_s {real}, edited_by TEXT,
                edited_s {real})""",
            "CREATE INDEX sessions_active ON sessions (ended_s, charger_id)",
            """CREATE TABLE events (
                event_id {pk}, t_s {real} NOT NULL, kind TEXT NOT NULL, severity TEXT NOT NULL,
                subject TEXT, message TEXT NOT NULL, reason TEXT NOT NULL, data TEXT NOT NULL,
                resolved_s {real})""",
            "CREATE INDEX events_t ON events (t_s)",
            """CREATE TABLE profiles (
                charger_id TEXT NOT NULL, evse_id INTEGER NOT NULL, purpose TEXT NOT NULL,
                limit_a {real} NOT NULL, phases INTEGER NOT NULL, installed_s {real} NOT NULL,
                lease_until_s {real}, reason TEXT NOT NULL,
                PRIMARY KEY (charger_id, evse_id, purpose))""",
            # res_s = 1 for raw samples, 60 for downsampled buckets (value = mean of n samples).
            """CREATE TABLE samples (
                series TEXT NOT NULL, res_s INTEGER NOT NULL, t_s {real} NOT NULL,
                value {real} NOT NULL, min_value {real} NOT NULL, max_value {real} NOT NULL,
                n INTEGER NOT NULL, PRIMARY KEY (series, res_s, t_s))""",
            "CREATE INDEX samples_t ON samples (res_s, t_s)",
            "CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        ),
    ),
)


def current_version(backend: Backend) -> int:
    with backend.transaction() as cur:
        cur.execute(
            "CREATE TABLE IF NOT EXISTS schema_version "
            "(version INTEGER PRIMARY KEY, description TEXT NOT NULL)"
        )
        cur.execute("SELECT MAX(version) FROM schema_version")
        row = cur.fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def migrate(backend: Backend) -> int:
    """Bring the schema up to the newest version; returns the version now in force."""
    have = current_version(backend)
    newest = MIGRATIONS[-1][0]
    if have > newest:
        raise StoreError(
            f"store {backend.url} has schema version {have}, newer than this ampshare "
            f"understands ({newest}); upgrade ampshare instead of opening it with an old one"
        )
    d = backend.dialect
    for version, description, statements in MIGRATIONS:
        if version <= have:
            continue
        with backend.transaction() as cur:
            for stmt in statements:
                cur.execute(stmt.format(pk=d.serial_pk, real=d.real))
            cur.execute(
                "INSERT INTO schema_version (version, description) VALUES (?, ?)",
                (version, description),
            )
    return newest
