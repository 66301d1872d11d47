"""Sessions as CSV for billing: who charged where, when, and how much energy.

Property managers bill tenants by the kWh their car took. One row per session, in the time zone
asked for (ISO 8601 with the offset, so that a spreadsheet and a person read the same time),
energy in kWh. Text that a spreadsheet would run as a formula (a charge tag starting with "=")
is written with a leading apostrophe, as OWASP advises against CSV injection.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from datetime import datetime
from zoneinfo import ZoneInfo

from ampshare.core.site import Site
from ampshare.core.snapshot import Session
from ampshare.store import SessionRecord

__all__ = ["COLUMNS", "sessions_csv"]

COLUMNS = (
    "session_id",
    "charger_id",
    "charger_name",
    "user_id",
    "arrival",
    "ended",
    "plugged_in_h",
    "energy_kwh",
    "energy_wanted_kwh",
    "declared_departure",
    "status",
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def sessions_csv(
    records: Iterable[SessionRecord],
    site: Site,
    *,
    live: Mapping[str, Session],
    now_s: float,
    tz: ZoneInfo,
) -> str:
    """The CSV text, oldest arrival first. ``live``: plugged-in sessions by id, whose energy
    is newer than the store's; their ``plugged_in_h`` counts up to ``now_s``."""
    names = {c.id: c.name or c.id for c in site.chargers}
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(COLUMNS)
    for rec in sorted(records, key=lambda r: (r.session.arrival_s, r.session.session_id)):
        s = live.get(rec.session.session_id, rec.session)
        end = rec.ended_s if rec.ended_s is not None else now_s
        w.writerow(
            (
                _text(s.session_id),
                _text(s.charger_id),
                _text(names.get(s.charger_id, s.charger_id)),
                _text(s.user_id or ""),
                _time(s.arrival_s, tz),
                _time(rec.ended_s, tz),
                f"{max(0.0, end - s.arrival_s) / 3600.0:.2f}",
                f"{s.energy_delivered_wh / 1000.0:.3f}",
                "" if s.energy_wanted_wh is None else f"{s.energy_wanted_wh / 1000.0:.3f}",
                _time(s.departure_s, tz),
                "ended" if rec.ended_s is not None else "plugged in",
            )
        )
    return out.getvalue()


def _time(t_s: float | None, tz: ZoneInfo) -> str:
    return "" if t_s is None else datetime.fromtimestamp(t_s, tz).isoformat(timespec="seconds")


def _text(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_START) else value
