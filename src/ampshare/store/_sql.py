"""``SqlStore``: the repository API over SQLite or PostgreSQL.

Every public method is one transaction. Times are seconds since the epoch; the store never
reads a clock itself (callers pass ``t_s``), so tests and the simulator run on virtual time.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from ampshare.core.snapshot import Session
from ampshare.errors import InputError, StoreError
from ampshare.store._backend import Backend, Cursor, open_backend
from ampshare.store._migrations import migrate
from ampshare.store._records import (
    ChargerRecord,
    EventRecord,
    InstalledProfile,
    SeriesPoint,
    SessionRecord,
    Severity,
)

__all__ = ["EDITABLE_SESSION_FIELDS", "SqlStore", "open_store"]

EDITABLE_SESSION_FIELDS = ("departure_s", "energy_wanted_wh", "priority")
_SESSION_COLS = (
    "session_id, charger_id, arrival_s, departure_s, energy_wanted_wh, energy_delivered_wh, "
    "priority, weight, vehicle_max_current_a, vehicle_phases, user_id, ended_s, edited_by, "
    "edited_s"
)
_EVENT_COLS = "event_id, t_s, kind, severity, subject, message, reason, data, resolved_s"
_PROFILE_COLS = "charger_id, evse_id, purpose, limit_a, phases, installed_s, lease_until_s, reason"
_HISTORY_RES_S = 60


def open_store(url: str, **kwargs: float) -> SqlStore:
    """Open (and migrate) the store at ``url``; see ``open_backend`` for the URL forms.
    A store that cannot be migrated (e.g. from a newer ampshare) is closed again."""
    backend = open_backend(url)
    try:
        return SqlStore(backend, **kwargs)
    except BaseException:
        backend.close()
        raise


class SqlStore:
    """Chargers, sessions, events/alerts, installed profiles, time series and settings.

    ``recent_retention_s``: raw 1 s samples older than this are folded into 60 s buckets by
    ``compact``; ``history_retention_s``: buckets older than this are dropped.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        recent_retention_s: float = 6 * 3600.0,
        history_retention_s: float = 400 * 86400.0,
    ) -> None:
        self._db = backend
        self.recent_retention_s = recent_retention_s
        self.history_retention_s = history_retention_s
        self.schema_version = migrate(backend)

    @property
    def url(self) -> str:
        return self._db.url

    def close(self) -> None:
        self._db.close()

    # -- chargers -------------------------------------------------------------------------
    def upsert_charger(self, rec: ChargerRecord) -> None:
        with self._db.transaction() as cur:
            cur.execute(
                "INSERT INTO chargers (charger_id, protocol, status, last_seen_s, vendor, model) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (charger_id) DO UPDATE SET "
                "protocol=excluded.protocol, status=excluded.status, "
                "last_seen_s=excluded.last_seen_s, vendor=excluded.vendor, model=excluded.model",
                (rec.charger_id, rec.protocol, rec.status, rec.last_seen_s, rec.vendor, rec.model),
            )

    def chargers(self) -> tuple[ChargerRecord, ...]:
        with self._db.transaction() as cur:
            cur.execute(
                "SELECT charger_id, protocol, status, last_seen_s, vendor, model FROM chargers "
                "ORDER BY charger_id"
            )
            rows = cur.fetchall()
        return tuple(
            ChargerRecord(
                charger_id=r[0],
                protocol=r[1],
                status=r[2],
                last_seen_s=r[3],
                vendor=r[4],
                model=r[5],
            )
            for r in rows
        )

    # -- sessions -------------------------------------------------------------------------
    def save_session(self, rec: SessionRecord) -> None:
        """Insert or replace a session (the adapter's view: arrival, energy, vehicle data)."""
        s = rec.session
        values = (
            s.session_id,
            s.charger_id,
            s.arrival_s,
            s.departure_s,
            s.energy_wanted_wh,
            s.energy_delivered_wh,
            s.priority,
            s.weight,
            s.vehicle_max_current_a,
            s.vehicle_phases,
            s.user_id,
            rec.ended_s,
            rec.edited_by,
            rec.edited_s,
        )
        updates = ", ".join(
            f"{c.strip()}=excluded.{c.strip()}" for c in _SESSION_COLS.split(",")[1:]
        )
        with self._db.transaction() as cur:
            cur.execute(
                f"INSERT INTO sessions ({_SESSION_COLS}) VALUES ({', '.join('?' * len(values))}) "
                f"ON CONFLICT (session_id) DO UPDATE SET {updates}",
                values,
            )

    def session(self, session_id: str) -> SessionRecord | None:
        with self._db.transaction() as cur:
            return self._session(cur, session_id)

    def _session(self, cur: Cursor, session_id: str) -> SessionRecord | None:
        cur.execute(f"SELECT {_SESSION_COLS} FROM sessions WHERE session_id = ?", (session_id,))
        row = cur.fetchone()
        return None if row is None else _session_from_row(row)

    def sessions(
        self,
        *,
        active: bool | None = None,
        since_s: float | None = None,
        until_s: float | None = None,
        limit: int = 500,
    ) -> tuple[SessionRecord, ...]:
        """Sessions, newest arrival first; ``active`` filters on plugged-in (True) or ended,
        ``since_s``/``until_s`` on the arrival (since inclusive, until exclusive)."""
        where, params = ["1=1"], list[Any]()
        if active is not None:
            where.append("ended_s IS NULL" if active else "ended_s IS NOT NULL")
        if since_s is not None:
            where.append("arrival_s >= ?")
            params.append(since_s)
        if until_s is not None:
            where.append("arrival_s < ?")
            params.append(until_s)
        with self._db.transaction() as cur:
            cur.execute(
                f"SELECT {_SESSION_COLS} FROM sessions WHERE {' AND '.join(where)} "
                "ORDER BY arrival_s DESC, session_id LIMIT ?",
                (*params, limit),
            )
            return tuple(_session_from_row(r) for r in cur.fetchall())

    def edit_session(
        self, session_id: str, changes: Mapping[str, float | int | None], *, by: str, t_s: float
    ) -> SessionRecord:
        """Change a session's declared inputs (``EDITABLE_SESSION_FIELDS``); None clears one.

        Raises ``InputError`` for an unknown session or field, leaving the row unchanged.
        """
        bad = sorted(set(changes) - set(EDITABLE_SESSION_FIELDS))
        if bad:
            raise InputError(
                f"session fields {bad} cannot be edited; use {EDITABLE_SESSION_FIELDS}"
            )
        with self._db.transaction() as cur:
            if self._session(cur, session_id) is None:
                raise InputError(f"no session {session_id!r}")
            sets = [f"{k} = ?" for k in changes] + ["edited_by = ?", "edited_s = ?"]
            cur.execute(
                f"UPDATE sessions SET {', '.join(sets)} WHERE session_id = ?",
                (*changes.values(), by, t_s, session_id),
            )
            rec = self._session(cur, session_id)
        assert rec is not None
        return rec

    def record_energy(self, session_id: str, energy_delivered_wh: float) -> None:
        with self._db.transaction() as cur:
            cur.execute(
                "UPDATE sessions SET energy_delivered_wh = ? WHERE session_id = ?",
                (energy_delivered_wh, session_id),
            )

    def record_energies(self, energy_wh: Mapping[str, float]) -> None:
        """``record_energy`` for many sessions in one transaction (one fsync per cycle)."""
        if not energy_wh:
            return
        with self._db.transaction(durable=False) as cur:
            cur.executemany(
                "UPDATE sessions SET energy_delivered_wh = ? WHERE session_id = ?",
                [(wh, sid) for sid, wh in energy_wh.items()],
            )

    def end_session(self, session_id: str, t_s: float) -> None:
        with self._db.transaction() as cur:
            cur.execute(
                "UPDATE sessions SET ended_s = ? WHERE session_id = ? AND ended_s IS NULL",
                (t_s, session_id),
            )

    # -- events and alerts ----------------------------------------------------------------
    def add_event(self, ev: EventRecord) -> EventRecord:
        """Store ``ev``; returns it with its ``event_id``."""
        with self._db.transaction() as cur:
            cur.execute(
                "INSERT INTO events (t_s, kind, severity, subject, message, reason, data, "
                "resolved_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING event_id",
                (
                    ev.t_s,
                    ev.kind,
                    ev.severity.value,
                    ev.subject,
                    ev.message,
                    ev.reason,
                    json.dumps(dict(ev.data), sort_keys=True, default=str),
                    ev.resolved_s,
                ),
            )
            row = cur.fetchone()
        assert row is not None
        return replace(ev, event_id=int(row[0]))

    def events(
        self,
        *,
        since_s: float | None = None,
        until_s: float | None = None,
        kind: str | None = None,
        alerts_only: bool = False,
        open_only: bool = False,
        limit: int = 200,
        exclude_kinds: Sequence[str] = (),
    ) -> tuple[EventRecord, ...]:
        """Events newest first; ``exclude_kinds`` leaves those kinds out (routine ones)."""
        where, params = ["1=1"], list[Any]()
        for cond, val in (("t_s >= ?", since_s), ("t_s < ?", until_s), ("kind = ?", kind)):
            if val is not None:
                where.append(cond)
                params.append(val)
        for k in exclude_kinds:
            where.append("kind <> ?")
            params.append(k)
        if alerts_only:
            where.append("severity <> 'info'")
        if open_only:
            where.append("resolved_s IS NULL")
        with self._db.transaction() as cur:
            cur.execute(
                f"SELECT {_EVENT_COLS} FROM events WHERE {' AND '.join(where)} "
                "ORDER BY t_s DESC, event_id DESC LIMIT ?",
                (*params, limit),
            )
            return tuple(_event_from_row(r) for r in cur.fetchall())

    def resolve_alert(self, event_id: int, t_s: float) -> EventRecord:
        with self._db.transaction() as cur:
            cur.execute(
                "UPDATE events SET resolved_s = ? WHERE event_id = ? AND resolved_s IS NULL",
                (t_s, event_id),
            )
            cur.execute(f"SELECT {_EVENT_COLS} FROM events WHERE event_id = ?", (event_id,))
            row = cur.fetchone()
        if row is None:
            raise InputError(f"no event {event_id}")
        return _event_from_row(row)

    # -- installed profiles ---------------------------------------------------------------
    def save_profile(self, p: InstalledProfile) -> None:
        with self._db.transaction() as cur:
            cur.execute(
                f"INSERT INTO profiles ({_PROFILE_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (charger_id, evse_id, purpose) DO UPDATE SET "
                "limit_a=excluded.limit_a, phases=excluded.phases, "
                "installed_s=excluded.installed_s, lease_until_s=excluded.lease_until_s, "
                "reason=excluded.reason",
                (
                    p.charger_id,
                    p.evse_id,
                    p.purpose,
                    p.limit_a,
                    p.phases,
                    p.installed_s,
                    p.lease_until_s,
                    p.reason,
                ),
            )

    def profiles(self) -> tuple[InstalledProfile, ...]:
        with self._db.transaction() as cur:
            cur.execute(
                f"SELECT {_PROFILE_COLS} FROM profiles ORDER BY charger_id, evse_id, purpose"
            )
            rows = cur.fetchall()
        return tuple(
            InstalledProfile(
                charger_id=r[0],
                evse_id=r[1],
                purpose=r[2],
                limit_a=r[3],
                phases=r[4],
                installed_s=r[5],
                lease_until_s=r[6],
                reason=r[7],
            )
            for r in rows
        )

    # -- settings (policy, admin caps) ----------------------------------------------------
    def put_setting(self, key: str, value: object) -> None:
        with self._db.transaction() as cur:
            cur.execute(
                "INSERT INTO settings (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, json.dumps(value, sort_keys=True)),
            )

    def get_setting(self, key: str) -> object | None:
        with self._db.transaction() as cur:
            cur.execute("SELECT value FROM settings WHERE key = ?", (key,))
            row = cur.fetchone()
        return None if row is None else json.loads(row[0])

    # -- time series ----------------------------------------------------------------------
    def append(self, points: Sequence[SeriesPoint]) -> None:
        """Store raw samples; a second sample for the same series and second replaces the first."""
        if not points:
            return
        rows = [
            (
                p.series,
                1,
                float(p.t_s),
                p.value,
                p.value if p.min_value is None else p.min_value,
                p.value if p.max_value is None else p.max_value,
                p.n,
            )
            for p in points
        ]
        with self._db.transaction(durable=False) as cur:
            cur.executemany(
                "INSERT INTO samples (series, res_s, t_s, value, min_value, max_value, n) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (series, res_s, t_s) DO UPDATE SET "
                "value=excluded.value, min_value=excluded.min_value, "
                "max_value=excluded.max_value, n=excluded.n",
                rows,
            )

    def history(
        self, series: str, start_s: float, end_s: float, resolution_s: float
    ) -> tuple[SeriesPoint, ...]:
        """Points of ``series`` in [start_s, end_s) averaged into ``resolution_s`` buckets.

        Raw samples and downsampled buckets are merged, weighted by how many samples each holds,
        so a range that spans the compaction boundary has no seam.
        """
        if resolution_s <= 0 or end_s <= start_s:
            raise InputError("history needs resolution_s > 0 and end_s > start_s")
        b = self._db.dialect.bucket("t_s")
        with self._db.transaction() as cur:
            cur.execute(
                f"SELECT {b} AS bucket, SUM(value * n) / SUM(n), MIN(min_value), "
                "MAX(max_value), SUM(n) FROM samples WHERE series = ? AND t_s >= ? AND t_s < ? "
                "GROUP BY bucket ORDER BY bucket",
                (resolution_s, resolution_s, series, start_s, end_s),
            )
            rows = cur.fetchall()
        return tuple(
            SeriesPoint(
                series=series,
                t_s=float(r[0]),
                value=float(r[1]),
                min_value=float(r[2]),
                max_value=float(r[3]),
                n=int(r[4]),
            )
            for r in rows
        )

    def series_names(self) -> tuple[str, ...]:
        with self._db.transaction() as cur:
            cur.execute("SELECT DISTINCT series FROM samples ORDER BY series")
            return tuple(r[0] for r in cur.fetchall())

    def compact(self, now_s: float) -> int:
        """Fold raw samples older than the recent window into 60 s buckets and drop buckets
        past the history window, in one transaction; returns how many raw rows were folded."""
        cutoff = (now_s - self.recent_retention_s) // _HISTORY_RES_S * _HISTORY_RES_S
        d = self._db.dialect
        b = d.bucket("t_s")
        with self._db.transaction() as cur:
            cur.execute("SELECT COUNT(*) FROM samples WHERE res_s = 1 AND t_s < ?", (cutoff,))
            row = cur.fetchone()
            folded = int(row[0]) if row else 0
            cur.execute(
                "INSERT INTO samples (series, res_s, t_s, value, min_value, max_value, n) "
                f"SELECT series, {_HISTORY_RES_S}, {b} AS bucket, SUM(value * n) / SUM(n), "
                "MIN(min_value), MAX(max_value), SUM(n) FROM samples "
                "WHERE res_s = 1 AND t_s < ? GROUP BY series, bucket "
                "ON CONFLICT (series, res_s, t_s) DO UPDATE SET "
                "value = (samples.value * samples.n + excluded.value * excluded.n) "
                "/ (samples.n + excluded.n), "
                f"min_value = {d.least}(samples.min_value, excluded.min_value), "
                f"max_value = {d.greatest}(samples.max_value, excluded.max_value), "
                "n = samples.n + excluded.n",
                (_HISTORY_RES_S, _HISTORY_RES_S, cutoff),
            )
            cur.execute("DELETE FROM samples WHERE res_s = 1 AND t_s < ?", (cutoff,))
            cur.execute(
                "DELETE FROM samples WHERE res_s > 1 AND t_s < ?",
                (now_s - self.history_retention_s,),
            )
        return folded


def _session_from_row(r: Sequence[Any]) -> SessionRecord:
    s = Session(
        session_id=r[0],
        charger_id=r[1],
        arrival_s=r[2],
        departure_s=r[3],
        energy_wanted_wh=r[4],
        energy_delivered_wh=r[5],
        priority=int(r[6]),
        weight=r[7],
        vehicle_max_current_a=r[8],
        vehicle_phases=r[9],
        user_id=r[10],
    )
    return SessionRecord(session=s, ended_s=r[11], edited_by=r[12], edited_s=r[13])


def _event_from_row(r: Sequence[Any]) -> EventRecord:
    try:
        data = json.loads(r[7])
    except ValueError as exc:
        raise StoreError(f"event {r[0]} has unreadable data: {exc}") from exc
    return EventRecord(
        event_id=int(r[0]),
        t_s=r[1],
        kind=r[2],
        severity=Severity(r[3]),
        subject=r[4],
        message=r[5],
        reason=r[6],
        data=data,
        resolved_s=r[8],
    )
