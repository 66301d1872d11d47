"""Receding-horizon planning: when to re-plan, and defaults for what drivers did not declare."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from ampshare.core.allocation import RotationState
from ampshare.core.planner._plan import plan
from ampshare.core.planner._types import (
    Battery,
    EnergyPriority,
    Linearisation,
    Plan,
    PlanInput,
    Prefer,
    SiteForecast,
)
from ampshare.core.site import Site
from ampshare.core.snapshot import ChargerState, ChargerStatus, Session
from ampshare.core.tariff import Tariff

__all__ = [
    "RecedingHorizonPlanner",
    "SessionDefaults",
    "apply_defaults",
    "charging_sessions",
    "full_sessions",
    "learn_defaults",
    "without_full",
]

ForecastFn = Callable[[float, float, int], SiteForecast]


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionDefaults:
    """What to assume when a driver declares nothing: per user if known, else per site.
    ``energy_wh`` None means "as much as it can take before departure"."""

    dwell_s: float = 8 * 3600.0
    energy_wh: float | None = None
    per_user: Mapping[str, tuple[float, float]] = field(
        default_factory=lambda: MappingProxyType({})
    )  # user -> (dwell_s, energy_wh)


def learn_defaults(
    history: Sequence[Session], *, quantile: float = 0.5, min_sessions: int = 3
) -> SessionDefaults:
    """Learn dwell time and energy from finished sessions (``departure_s`` set, and the energy
    they actually took in ``energy_delivered_wh``): the ``quantile`` per user with at least
    ``min_sessions`` sessions, and over the whole site."""
    done = [s for s in history if s.departure_s is not None]
    if not done:
        return SessionDefaults()

    def stats(group: Sequence[Session]) -> tuple[float, float]:
        dwell = [s.departure_s - s.arrival_s for s in group if s.departure_s is not None]
        energy = [s.energy_delivered_wh for s in group]
        return float(np.quantile(dwell, quantile)), float(np.quantile(energy, quantile))

    by_user: dict[str, list[Session]] = {}
    for s in done:
        if s.user_id is not None:
            by_user.setdefault(s.user_id, []).append(s)
    site_dwell, site_energy = stats(done)
    per_user = {u: stats(g) for u, g in by_user.items() if len(g) >= min_sessions}
    return SessionDefaults(
        dwell_s=site_dwell, energy_wh=site_energy, per_user=MappingProxyType(per_user)
    )


def apply_defaults(sessions: Sequence[Session], defaults: SessionDefaults) -> tuple[Session, ...]:
    """Fill undeclared departures and energies from ``defaults`` (declared values win)."""
    out = []
    for s in sessions:
        dwell, energy = defaults.per_user.get(
            s.user_id or "", (defaults.dwell_s, defaults.energy_wh)
        )
        out.append(
            dataclasses.replace(
                s,
                departure_s=s.departure_s if s.departure_s is not None else s.arrival_s + dwell,
                energy_wanted_wh=s.energy_wanted_wh if s.energy_wanted_wh is not None else energy,
            )
        )
    return tuple(out)


DRAWING_A = 0.5  # more than this on a line: the car draws current


def _drawn_a(st: ChargerState) -> float:
    """The highest current the charger measures on a line (0 when it measures none)."""
    return max((a or 0.0 for a in st.measured_current_a or ()), default=0.0)


def full_sessions(
    previous: frozenset[str], sessions: Sequence[Session], states: Sequence[ChargerState]
) -> frozenset[str]:
    """Ids of the plugged-in sessions whose car is full: its charger reports SuspendedEV
    (offered current, the car takes none). A car is wanting again as soon as it draws; one
    that was not offered current (paused, or an increase still held back) keeps its verdict —
    drawing nothing then says nothing about its battery."""
    by_charger = {s.charger_id: s.session_id for s in sessions}
    full = set(previous) & set(by_charger.values())
    for st in states:
        sid = by_charger.get(st.charger_id)
        if sid is None:
            continue
        if _drawn_a(st) > DRAWING_A:
            full.discard(sid)
        elif st.status is ChargerStatus.SUSPENDED_EV:
            full.add(sid)
    return frozenset(full)


def charging_sessions(sessions: Sequence[Session], rotation: RotationState) -> frozenset[str]:
    """Ids of the plugged-in sessions whose charger the allocator's rotation memory holds as
    charging (and not paused): the cars ``planned`` never stops (``core.allocate``), so the
    plan must count on their minimum. A car the controller just started counts although it
    draws nothing yet; one it paused does not, whatever its last report said. An empty memory
    (no allocation yet) says nobody: then the plan alone decides who starts."""
    return frozenset(s.session_id for s in sessions if rotation.keeps_charging(s.charger_id))


def without_full(sessions: Sequence[Session], full: frozenset[str]) -> tuple[Session, ...]:
    """The sessions with every full car wanting nothing more (the plan reserves nothing)."""
    return tuple(
        dataclasses.replace(s, energy_wanted_wh=s.energy_delivered_wh)
        if s.session_id in full
        else s
        for s in sessions
    )


def _no_forecast(start_s: float, slot_s: float, n_slots: int) -> SiteForecast:
    return SiteForecast()


@dataclass(slots=True, kw_only=True)
class RecedingHorizonPlanner:
    """Keeps the current plan and re-plans every ``replan_interval_s``, when the set of
    plugged-in sessions changes, when the plan runs out, or when the last solve was unusable.

    Pure apart from its own memory: time comes in as ``now_s``; the forecast function and the
    tariff are injected. A plan made at ``now_s`` starts at ``now_s``.
    """

    site: Site
    horizon_s: float = 24 * 3600.0
    slot_s: float = 900.0
    replan_interval_s: float = 300.0
    time_limit_s: float | None = 1.0
    tariff: Tariff | None = None
    forecast: ForecastFn = _no_forecast
    contracted_capacity_w: float | None = None
    battery: Battery | None = None
    defaults: SessionDefaults = field(default_factory=SessionDefaults)
    linearisation: Linearisation = Linearisation.INSCRIBED
    max_facet_deg: float = 10.0
    priority_factor: float = 4.0
    prefer: Prefer = Prefer.ENERGY
    energy_priority: EnergyPriority = EnergyPriority.STRICT
    stay_samples: tuple[tuple[float, float], ...] = ()  # PlanInput.stay_samples
    last: Plan | None = None
    replans: int = 0

    def needs_replan(self, now_s: float, sessions: Sequence[Session]) -> bool:
        p = self.last
        if p is None or not p.status.usable or now_s >= p.end_s - self.slot_s:
            return True
        if now_s - p.start_s >= self.replan_interval_s:
            return True
        return {s.session_id for s in sessions} != set(p.session_ids)

    def step(
        self,
        now_s: float,
        sessions: Sequence[Session],
        *,
        peak_so_far_kw: float = 0.0,
        battery_soc_wh: float | None = None,
        charging: frozenset[str] | None = None,
    ) -> Plan:
        """The plan in force at ``now_s`` (re-planned if needed). ``charging``: ids of the
        sessions the allocator keeps charging (``charging_sessions``, which become
        ``PlanInput.floor_sessions``; None: all get the floor)."""
        if self.needs_replan(now_s, sessions):
            inp = self._input(now_s, sessions, peak_so_far_kw, battery_soc_wh)
            self.last = plan(dataclasses.replace(inp, floor_sessions=charging))
            self.replans += 1
        assert self.last is not None
        return self.last

    def _input(
        self, now_s: float, sessions: Sequence[Session], peak_kw: float, soc_wh: float | None
    ) -> PlanInput:
        n = max(1, round(self.horizon_s / self.slot_s))
        prices, demand = None, 0.0
        if self.tariff is not None:
            prices = self.tariff.prices(now_s + self.slot_s * (np.arange(n) + 0.5))
            demand = self.tariff.demand_charge_per_kw(now_s)
        battery = self.battery
        if battery is not None and soc_wh is not None:
            battery = dataclasses.replace(battery, soc_wh=soc_wh)
        return PlanInput(
            site=self.site,
            start_s=now_s,
            slot_s=self.slot_s,
            n_slots=n,
            sessions=apply_defaults(sessions, self.defaults),
            forecast=self.forecast(now_s, self.slot_s, n),
            prices_per_kwh=prices,
            demand_charge_per_kw=demand,
            peak_so_far_kw=peak_kw,
            peak_window_s=self.tariff.peak_window_s if self.tariff else 900.0,
            contracted_capacity_w=self.contracted_capacity_w,
            battery=battery,
            default_dwell_s=self.defaults.dwell_s,
            linearisation=self.linearisation,
            max_facet_deg=self.max_facet_deg,
            priority_factor=self.priority_factor,
            prefer=self.prefer,
            energy_priority=self.energy_priority,
            time_limit_s=self.time_limit_s,
            stay_samples=self.stay_samples,
            floor_first_slot=True,
        )
