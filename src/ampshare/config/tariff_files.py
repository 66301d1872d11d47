"""Load tariff files into the pure ``ampshare.core.tariff`` model; build the planner from a
site file's ``planner:`` section.

The I/O and time-zone half of the tariff model: reads acnportal TOU JSON schedules and hourly
price CSVs, and turns an IANA time zone into a ``UtcOffsets`` table with ``zoneinfo`` (the core
must not import ``datetime``). Errors are ``InputError``s naming the file and what to fix.
"""

from __future__ import annotations

import csv
import itertools
import json
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

from ampshare.config.sections import PlannerSection
from ampshare.core.planner import (
    Battery,
    EnergyPriority,
    Prefer,
    PvProfile,
    RecedingHorizonPlanner,
    SessionDefaults,
)
from ampshare.core.site import Site
from ampshare.core.tariff import PriceSeries, Tariff, UtcOffsets, parse_acn_tou
from ampshare.errors import InputError

__all__ = [
    "battery_from_section",
    "load_price_series",
    "load_pv_profile",
    "load_tariff",
    "planner_from_section",
    "tariff_from_section",
    "utc_offsets",
]


def utc_offsets(tz_name: str, first_year: int = 2000, last_year: int = 2040) -> UtcOffsets:
    """Offset table of ``tz_name`` for the given years.

    Sampled daily, then hourly inside a day whose offset changed: exact for zones whose
    transitions fall on the hour and at most one per day (US, EU).
    """
    try:
        zone = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InputError(
            f"unknown time zone {tz_name!r}; use an IANA name such as 'America/Los_Angeles'"
        ) from None
    start = int(datetime(first_year, 1, 1, tzinfo=UTC).timestamp())
    end = int(datetime(last_year + 1, 1, 1, tzinfo=UTC).timestamp())
    transitions: list[float] = [float("-inf")]
    offsets: list[float] = [_offset(zone, start)]
    for day in range(start, end, 86400):
        if _offset(zone, day + 86400) == offsets[-1]:
            continue
        for t in range(day + 3600, day + 86400 + 1, 3600):  # the hour it changed
            if _offset(zone, t) != offsets[-1]:
                transitions.append(float(t))
                offsets.append(_offset(zone, t))
                break
    return UtcOffsets(transitions_s=tuple(transitions), offsets_s=tuple(offsets))


def _offset(zone: ZoneInfo, t: int) -> float:
    off = datetime.fromtimestamp(t, zone).utcoffset()
    return off.total_seconds() if off is not None else 0.0


def load_tariff(
    path: str | Path, *, timezone: str = "UTC", demand_charge_per_kw: float | None = None
) -> Tariff:
    """A ``Tariff`` from an acnportal TOU JSON file, in local time of ``timezone``."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"{p}: cannot read tariff file ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{p}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(doc, dict):
        raise InputError(f"{p}: expected a JSON object with a 'schedule' list")
    schedule = parse_acn_tou(doc, source=str(p))
    return Tariff(
        name=schedule.name,
        energy=schedule,
        offsets=utc_offsets(timezone),
        demand_charge_per_kw_override=demand_charge_per_kw,
    )


def load_price_series(
    path: str | Path,
    *,
    price_column: str = "price_eur_per_mwh",
    time_column: str = "timestamp_utc",
    per_mwh: bool = True,
    start_s: float | None = None,
    end_s: float | None = None,
    demand_charge_per_kw: float | None = None,
) -> Tariff:
    """A ``Tariff`` from a regular CSV price series (e.g. NL day-ahead, UTC timestamps).

    Missing hours are filled with the previous price; ``start_s``/``end_s`` keep a window.
    """
    p = Path(path)
    times: list[float] = []
    prices: list[float] = []
    for _, t, price in _series_rows(p, time_column, price_column, "price file"):
        if (start_s is None or t >= start_s) and (end_s is None or t < end_s):
            times.append(t)
            prices.append(price / 1000.0 if per_mwh else price)
    if len(times) < 2:
        raise InputError(f"{p}: fewer than two prices in the selected window")
    step = min(b - a for a, b in itertools.pairwise(times))
    grid = _regular(times, prices, step)
    return Tariff(
        name=p.stem,
        energy=PriceSeries(start_s=times[0], step_s=step, prices_per_kwh=grid),
        demand_charge_per_kw_override=demand_charge_per_kw,
    )


def load_pv_profile(
    path: str | Path,
    kwp: float,
    *,
    time_column: str = "timestamp_utc",
    value_column: str = "pv_kW_per_kWp",
) -> PvProfile:
    """A year's PV output per kWp from CSV (``shared/data/solar_pv``: UTC stamps in a regular
    step, kW per kWp), for an array of ``kwp``. Gaps are filled with the previous value."""
    p = Path(path)
    times: list[float] = []
    values: list[float] = []
    for lineno, t, v in _series_rows(p, time_column, value_column, "PV profile"):
        if not 0.0 <= v <= 2.0:
            raise InputError(
                f"{p}:{lineno}: {value_column} {v} is not a PV output per kWp "
                "(expected 0 to about 1 kW per kWp)"
            )
        times.append(t)
        values.append(v)
    if len(times) < 2:
        raise InputError(f"{p}: fewer than two PV values")
    step = min(b - a for a, b in itertools.pairwise(times))
    if step <= 0:
        raise InputError(f"{p}: {time_column} must increase from row to row")
    grid = np.asarray(_regular(times, values, step), dtype=np.float64)
    return PvProfile(start_s=times[0], step_s=step, kw_per_kwp=grid, kwp=kwp)


def _series_rows(p: Path, tcol: str, vcol: str, what: str) -> list[tuple[int, float, float]]:
    """``(line number, epoch seconds, value)`` of every row of a CSV time series."""
    try:
        with p.open(encoding="utf-8", newline="") as fh:
            return [
                (lineno, *_row(row, p, lineno, tcol, vcol))
                for lineno, row in enumerate(csv.DictReader(fh), start=2)
            ]
    except OSError as exc:
        raise InputError(f"{p}: cannot read {what} ({exc.strerror})") from None


def _row(row: dict[str, str], p: Path, lineno: int, tcol: str, pcol: str) -> tuple[float, float]:
    try:
        t = datetime.fromisoformat(row[tcol].replace("Z", "+00:00"))
        return t.timestamp(), float(row[pcol])
    except KeyError as exc:
        raise InputError(f"{p}: missing column {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise InputError(f"{p}:{lineno}: bad value ({exc})") from None


def _regular(times: list[float], prices: list[float], step: float) -> tuple[float, ...]:
    n = round((times[-1] - times[0]) / step) + 1
    out: list[float] = []
    k = 0
    for i in range(n):
        t = times[0] + i * step
        while k + 1 < len(times) and times[k + 1] <= t + 1e-6:
            k += 1
        out.append(prices[k])
    return tuple(out)


def tariff_from_section(
    section: PlannerSection, base_dir: str | Path = ".", source: str = "the site file"
) -> Tariff | None:
    """The tariff a ``planner:`` section names (files relative to ``base_dir``), or None.
    A file that cannot be read or parsed is an ``InputError`` naming ``source`` (the site
    file) and the key that named it."""
    base = Path(base_dir)
    try:
        if section.tariff_file:
            return load_tariff(
                base / section.tariff_file,
                timezone=section.timezone,
                demand_charge_per_kw=section.demand_charge_per_kw,
            )
        if section.price_file:
            return load_price_series(
                base / section.price_file, demand_charge_per_kw=section.demand_charge_per_kw
            )
    except InputError as e:
        key = "planner.tariff_file" if section.tariff_file else "planner.price_file"
        raise InputError(
            f"{source}: {key} (paths are relative to the site file's folder, {base}): {e}"
        ) from None
    if section.demand_charge_per_kw:
        # A demand charge without energy prices (a flat rate costs every plan the same):
        # billed per local calendar month like the others.
        try:
            offsets = utc_offsets(section.timezone)
        except InputError as e:
            raise InputError(f"{source}: planner.timezone: {e}") from None
        return Tariff(
            name="demand charge",
            energy=PriceSeries(start_s=0.0, step_s=3600.0, prices_per_kwh=(0.0,)),
            offsets=offsets,
            demand_charge_per_kw_override=section.demand_charge_per_kw,
        )
    return None


def battery_from_section(section: PlannerSection) -> Battery | None:
    """The stationary battery the ``planner:`` section describes (its charge at the bottom
    until a reading says otherwise), or None."""
    if section.battery_capacity_kwh is None:
        return None
    cap_wh = section.battery_capacity_kwh * 1000
    return Battery(
        capacity_wh=cap_wh,
        max_charge_w=(section.battery_max_charge_kw or 0.0) * 1000,
        max_discharge_w=(section.battery_max_discharge_kw or 0.0) * 1000,
        soc_wh=cap_wh * section.battery_min_soc_pct / 100,
        charge_efficiency=section.battery_efficiency,
        discharge_efficiency=section.battery_efficiency,
        min_soc_wh=cap_wh * section.battery_min_soc_pct / 100,
        max_soc_wh=cap_wh * section.battery_max_soc_pct / 100,
    )


def planner_from_section(
    section: PlannerSection, site: Site, base_dir: str | Path = ".", source: str = "the site file"
) -> RecedingHorizonPlanner:
    """The live receding-horizon planner described by a site file's ``planner:`` section
    (tariff files are read relative to ``base_dir``, the site file's folder)."""
    tariff = tariff_from_section(section, base_dir, source)
    battery = battery_from_section(section)
    energy = None if section.default_energy_kwh is None else section.default_energy_kwh * 1000
    return RecedingHorizonPlanner(
        site=site,
        horizon_s=section.horizon_h * 3600,
        slot_s=section.slot_s,
        replan_interval_s=section.replan_interval_s,
        time_limit_s=section.time_budget_s,
        tariff=tariff,
        battery=battery,
        contracted_capacity_w=(
            None
            if section.contracted_capacity_kw is None
            else section.contracted_capacity_kw * 1000
        ),
        defaults=SessionDefaults(dwell_s=section.default_dwell_h * 3600, energy_wh=energy),
        max_facet_deg=section.max_facet_deg,
        priority_factor=section.priority_factor,
        prefer=Prefer(section.prefer),
        energy_priority=EnergyPriority(section.energy_priority),
    )
