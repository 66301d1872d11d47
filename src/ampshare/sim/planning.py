"""The planner as the simulator's plan provider (``ampshare.sim.engine.PlanProvider``).

``PlannerProvider`` wraps ``core.planner.RecedingHorizonPlanner`` for a replay: it sees only
what a live controller would (declared departures and energies, energy delivered so far),
forecasts the building load from the replay's *past* (same weekday and time, safety
quantile), learns default stays and energies from the sessions it has seen leave (and how
their true stay compared with the declared one, which makes the plan front-load energy),
treats a car as full while its charger reports SuspendedEV, tracks the demand peak already
set in the billing period, and keeps each session's latest expected energy and "will not be
ready" warning. A late or failed solve yields deadline-style targets (energy
still needed over time left), the same fallback the live controller takes. With a demand
charge and ``hold_peak``, the plan's peak is held live (``Policy.planned_ceiling_w``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace

import numpy as np
import numpy.typing as npt

from ampshare.core.allocation import RotationState
from ampshare.core.electrical import charger_voltage_v
from ampshare.core.planner import (
    Battery,
    DriverHistory,
    EnergyPriority,
    Linearisation,
    PeakSoFar,
    Plan,
    Prefer,
    RecedingHorizonPlanner,
    SessionDefaults,
    SessionPlan,
    SiteForecast,
    ceiling_w,
    charging_sessions,
    forecast_profile,
    full_sessions,
    peak_so_far,
    targets_at,
    without_full,
)
from ampshare.core.site import Site
from ampshare.core.snapshot import ChargerState, Session
from ampshare.core.tariff import Tariff
from ampshare.sim._types import BatteryState, PlanView
from ampshare.sim.data import SessionRecord
from ampshare.sim.series import TimeSeries

__all__ = ["PlannerOptions", "PlannerProvider", "deadline_targets"]

_NO_MEMORY = RotationState()  # no decision yet: the allocator keeps nobody charging

FloatArray = npt.NDArray[np.float64]


def deadline_targets(
    site: Site, sessions: Sequence[Session], now_s: float, default_dwell_s: float = 8 * 3600.0
) -> dict[str, float]:
    """Energy still needed / (volts x time left), capped at the charger; full speed when
    nothing was declared. The fallback when no usable plan exists."""
    out: dict[str, float] = {}
    for s in sessions:
        charger = site.charger(s.charger_id)
        need = s.energy_needed_wh
        dep = s.departure_s if s.departure_s is not None else s.arrival_s + default_dwell_s
        left_h = max(dep - now_s, 60.0) / 3600.0
        volts = charger_voltage_v(site, charger, s.vehicle_phases)
        rate = charger.max_current_a if need is None else need / (volts * left_h)
        out[s.session_id] = min(charger.max_current_a, rate)
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class PlannerOptions:
    """A site's planner settings for a replay (``ampshare simulate`` takes them from the site
    file's ``planner:`` section); the defaults are the simulator's own. The solve's time
    limit stays the simulator's: a replay is not a live site with a step to keep."""

    horizon_s: float = 24 * 3600.0
    slot_s: float = 900.0
    safety_quantile: float = 0.9
    forecast_weeks: int = 4
    hold_peak: bool = True
    defaults: SessionDefaults = field(default_factory=SessionDefaults)
    contracted_capacity_w: float | None = None
    priority_factor: float = 4.0
    max_facet_deg: float = 10.0
    battery: Battery | None = None  # a stationary battery to plan (the replay simulates it)
    prefer: Prefer = Prefer.ENERGY
    energy_priority: EnergyPriority = EnergyPriority.STRICT


@dataclass(slots=True, kw_only=True)
class _Seen:
    session: Session
    last_s: float


@dataclass(slots=True, kw_only=True)
class PlannerProvider:
    """Callable ``(now_s, site, sessions) -> PlanView``; build once per replay.

    ``building``/``pv`` are the replay's series (kW, or A per line for ``building``); only
    their values before ``now_s`` are used, for the forecast.
    """

    site: Site
    tariff: Tariff | None = None
    building: TimeSeries | None = None
    pv: TimeSeries | None = None
    horizon_s: float = 24 * 3600.0
    slot_s: float = 900.0
    time_limit_s: float | None = 5.0
    safety_quantile: float = 0.9
    forecast_weeks: int = 4
    learn: bool = True
    linearisation: Linearisation = Linearisation.INSCRIBED
    hold_peak: bool = True
    defaults: SessionDefaults = field(default_factory=SessionDefaults)
    contracted_capacity_w: float | None = None
    priority_factor: float = 4.0
    max_facet_deg: float = 10.0
    battery: Battery | None = None
    prefer: Prefer = Prefer.ENERGY
    energy_priority: EnergyPriority = EnergyPriority.STRICT
    mpc: RecedingHorizonPlanner = field(init=False)
    plans: int = 0
    fallbacks: int = 0
    expected: dict[str, SessionPlan] = field(default_factory=dict)
    _seen: dict[str, _Seen] = field(default_factory=dict)
    drivers: DriverHistory = field(default_factory=DriverHistory)
    _full: frozenset[str] = frozenset()
    _last_s: float | None = None
    _peak: PeakSoFar = field(init=False)
    _battery_net_wh: float = 0.0

    def seed(self, history: Sequence[SessionRecord]) -> None:
        """Learn defaults and stays from sessions that ended before the replay (what a live
        site has in its store)."""
        self.drivers.seed(
            (
                Session(
                    session_id=r.session_id,
                    charger_id=r.station_id,
                    arrival_s=r.arrival_s,
                    departure_s=r.declared_departure_s,
                    energy_delivered_wh=r.energy_wh,
                    user_id=r.user_id,
                ),
                r.departure_s,
            )
            for r in history
        )
        self.drivers.teach(self.mpc)

    def __post_init__(self) -> None:
        self._peak = peak_so_far(self.tariff)
        self.mpc = RecedingHorizonPlanner(
            site=self.site,
            horizon_s=self.horizon_s,
            slot_s=self.slot_s,
            replan_interval_s=0.0,
            time_limit_s=self.time_limit_s,
            tariff=self.tariff,
            forecast=self._forecast,
            linearisation=self.linearisation,
            defaults=self.defaults,
            contracted_capacity_w=self.contracted_capacity_w,
            priority_factor=self.priority_factor,
            max_facet_deg=self.max_facet_deg,
            battery=self.battery,
            prefer=self.prefer,
            energy_priority=self.energy_priority,
        )

    @classmethod
    def for_replay(
        cls,
        site: Site,
        *,
        tariff: Tariff | None,
        building: TimeSeries | None,
        pv: TimeSeries | None,
        options: PlannerOptions,
    ) -> PlannerProvider:
        """A provider with a site's planner settings (every ``PlannerOptions`` field is a
        provider field of the same name)."""
        settings = {f.name: getattr(options, f.name) for f in fields(options)}
        return cls(site=site, tariff=tariff, building=building, pv=pv, **settings)

    def __call__(
        self,
        now_s: float,
        site: Site,
        sessions: tuple[Session, ...],
        states: tuple[ChargerState, ...] = (),
        *,
        rotation: RotationState = _NO_MEMORY,
        battery: BatteryState | None = None,
    ) -> PlanView:
        self._full = full_sessions(self._full, sessions, states)
        self._track(now_s, sessions, battery)
        known = without_full(sessions, self._full)
        plan: Plan = self.mpc.step(
            now_s,
            known,
            peak_so_far_kw=self._peak.peak_kw,
            battery_soc_wh=None if battery is None else battery.soc_wh,
            charging=charging_sessions(known, rotation),
        )
        self.plans += 1
        for sp in plan.sessions:
            self.expected[sp.session_id] = sp
        targets = targets_at(plan, now_s)
        if targets:
            view = PlanView(
                targets_a=targets, ceiling_w=ceiling_w(plan) if self.hold_peak else None
            )
        else:
            if known or not plan.status.usable:  # (no car and a plan: nothing fell back)
                self.fallbacks += 1
            view = PlanView(
                targets_a=deadline_targets(site, known, now_s, self.mpc.defaults.dwell_s)
            )
        if self.battery is not None and plan.status.usable:
            view = replace(
                view,
                battery_start_s=plan.start_s,
                battery_slot_s=plan.slot_s,
                battery_kw=tuple(float(x) for x in plan.battery_kw),
            )
        return view

    @property
    def warnings(self) -> list[SessionPlan]:
        """Latest verdict of every session that the plan said would not be ready."""
        return [s for s in self.expected.values() if s.will_not_be_ready]

    # --- what a live controller learns as it goes ------------------------------------------
    def _track(
        self, now_s: float, sessions: Sequence[Session], battery: BatteryState | None = None
    ) -> None:
        # the replay asks at once when a car leaves, so "gone now" is its true departure
        if self.drivers.observe(now_s, sessions) and self.learn:
            self.drivers.teach(self.mpc)
        ids = {s.session_id for s in sessions}
        for sid in [k for k in self._seen if k not in ids]:
            del self._seen[sid]
        self._track_peak(now_s, sessions, battery)
        for s in sessions:
            self._seen[s.session_id] = _Seen(session=s, last_s=now_s)

    def _track_peak(
        self, now_s: float, sessions: Sequence[Session], battery: BatteryState | None
    ) -> None:
        """Mean EV + building (+ battery) power since the last call, averaged into the
        tariff's demand windows as the live loop does (``core.planner.PeakSoFar``): the demand
        peak already set this billing period, which a new peak below costs nothing more."""
        before = {k: v.session.energy_delivered_wh for k, v in self._seen.items()}
        delivered = sum(s.energy_delivered_wh - before.get(s.session_id, 0.0) for s in sessions)
        delivered = max(delivered, 0.0)
        if battery is not None:  # a discharge lowers the import: net may be negative
            delivered += battery.net_wh - self._battery_net_wh
            self._battery_net_wh = battery.net_wh
        if self._last_s is not None and now_s > self._last_s:
            # (a discharging battery may make the site import less than the building alone)
            ev_kw = delivered / (now_s - self._last_s) * 3.6
            for t0, t1, building_kw in self._building_pieces(self._last_s, now_s):
                self._peak.add(t0, t1, ev_kw + building_kw)
        self._last_s = now_s

    @property
    def peak_so_far_kw(self) -> float:
        """The demand peak already set this billing period, as the plan is told it."""
        return self._peak.peak_kw

    def _building_pieces(self, t0: float, t1: float) -> list[tuple[float, float, float]]:
        """[t0, t1) cut where the building series steps, with its kW on each piece: the
        replay calls the planner only while cars are plugged in, so one call may follow hours
        without a car, and a building-only peak in them must count as it happened rather than
        averaged over the whole gap."""
        if self.building is None:
            return [(t0, t1, 0.0)]
        stamps = self.building.t_s
        inside = stamps[(stamps > t0) & (stamps < t1)]
        cuts = np.concatenate(([t0], inside, [t1]))
        kw = self._building_kw(cuts[:-1])  # zero-order hold: each piece's start value
        return [
            (float(a), float(b), float(k)) for a, b, k in zip(cuts[:-1], cuts[1:], kw, strict=True)
        ]

    def _building_kw(self, t: FloatArray) -> FloatArray:
        assert self.building is not None
        v = self.building.at(t)
        if self.building.per_line:
            return np.asarray(v.sum(axis=1) * self.site.voltage.line_to_neutral_v / 1000)
        return np.asarray(v, dtype=np.float64)

    # --- forecast from the past only -------------------------------------------------------
    def _forecast(self, start_s: float, slot_s: float, n_slots: int) -> SiteForecast:
        if self.building is None and self.pv is None:
            return SiteForecast()
        out: dict[str, object] = {}
        if self.building is not None:
            out.update(self._building_forecast(start_s, slot_s, n_slots))
        if self.pv is not None:
            # PV is forecast low (1 - quantile): counting on sun that does not come is the
            # costly mistake.
            out["pv_power_w"] = 1000 * self._past(
                self.pv, start_s, slot_s, n_slots, 1.0 - self.safety_quantile
            )
        return SiteForecast(**out)  # type: ignore[arg-type]

    def _building_forecast(self, start_s: float, slot_s: float, n_slots: int) -> dict[str, object]:
        assert self.building is not None
        v = self._past(self.building, start_s, slot_s, n_slots, self.safety_quantile)
        n_lines = len(self.site.voltage.lines)
        v_ln = self.site.voltage.line_to_neutral_v
        mask = np.array([1.0 if k < n_lines else 0.0 for k in range(3)])
        if self.building.per_line:
            line_a = np.maximum(v, 0.0) * mask
            power_w = line_a.sum(axis=1) * v_ln
        else:
            power_w = np.maximum(v, 0.0) * 1000
            line_a = np.outer(power_w / (n_lines * v_ln), mask)
        node = next((m.node_id for m in self.site.meters), self.site.root.id)
        return {"building_line_a": {node: line_a}, "building_power_w": power_w}

    def _past(
        self, series: TimeSeries, start_s: float, slot_s: float, n_slots: int, quantile: float
    ) -> FloatArray:
        past = series.t_s < start_s
        if not past.any():
            # Nothing known yet: unknown means pessimistic for load, nothing for PV.
            fill = np.max(series.values, axis=0) if quantile > 0.5 else 0.0 * series.values[0]
            return np.broadcast_to(fill, (n_slots, *series.values.shape[1:])).astype(float)
        weeks = max(
            1, min(self.forecast_weeks, math.ceil((start_s - series.t_s[0]) / (7 * 86400.0)))
        )
        return forecast_profile(
            series.t_s[past],
            series.values[past],
            start_s=start_s,
            slot_s=slot_s,
            n_slots=n_slots,
            lookbacks=weeks,
            quantile=quantile,
        )
