"""The receding-horizon planner beside the live loop (site file ``planner: {enabled: true}``).

The control step stays synchronous and quick: it reads the newest plan's targets for the slot
in force (``core.planner.policy_at``) when the policy is ``planned``, and the ``deadline``
policy while there is no usable plan (none yet, or the last solve was late or infeasible).
Solves run in a worker thread — HiGHS releases the GIL, so the event loop keeps serving the
chargers — whenever ``RecedingHorizonPlanner.needs_replan`` says so (interval, arrivals and
departures, plan running out, last solve unusable), one at a time. A car whose charger reports
SuspendedEV counts as full (the plan reserves nothing for it) until it draws again.

The plan learns what drivers do as the simulator's does (``core.planner.DriverHistory``):
default stays and energies for sessions that declare nothing, and how long drivers really stay
against their declared departure. It starts from the ended sessions of the store when the web
section keeps one (``seed``) and adds every session it sees end.

The plan leaves room for the building: every step's allocation says what non-EV load each
fresh metered node carried (``NodeHeadroom.other_load_a``: measured total minus the chargers'
measured current). ``LoadHistory`` keeps one sample a minute of it per node, in memory for
``lookback_weeks`` weeks, and each solve gets a forecast from it (``core.planner.
forecast_profile``: the same weekday and time on the weeks seen, the 0.9 quantile; before a
week has been seen, the highest load seen so far — unknown means pessimistic). A restart
starts the history afresh.

PV measured by a meter (site file ``meters:`` with ``role: pv``; ``PvMeters``): the root
meter sees the building minus the PV, so with every PV meter fresh the root's sample also keeps
the PV output, the forecast learns the building as what the root meter saw plus it, and the PV
itself is forecast from its own days (same time of day over the last week, the low quantile:
unknown sun means pessimistic, less PV). Before a day of it has been seen, the PV profile's
output (``pv_profile_file``) or none. The controller never reads a PV meter.

With a demand charge, the plan is told the peak already set this billing period
(``PeakSoFar``: the root meter's non-EV load plus the chargers' allocated current, averaged
over the tariff's demand window; a peak below it costs nothing more), and the step holds the
plan's peak (``Policy.planned_ceiling_w``) unless the site file says ``hold_peak: false``.
On start with a store (``--web``), the peak so far is read back from the series the web
recorder kept (``stored_import_windows``); without one a restart forgets it, and the plan
then holds its own peak, which is lower, never higher.
"""

from __future__ import annotations

import asyncio
import bisect
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from ampshare.core.allocation import (
    Allocation,
    Policy,
    PolicyName,
    RotationState,
    site_import_kw,
)
from ampshare.core.planner import (
    DriverHistory,
    Plan,
    PvProfile,
    RecedingHorizonPlanner,
    SiteForecast,
    charging_sessions,
    forecast_profile,
    full_sessions,
    peak_so_far,
    policy_at,
    without_full,
)
from ampshare.core.site import MeterSpec, Site
from ampshare.core.snapshot import ChargerState, MeterReading, Session

__all__ = ["LivePlanner", "LoadHistory", "PvMeters", "pv_output_w", "stored_import_windows"]

WEEK_S = 7 * 86400.0
DAY_S = 86400.0
PV_LOOKBACK_DAYS = 7


def pv_output_w(reading: MeterReading, v_ln: float) -> float | None:
    """A PV meter's output in W: its active power (``MeterReading.active_power_w``), else its
    line currents at ``v_ln`` (inverters run at unity power factor). The magnitude: meters
    disagree on the sign of what flows out, and a PV meter measures nothing else (an
    inverter's few watts of standby at night count as output, which the forecast can bear)."""
    watts = reading.active_power_w()
    if watts is not None:
        return abs(watts)
    amps = [a for a in reading.current_a or () if a is not None]
    if amps and all(map(math.isfinite, amps)):
        return sum(abs(a) for a in amps) * v_ln
    return None


@dataclass(slots=True)
class PvMeters:
    """The latest output of each PV meter of a site (``Site.pv_meters``)."""

    specs: tuple[MeterSpec, ...]
    v_ln: float
    _latest: dict[str, tuple[float, float]] = field(default_factory=dict)  # id -> (t_s, W)

    def observe(self, reading: MeterReading) -> None:
        w = pv_output_w(reading, self.v_ln)
        if w is not None:
            self._latest[reading.meter_id] = (reading.t_s, w)

    def total_w(self, now_s: float) -> float | None:
        """Every PV meter's output added up, or None unless each has read within its
        ``timeout_s``: part of the PV would teach the forecast a smaller building than it is."""
        total = 0.0
        for spec in self.specs:
            got = self._latest.get(spec.id)
            if got is None or now_s - got[0] > spec.timeout_s:
                return None
            total += got[1]
        return total


@dataclass(slots=True)
class LoadHistory:
    """Non-EV load per fresh metered node, one sample per ``sample_s`` (the first reading of
    each interval), kept for ``lookback_weeks`` weeks plus a day."""

    sample_s: float = 60.0
    lookback_weeks: int = 4
    quantile: float = 0.9
    # PV behind the root meter (``planner.pv_profile_file`` x ``pv_kwp``): the root meter sees
    # the building minus PV, so the forecast adds the profile back to learn the building and
    # gives the plan the profile's PV per slot.
    pv: PvProfile | None = None
    # The site's root, its line count and voltage: a battery's share of the root's load comes
    # off its samples (``observe``'s ``root_extra_w``), and with ``pv_metered`` (PV meters,
    # ``PvMeters``) they keep the PV output beside the net load (NaN where one was not fresh).
    root_id: str = ""
    pv_metered: bool = False
    root_lines: int = 3
    v_ln: float = 230.0
    _t: dict[str, list[float]] = field(default_factory=dict)
    _v: dict[str, list[tuple[float, float, float]]] = field(default_factory=dict)
    _pv: list[float] = field(default_factory=list)  # aligned with _t[root_id]

    def observe(
        self,
        now_s: float,
        allocation: Allocation,
        pv_w: float | None = None,
        root_extra_w: float | None = 0.0,
    ) -> None:
        """``pv_w``: the PV meters' output now (``PvMeters.total_w``), None when unknown.
        ``root_extra_w``: what the root's non-EV load holds that is no building (a charging
        battery, ``LiveBattery.planner_view``), spread over its lines; None: not known, so the
        root is not sampled."""
        for h in allocation.headroom:
            if not h.measured or h.stale or not all(map(math.isfinite, h.other_load_a)):
                continue  # only what a meter saw, never a worst case
            root = h.node_id == self.root_id
            if root and root_extra_w is None:
                continue
            ts = self._t.setdefault(h.node_id, [])
            if ts and now_s < ts[-1] + self.sample_s:
                continue
            ts.append(now_s)
            vs = self._v.setdefault(h.node_id, [])
            other = h.other_load_a
            if root and root_extra_w:
                less = root_extra_w / (self.root_lines * self.v_ln)
                other = (other[0] - less, other[1] - less, other[2] - less)
            vs.append(other)
            pvs = self._pv if root and self.pv_metered else None
            if pvs is not None:
                pvs.append(math.nan if pv_w is None else pv_w)
            keep_from = now_s - (self.lookback_weeks * WEEK_S + 86400.0)
            if ts[0] < keep_from:
                cut = bisect.bisect_left(ts, keep_from)
                del ts[:cut], vs[:cut]
                if pvs is not None:
                    del pvs[:cut]

    def samples(self, node_id: str) -> int:
        return len(self._t.get(node_id, ()))

    def forecast(self, site: Site) -> _Forecast:
        """A forecast function for one solve, over a copy of the history as it is now (the
        solve runs in a worker thread while the loop goes on observing)."""
        data = {
            nid: (np.asarray(ts, dtype=np.float64), np.asarray(self._v[nid], dtype=np.float64))
            for nid, ts in self._t.items()
            if ts
        }
        measured_pv = None
        if self.pv_metered and self.root_id in data and any(map(math.isfinite, self._pv)):
            measured_pv = np.asarray(self._pv, dtype=np.float64)
        return _Forecast(
            site=site, data=data, weeks=self.lookback_weeks, quantile=self.quantile, pv=self.pv,
            measured_pv_w=measured_pv,
        )


@dataclass(frozen=True, slots=True)
class _Forecast:
    site: Site
    data: dict[str, tuple[np.ndarray, np.ndarray]]  # node -> (times, (k, 3) line amperes)
    weeks: int
    quantile: float
    pv: PvProfile | None = None
    # the root's PV meter output at each of its sample times (NaN: not known then)
    measured_pv_w: np.ndarray | None = None

    def __call__(self, start_s: float, slot_s: float, n_slots: int) -> SiteForecast:
        lines: dict[str, np.ndarray] = {}
        for nid, (t, v) in self.data.items():
            lines[nid] = np.maximum(self._profile(t, v, start_s, slot_s, n_slots), 0.0)
        pv_w = None
        if self.pv is not None:
            mid = start_s + slot_s * (np.arange(n_slots) + 0.5)
            pv_w = self.pv.power_w(mid)
        root, v_ln = self.site.root.id, self.site.voltage.line_to_neutral_v
        power = None
        if root in self.data and self.measured_pv_w is not None:
            t, v = self.data[root]
            pv = self.measured_pv_w
            # The building is what the root meter saw plus what the PV meters measured then
            # (NaN where they were not fresh: skipped, not taken as no PV).
            power = np.maximum(
                self._profile(t, v.sum(axis=1) * v_ln + pv, start_s, slot_s, n_slots), 0.0
            )
            pv_w = self._pv_forecast(t, pv, start_s, slot_s, n_slots, profile_w=pv_w)
        elif root in self.data and self.pv is not None:
            t, v = self.data[root]
            # What the root meter saw is the building minus the PV: add the PV back to learn
            # the building itself, whose import the plan then lowers by the PV forecast. The
            # line rows keep the net currents: that is what the fuses carried.
            seen_w = v.sum(axis=1) * v_ln + self.pv.power_w(t)
            power = np.maximum(self._profile(t, seen_w, start_s, slot_s, n_slots), 0.0)
        elif root in lines:
            power = lines[root].sum(axis=1) * v_ln
        if not lines and pv_w is None:
            return SiteForecast()
        return SiteForecast(building_line_a=lines, building_power_w=power, pv_power_w=pv_w)

    def _pv_forecast(
        self,
        t: np.ndarray,
        pv: np.ndarray,
        start_s: float,
        slot_s: float,
        n_slots: int,
        *,
        profile_w: np.ndarray | None,
    ) -> np.ndarray:
        """The PV per slot from its own days: the same time of day over the last week, at the
        low quantile (less sun than seen most days: the plan then expects more import, never
        less); slots no day covers yet get the profile's output, or none."""
        ok = np.isfinite(pv)
        tt, pp = t[ok], pv[ok]
        days = max(1, min(PV_LOOKBACK_DAYS, math.ceil((start_s - tt[0]) / DAY_S)))
        fallback = profile_w if profile_w is not None else np.zeros(n_slots)
        return np.maximum(
            forecast_profile(
                tt, pp, start_s=start_s, slot_s=slot_s, n_slots=n_slots, period_s=DAY_S,
                lookbacks=days, quantile=1.0 - self.quantile, fallback=fallback,
            ),
            0.0,
        )

    def _profile(
        self, t: np.ndarray, v: np.ndarray, start_s: float, slot_s: float, n_slots: int
    ) -> np.ndarray:
        seen = max(1, min(self.weeks, math.ceil((start_s - t[0]) / WEEK_S)))
        return forecast_profile(
            t, v, start_s=start_s, slot_s=slot_s, n_slots=n_slots, lookbacks=seen,
            quantile=self.quantile,
        )


def stored_import_windows(
    history: Callable[[str, float, float, float], Sequence[tuple[float, float]]],
    site: Site,
    now_s: float,
    window_s: float,
    lookback_s: float = 32 * 86400.0,
) -> list[tuple[float, float]]:
    """``(window start, average kW)`` of site import over the last ``lookback_s``, from the
    series the web recorder keeps (``node:<root>:<line>:other_a`` and ``:ev_a``, averaged per
    window by ``history(series, start, end, resolution) -> [(t, value)]``). A window counts
    only where every one of those series has samples in it."""
    start = now_s - lookback_s
    root = site.root.id
    names = [
        f"node:{root}:{line.name}:{kind}"
        for line in site.voltage.lines
        for kind in ("other_a", "ev_a")
    ]
    per: list[dict[float, float]] = [dict(history(n, start, now_s, window_s)) for n in names]
    common = set(per[0]).intersection(*per[1:]) if per else set()
    v_ln = site.voltage.line_to_neutral_v
    return [(t, sum(p[t] for p in per) * v_ln / 1000.0) for t in sorted(common)]


class LivePlanner:
    """The planner of one supervised site; ``latest`` is its newest plan (None: none yet).
    ``hold_peak``: hold the plan's demand peak live (see the module docstring)."""

    def __init__(
        self,
        mpc: RecedingHorizonPlanner,
        history: LoadHistory | None = None,
        *,
        hold_peak: bool = True,
        pv_meters: PvMeters | None = None,
    ) -> None:
        self.mpc = mpc
        self.history = history if history is not None else LoadHistory()
        self.hold_peak = hold_peak
        self.pv_meters = pv_meters
        self.peak = peak_so_far(mpc.tariff)
        self.latest: Plan | None = None
        self.solves = 0
        self.drivers = DriverHistory()
        self._full: frozenset[str] = frozenset()
        self._charging: frozenset[str] | None = None  # set by ``wants``
        self._running = False

    def seed(self, ended: Iterable[tuple[Session, float]]) -> None:
        """Learn from sessions that ended before this run: ``(session, ended_s)``, oldest first."""
        self.drivers.seed(ended)
        self.drivers.teach(self.mpc)

    def observe(
        self,
        now_s: float,
        allocation: Allocation | None,
        battery: tuple[float | None, float] = (0.0, 0.0),
    ) -> None:
        """Record the non-EV load the step's allocation counted (see the module docstring).
        ``battery``: (what of the root's load is the battery's, None: unknown; what the step
        added to the root's import for it), ``LiveBattery.planner_view``."""
        if allocation is not None:
            pv_w = None if self.pv_meters is None else self.pv_meters.total_w(now_s)
            root_extra_w, credit_w = battery
            self.history.observe(now_s, allocation, pv_w, root_extra_w)
            kw = site_import_kw(self.mpc.site, allocation.headroom)
            if kw is not None:
                self.peak.observe(now_s, kw - credit_w / 1000.0)

    def observe_pv(self, reading: MeterReading) -> None:
        """A PV meter's reading (``Site.pv_meters``), for the building and PV forecasts."""
        if self.pv_meters is not None:
            self.pv_meters.observe(reading)

    def policy(self, base: Policy, now_s: float) -> Policy:
        """What this step runs: ``base`` unless it is ``planned``; then the plan's targets for
        the slot holding ``now_s``, or ``deadline`` (same settings) without a usable plan."""
        if base.name is not PolicyName.PLANNED:
            return base
        fallback = replace(base, name=PolicyName.DEADLINE)
        return policy_at(self.latest, now_s, fallback=fallback, hold_peak=self.hold_peak)

    def wants(
        self,
        now_s: float,
        sessions: Sequence[Session],
        states: Sequence[ChargerState],
        rotation: RotationState,
    ) -> bool:
        """A new plan is due and no solve is running (marks full cars and learns from ended
        sessions as side effects). ``rotation``: the controller's memory of who it keeps
        charging, whose minimum the plan about to be made counts on."""
        self._full = full_sessions(self._full, sessions, states)
        if self.drivers.observe(now_s, sessions):
            self.drivers.teach(self.mpc)
        due = not self._running and self.mpc.needs_replan(now_s, sessions)
        if due:  # who charges matters only to the plan about to be made
            self._charging = charging_sessions(sessions, rotation)
        return due

    async def replan(
        self, now_s: float, sessions: Sequence[Session], battery_soc_wh: float | None = None
    ) -> Plan:
        """Solve for ``sessions`` at ``now_s`` in a worker thread; the result is ``latest``.
        ``battery_soc_wh``: the battery's charge now (None: the section's bottom charge)."""
        self._running = True
        try:
            known = without_full(sessions, self._full)
            self.mpc.forecast = self.history.forecast(self.mpc.site)
            self.latest = await asyncio.to_thread(
                self.mpc.step, now_s, known, peak_so_far_kw=self.peak.peak_kw,
                battery_soc_wh=battery_soc_wh, charging=self._charging,
            )
            self.solves += 1
        finally:
            self._running = False
        return self.latest
