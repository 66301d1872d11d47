"""Tariffs: energy prices (time-of-use schedules or price series) and demand charges.

Pure computation on epoch seconds. Local time (a TOU period starts at 08:00 *local*) comes from
a ``UtcOffsets`` table — transition instants and the offset in force after each — that the
loader (``ampshare.config.tariff_files``) builds with ``zoneinfo``; the core itself needs no
time-zone database and no ``datetime``. Civil dates are computed arithmetically
(proleptic Gregorian calendar).

Units: prices per kWh and demand charges per kW, in the tariff's currency (SCE: US$).
Power is import-positive kW; exports (negative power) cost nothing here.

The demand charge of a billing period (a local calendar month) is its highest
``peak_window_s``-average import (15 minutes, aligned to the quarter-hour) times the rate in
force at that peak.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ampshare.errors import InputError

__all__ = [
    "CostBreakdown",
    "PriceSeries",
    "Tariff",
    "TouPeriod",
    "TouSchedule",
    "UtcOffsets",
    "civil_from_epoch",
    "parse_acn_tou",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
DAY_S = 86400.0
_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_DOW_MASKS = {
    "WEEKDAYS": frozenset({0, 1, 2, 3, 4}),
    "WEEKENDS": frozenset({5, 6}),
    "ALL": frozenset(range(7)),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class UtcOffsets:
    """Local time = UTC + offset. ``transitions_s[k]`` is when ``offsets_s[k]`` starts; before
    the first transition ``offsets_s[0]`` applies. A fixed offset is one entry at -inf."""

    transitions_s: tuple[float, ...] = (-np.inf,)
    offsets_s: tuple[float, ...] = (0.0,)

    @classmethod
    def fixed(cls, offset_s: float) -> UtcOffsets:
        return cls(transitions_s=(-np.inf,), offsets_s=(float(offset_s),))

    def offset_s(self, t_s: npt.ArrayLike) -> FloatArray:
        """Offset [s] in force at each ``t_s`` [s since epoch]."""
        t = np.asarray(t_s, dtype=np.float64)
        idx = np.searchsorted(np.asarray(self.transitions_s), t, side="right") - 1
        return np.asarray(self.offsets_s, dtype=np.float64)[np.clip(idx, 0, None)]


def civil_from_epoch(
    local_s: npt.ArrayLike,
) -> tuple[IntArray, IntArray, IntArray, IntArray, FloatArray]:
    """(year, month, day, weekday Mon=0, hour of day) of *local* epoch seconds.

    Howard Hinnant's days-from-civil inverse, vectorised; valid for any proleptic Gregorian date.
    """
    local = np.asarray(local_s, dtype=np.float64)
    days = np.floor(local / DAY_S).astype(np.int64)
    hour = (local - days * DAY_S) / 3600.0
    z = days + 719468
    era = np.floor_divide(z, 146097)
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = np.where(mp < 10, mp + 3, mp - 9)
    year = yoe + era * 400 + (month <= 2)
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday
    return year, month, day, weekday, hour


@dataclass(frozen=True, slots=True, kw_only=True)
class TouPeriod:
    """One entry of a TOU schedule: a season (month-day range, may wrap the new year), the days
    of the week it applies to, and price steps starting at local hours ``start_hours``."""

    id: str
    start_md: int  # month * 100 + day, e.g. 601 for June 1
    end_md: int  # inclusive
    weekdays: frozenset[int]  # Mon=0 .. Sun=6
    start_hours: tuple[float, ...]
    prices_per_kwh: tuple[float, ...]
    demand_charge_per_kw: float = 0.0

    def applies(self, md: IntArray, weekday: IntArray) -> npt.NDArray[np.bool_]:
        if self.start_md <= self.end_md:
            in_season = (md >= self.start_md) & (md <= self.end_md)
        else:
            in_season = (md >= self.start_md) | (md <= self.end_md)
        return in_season & np.isin(weekday, np.fromiter(self.weekdays, dtype=np.int64))

    def price_at_hour(self, hour: FloatArray) -> FloatArray:
        idx = np.searchsorted(np.asarray(self.start_hours), hour, side="right") - 1
        return np.asarray(self.prices_per_kwh)[np.clip(idx, 0, None)]


@dataclass(frozen=True, slots=True, kw_only=True)
class TouSchedule:
    """A time-of-use tariff: periods matched first-to-last; every day of the year is covered."""

    name: str
    periods: tuple[TouPeriod, ...]

    def __post_init__(self) -> None:
        md = np.array(
            [m * 100 + d for m, n in enumerate(_MONTH_DAYS, start=1) for d in range(1, n + 1)],
            dtype=np.int64,
        )
        for wd in range(7):
            covered = np.zeros(md.shape, dtype=bool)
            for p in self.periods:
                covered |= p.applies(md, np.full(md.shape, wd, dtype=np.int64))
            if not covered.all():
                first = int(md[~covered][0])
                raise InputError(
                    f"tariff {self.name!r}: no schedule entry covers month-day "
                    f"{first // 100:02d}-{first % 100:02d} on weekday {wd} (Mon=0); add one"
                )

    def period_index(self, md: IntArray, weekday: IntArray) -> IntArray:
        out = np.full(md.shape, -1, dtype=np.int64)
        for k in range(len(self.periods) - 1, -1, -1):  # reversed: the first match wins
            out[self.periods[k].applies(md, weekday)] = k
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class PriceSeries:
    """Energy prices on a regular grid (day-ahead market); held flat outside the series."""

    start_s: float
    step_s: float
    prices_per_kwh: tuple[float, ...]

    def prices(self, t_s: FloatArray) -> FloatArray:
        idx = np.floor((t_s - self.start_s) / self.step_s).astype(np.int64)
        return np.asarray(self.prices_per_kwh)[np.clip(idx, 0, len(self.prices_per_kwh) - 1)]


@dataclass(frozen=True, slots=True, kw_only=True)
class CostBreakdown:
    """What a power profile costs: energy, demand charge, and each billing period's peak."""

    energy_kwh: float
    energy_cost: float
    demand_charge: float
    peak_kw_by_period: Mapping[int, float]  # key: year * 12 + month - 1 (local)

    @property
    def total(self) -> float:
        return self.energy_cost + self.demand_charge


@dataclass(frozen=True, slots=True, kw_only=True)
class Tariff:
    """Energy prices from a TOU schedule or a price series, and a demand charge per kW.

    ``demand_charge_per_kw_override`` replaces the schedule's demand charge (and is the only
    one for a price series); ``peak_window_s`` is the demand-averaging interval.
    """

    name: str
    energy: TouSchedule | PriceSeries
    offsets: UtcOffsets = UtcOffsets()
    demand_charge_per_kw_override: float | None = None
    peak_window_s: float = 900.0

    def _civil(self, t: FloatArray) -> tuple[IntArray, IntArray, IntArray, FloatArray]:
        year, month, day, weekday, hour = civil_from_epoch(t + self.offsets.offset_s(t))
        return year * 12 + month - 1, month * 100 + day, weekday, hour

    def prices(self, t_s: npt.ArrayLike) -> FloatArray:
        """Energy price per kWh at each ``t_s`` [s since epoch]."""
        t = np.asarray(t_s, dtype=np.float64)
        if isinstance(self.energy, PriceSeries):
            return self.energy.prices(t)
        _, md, weekday, hour = self._civil(t)
        idx = self.energy.period_index(md, weekday)
        out = np.empty(t.shape, dtype=np.float64)
        for k, period in enumerate(self.energy.periods):
            sel = idx == k
            out[sel] = period.price_at_hour(hour[sel])
        return out

    def price_per_kwh(self, t_s: float) -> float:
        return float(self.prices(np.array([t_s]))[0])

    def demand_rates(self, t_s: npt.ArrayLike) -> FloatArray:
        """Demand charge per kW in force at each ``t_s``."""
        t = np.asarray(t_s, dtype=np.float64)
        if self.demand_charge_per_kw_override is not None:
            return np.full(t.shape, self.demand_charge_per_kw_override)
        if isinstance(self.energy, PriceSeries):
            return np.zeros(t.shape)
        _, md, weekday, _ = self._civil(t)
        rates = np.array([p.demand_charge_per_kw for p in self.energy.periods])
        return rates[self.energy.period_index(md, weekday)]

    def demand_charge_per_kw(self, t_s: float) -> float:
        return float(self.demand_rates(np.array([t_s]))[0])

    def billing_periods(self, t_s: npt.ArrayLike) -> IntArray:
        """Billing period of each ``t_s``: year * 12 + month - 1 of the local date."""
        return self._civil(np.asarray(t_s, dtype=np.float64))[0]

    def cost(
        self, times_s: npt.ArrayLike, power_kw: npt.ArrayLike, step_s: float | None = None
    ) -> CostBreakdown:
        """Cost of importing ``power_kw`` during [t, t + step_s) for each sample start ``t``.

        ``step_s`` defaults to the spacing of ``times_s`` (which must then be regular).
        """
        t = np.asarray(times_s, dtype=np.float64)
        p = np.asarray(power_kw, dtype=np.float64)
        if t.shape != p.shape or t.ndim != 1:
            raise InputError("cost: times_s and power_kw must be 1-D arrays of the same length")
        if t.size == 0:
            return CostBreakdown(
                energy_kwh=0.0, energy_cost=0.0, demand_charge=0.0, peak_kw_by_period={}
            )
        step = _step(t) if step_s is None else float(step_s)
        imp = np.maximum(p, 0.0)
        energy_kwh = imp * step / 3600.0
        peaks = self._peaks(t, imp, step)
        return CostBreakdown(
            energy_kwh=float(energy_kwh.sum()),
            energy_cost=float((energy_kwh * self.prices(t)).sum()),
            demand_charge=sum(kw * rate for kw, rate in peaks.values()),
            peak_kw_by_period={k: kw for k, (kw, _) in peaks.items()},
        )

    def _peaks(
        self, t: FloatArray, imp_kw: FloatArray, step_s: float
    ) -> dict[int, tuple[float, float]]:
        """Per billing period: (peak window-average kW, demand rate at that peak)."""
        window = max(self.peak_window_s, step_s)
        win = np.floor(t / window).astype(np.int64)
        uniq, inv = np.unique(win, return_inverse=True)
        # Average over the full window: a window only half covered by samples averages in
        # zeros for the rest, as a utility meter would record no import there.
        avg_kw = np.bincount(inv, weights=imp_kw * step_s) / window
        starts = uniq.astype(np.float64) * window
        period = self.billing_periods(starts)
        rates = self.demand_rates(starts)
        out: dict[int, tuple[float, float]] = {}
        for k in np.unique(period):
            sel = np.flatnonzero(period == k)
            j = sel[int(np.argmax(avg_kw[sel]))]
            out[int(k)] = (float(avg_kw[j]), float(rates[j]))
        return out


def _step(t: FloatArray) -> float:
    if t.size < 2:
        raise InputError("cost: give step_s when there is a single sample")
    diffs = np.diff(t)
    if not np.allclose(diffs, diffs[0]):
        raise InputError("cost: times_s are not evenly spaced; give step_s")
    return float(diffs[0])


def _md(text: str, where: str) -> int:
    try:
        month, day = (int(x) for x in str(text).split("-"))
    except ValueError:
        raise InputError(f"{where}: expected 'MM-DD', got {text!r}") from None
    if not (1 <= month <= 12 and 1 <= day <= 31):
        raise InputError(f"{where}: month-day {text!r} is out of range")
    return month * 100 + day


def _period(entry: Mapping[str, object], where: str) -> TouPeriod:
    try:
        mask = _DOW_MASKS[str(entry["dow_mask"]).upper()]
        times = tuple(float(x) for x in entry["times"])  # type: ignore[attr-defined]
        prices = tuple(float(x) for x in entry["tariffs"])  # type: ignore[attr-defined]
        start, end = str(entry["effective_start"]), str(entry["effective_end"])
        demand = float(entry.get("demand_charge", 0.0))  # type: ignore[arg-type]
    except KeyError as exc:
        raise InputError(
            f"{where}: missing key {exc.args[0]!r} (or unknown dow_mask; "
            f"use one of {sorted(_DOW_MASKS)})"
        ) from None
    except (TypeError, ValueError) as exc:
        raise InputError(f"{where}: {exc}") from None
    if len(times) != len(prices) or not times or times[0] != 0.0:
        raise InputError(f"{where}: 'times' must start at 0 and match 'tariffs' in length")
    if list(times) != sorted(times) or times[-1] >= 24.0:
        raise InputError(f"{where}: 'times' must be increasing hours in [0, 24)")
    return TouPeriod(
        id=str(entry.get("id", where)),
        start_md=_md(start, where),
        end_md=_md(end, where),
        weekdays=mask,
        start_hours=times,
        prices_per_kwh=prices,
        demand_charge_per_kw=demand,
    )


def parse_acn_tou(doc: Mapping[str, object], *, source: str = "<tariff>") -> TouSchedule:
    """A ``TouSchedule`` from an acnportal tariff document (already loaded from JSON).

    Raises ``InputError`` naming ``source`` and the entry when the document is malformed.
    """
    schedule = doc.get("schedule")
    if not isinstance(schedule, Sequence) or not schedule:
        raise InputError(f"{source}: expected a non-empty 'schedule' list")
    periods = []
    for k, entry in enumerate(schedule):
        if not isinstance(entry, Mapping):
            raise InputError(f"{source}: schedule[{k}] must be an object")
        periods.append(_period(entry, f"{source}: schedule[{k}]"))
    return TouSchedule(name=str(doc.get("name", source)), periods=tuple(periods))
