"""Loaders for the data a simulation replays: sessions, building load, PV.

Sessions come from any CSV (or CSV.gz) with one row per plug-in: a ``SessionColumns`` mapping
names its columns. Presets cover the data sets in ``shared/data`` (``acn``, ``acn-delivered``,
``norway``); other tables use ``key=column`` pairs (see docs/simulator.md). What a controller
may see is kept apart from the truth: ``declared_departure_s``/``declared_energy_wh`` are
``None`` unless the driver really entered them (ACN's ``claimed`` column); ``departure_s`` is
the true plug-out, used only by the simulator to unplug the car and by the offline optimum.

Every problem is an ``InputError`` naming the file, the line and the column, and what to do.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from ampshare.errors import InputError
from ampshare.sim.series import TimeSeries

__all__ = [
    "SESSION_PRESETS",
    "SessionColumns",
    "SessionRecord",
    "load_series",
    "load_sessions",
    "parse_columns",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionRecord:
    """One real charging session.

    ``energy_wh`` is the demand the car brings (what it would take if it could: the metric's
    denominator and the EV model's stop point). ``declared_*`` is what the driver told the
    system, ``None`` when nothing was entered. ``departure_s`` is the true plug-out time.
    """

    session_id: str
    station_id: str
    arrival_s: float
    departure_s: float
    energy_wh: float
    declared_departure_s: float | None = None
    declared_energy_wh: float | None = None
    user_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionColumns:
    """Which column holds what. ``energy_kwh`` is the demand; ``claimed`` (when set) is a
    boolean column that says whether the declared values were really entered by the driver.
    Naive time stamps are read in ``timezone``; ``time_format`` is a ``strptime`` pattern
    (None: ISO-8601). ``where`` keeps only rows whose column equals the value."""

    arrival: str
    departure: str
    energy_kwh: str
    station: str | None = None
    session_id: str | None = None
    declared_departure: str | None = None
    declared_energy_kwh: str | None = None
    claimed: str | None = None
    user: str | None = None
    timezone: str = "UTC"
    time_format: str | None = None
    delimiter: str = ","
    decimal: str = "."
    where: tuple[tuple[str, str], ...] = ()


_ACN = SessionColumns(
    arrival="arrival",
    departure="departure",
    energy_kwh="requested_energy (kWh)",
    station="station_id",
    session_id="session_id",
    declared_departure="estimated_departure",
    declared_energy_kwh="requested_energy (kWh)",
    claimed="claimed",
    timezone="America/Los_Angeles",
)
SESSION_PRESETS: Mapping[str, SessionColumns] = {
    # ACN-Data as shipped: demand = the driver's request (delivered kWh when unclaimed).
    "acn": _ACN,
    # ACN-Sim's convention: demand = metered kWh (what was surely deliverable).
    "acn-delivered": dataclasses.replace(_ACN, energy_kwh="delivered_energy (kWh)"),
    # Sørensen et al. Trondheim apartment garages (normalized companion file): no declarations.
    "norway": SessionColumns(
        arrival="arrival_local",
        departure="departure_local",
        energy_kwh="energy_kwh",
        station="user_id",
        session_id="session_id",
        user="user_id",
        timezone="Europe/Oslo",
    ),
    # The raw Trondheim file: ';' separated, decimal comma, dd.mm.yyyy HH:MM.
    "norway-raw": SessionColumns(
        arrival="Start_plugin",
        departure="End_plugout",
        energy_kwh="El_kWh",
        station="User_ID",
        session_id="session_ID",
        user="User_ID",
        timezone="Europe/Oslo",
        time_format="%d.%m.%Y %H:%M",
        delimiter=";",
        decimal=",",
    ),
}
_FIELDS = {f.name for f in dataclasses.fields(SessionColumns)} - {"where"}


def parse_columns(spec: str) -> SessionColumns:
    """A preset name, optionally followed by overrides: ``acn``, ``norway,where=garage_id:Bl2``,
    or a full mapping ``arrival=start,departure=end,energy_kwh=kwh,timezone=Europe/Paris``."""
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    base: SessionColumns | None = None
    if parts and "=" not in parts[0]:
        name = parts.pop(0)
        if name not in SESSION_PRESETS:
            raise InputError(
                f"unknown column preset {name!r}; use one of "
                f"{', '.join(SESSION_PRESETS)} or key=column pairs"
            )
        base = SESSION_PRESETS[name]
    values: dict[str, object] = dataclasses.asdict(base) if base else {}
    where = list(base.where) if base else []
    for part in parts:
        key, sep, value = part.partition("=")
        if not sep:
            raise InputError(f"column mapping {part!r}: write key=column")
        if key == "where":
            col, _, val = value.partition(":")
            where.append((col, val))
        elif key in _FIELDS:
            values[key] = value
        else:
            raise InputError(
                f"column mapping: unknown key {key!r}; keys: {', '.join(sorted(_FIELDS))}"
            )
    values["where"] = tuple(where)
    missing = [k for k in ("arrival", "departure", "energy_kwh") if not values.get(k)]
    if missing:
        raise InputError(f"column mapping {spec!r} lacks {', '.join(missing)}")
    return SessionColumns(**values)  # type: ignore[arg-type]


def _open_text(path: Path) -> io.TextIOBase:
    try:
        if path.suffix == ".gz":
            return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
        return open(path, encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise InputError(f"{path}: cannot open ({exc.strerror})") from exc


def _rows(path: Path, delimiter: str) -> Iterator[tuple[int, dict[str, str]]]:
    with _open_text(path) as fh:
        reader = csv.DictReader(fh, delimiter=delimiter)
        try:
            for row in reader:
                yield reader.line_num, row
        except (csv.Error, UnicodeDecodeError, gzip.BadGzipFile, EOFError) as exc:
            raise InputError(f"{path}:{reader.line_num}: unreadable ({exc})") from exc


class _Parser:
    """Turns one row's cells into values, with errors naming file, line and column."""

    def __init__(self, path: Path, cols: SessionColumns) -> None:
        self.path = path
        self.cols = cols
        self.tz = ZoneInfo(cols.timezone)
        self.line = 0
        self.row: dict[str, str] = {}

    def _cell(self, column: str) -> str:
        if column not in self.row:
            raise InputError(
                f"{self.path}: no column {column!r} (columns: "
                f"{', '.join(self.row)}); fix the column mapping"
            )
        return (self.row[column] or "").strip()

    def time(self, column: str) -> float | None:
        text = self._cell(column)
        if not text:
            return None
        try:
            if self.cols.time_format:
                dt = datetime.strptime(text, self.cols.time_format)
            else:
                dt = datetime.fromisoformat(text)
        except ValueError as exc:
            raise InputError(
                f"{self.path}:{self.line}: column {column!r}: {text!r} is not a "
                f"time ({self.cols.time_format or 'ISO-8601'} expected)"
            ) from exc
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=self.tz)
        return dt.timestamp()

    def number(self, column: str) -> float | None:
        text = self._cell(column).replace(self.cols.decimal, ".")
        if not text:
            return None
        try:
            return float(text)
        except ValueError as exc:
            raise InputError(
                f"{self.path}:{self.line}: column {column!r}: {text!r} is not a number"
            ) from exc

    def text(self, column: str | None, default: str) -> str:
        return self._cell(column) or default if column else default


def _record(p: _Parser, index: int) -> SessionRecord | None:
    """One row as a session, or None when it cannot be replayed (no plug-out, no energy)."""
    c = p.cols
    arrival, departure = p.time(c.arrival), p.time(c.departure)
    energy = p.number(c.energy_kwh)
    if arrival is None or departure is None or energy is None:
        return None
    if departure <= arrival or energy <= 0:
        return None
    claimed = c.claimed is None or p.text(c.claimed, "true").lower() in ("true", "1", "yes")
    decl_dep = p.time(c.declared_departure) if c.declared_departure and claimed else None
    decl_kwh = p.number(c.declared_energy_kwh) if c.declared_energy_kwh and claimed else None
    return SessionRecord(
        session_id=p.text(c.session_id, str(index)),
        station_id=p.text(c.station, f"station-{index}"),
        arrival_s=arrival,
        departure_s=departure,
        energy_wh=energy * 1000.0,
        declared_departure_s=decl_dep if decl_dep is not None and decl_dep > arrival else None,
        declared_energy_wh=decl_kwh * 1000.0 if decl_kwh else None,
        user_id=p.text(c.user, "") or None,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadedSessions:
    """Sessions in arrival order, and how many rows were skipped (no plug-out, no energy)."""

    records: tuple[SessionRecord, ...]
    skipped: int
    source: str


def load_sessions(
    path: str | Path,
    columns: SessionColumns | str = "acn",
    start_s: float | None = None,
    end_s: float | None = None,
) -> LoadedSessions:
    """Read sessions arriving in [start_s, end_s) from a CSV/CSV.gz file."""
    path = Path(path)
    cols = parse_columns(columns) if isinstance(columns, str) else columns
    parser = _Parser(path, cols)
    out: list[SessionRecord] = []
    skipped = 0
    for index, (line, row) in enumerate(_rows(path, cols.delimiter)):
        parser.line, parser.row = line, row
        if any(parser.text(col, "") != val for col, val in cols.where):
            continue
        rec = _record(parser, index)
        if rec is None:
            skipped += 1
            continue
        if (start_s is None or rec.arrival_s >= start_s) and (
            end_s is None or rec.arrival_s < end_s
        ):
            out.append(rec)
    if not out:
        raise InputError(
            f"{path}: no sessions to replay (check --start/--end and the column "
            f"mapping; {skipped} rows skipped for missing plug-out or energy)"
        )
    out.sort(key=lambda r: (r.arrival_s, r.session_id))
    return LoadedSessions(records=tuple(out), skipped=skipped, source=str(path))


def _time_column(header: list[str]) -> str:
    for want in ("timestamp_utc", "datetime", "timestamp_local", "time", "timestamp"):
        if want in header:
            return want
    raise InputError(f"no time column among {header}; name it timestamp_utc or datetime")


def load_series(
    path: str | Path,
    columns: str | None = None,
    *,
    unit: str = "kW",
    scale: float = 1.0,
    timezone: str = "UTC",
) -> TimeSeries:
    """A time series from a CSV file: ``columns`` is one value column, or three comma-separated
    per-line columns (L1,L2,L3 in A); None takes the first column after the time column.
    Naive stamps are read in ``timezone``. Values are multiplied by ``scale``."""
    path = Path(path)
    tz = ZoneInfo(timezone)
    with _open_text(path) as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if not header:
            raise InputError(f"{path}: empty file")
        tcol = _time_column(header)
        wanted = columns.split(",") if columns else [h for h in header if h != tcol][:1]
        missing = [w for w in wanted if w not in header]
        if missing or len(wanted) not in (1, 3):
            raise InputError(
                f"{path}: value column(s) {missing or wanted} not usable; "
                f"columns are {', '.join(header)} (give one, or three per line)"
            )
        ti, vis = header.index(tcol), [header.index(w) for w in wanted]
        times: list[float] = []
        vals: list[list[float]] = []
        for row in reader:
            if not row or not row[ti].strip():
                continue
            try:
                dt = datetime.fromisoformat(row[ti].strip().replace("Z", "+00:00"))
                vals.append([float(row[i]) for i in vis])
            except (ValueError, IndexError) as exc:
                raise InputError(
                    f"{path}:{reader.line_num}: bad row ({exc}); expected a time "
                    f"in {tcol!r} and numbers in {wanted}"
                ) from exc
            times.append((dt if dt.tzinfo else dt.replace(tzinfo=tz)).timestamp())
    arr = np.asarray(vals, dtype=np.float64) * scale
    values = arr[:, 0] if arr.shape[1] == 1 else arr
    t = np.asarray(times, dtype=np.float64)
    order = np.argsort(t, kind="stable")
    t, values = t[order], values[order]
    keep = np.concatenate([[True], np.diff(t) > 0])  # DST repeats: keep the first
    return TimeSeries(t_s=t[keep], values=values[keep], unit=unit, source=str(path))
