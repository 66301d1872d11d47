"""Pure models behind the simulated charge points: installed profiles and the car.

``ProfileStore`` evaluates what a real charger would offer from its installed profiles (OCPP
precedence: TxProfile of the running transaction over TxDefaultProfile of the connector over
that of connector 0, capped by the ChargePointMax profile; expired schedules drop out).
``SimEv`` follows the offer like a car: after a reaction delay, and tapering near full.
The car itself is ``ampshare.sim.ev``, the model the simulator and scenarios use too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ampshare.sim.ev import EvSpec, EvState, ev_follow_pilot, ev_plug_in, ev_step

__all__ = ["InstalledProfile", "ProfileStore", "SimEv"]


@dataclass(frozen=True, slots=True, kw_only=True)
class InstalledProfile:
    purpose: str  # TxProfile, TxDefaultProfile, ChargePointMaxProfile
    connector_id: int
    profile_id: int
    stack_level: int
    limit: float
    unit: str  # "A" or "W"
    phases: int | None = None
    transaction_id: str | None = None
    start_s: float | None = None
    duration_s: float | None = None

    def active(self, t_s: float) -> bool:
        if self.start_s is None or self.duration_s is None:
            return True
        return self.start_s <= t_s < self.start_s + self.duration_s

    def limit_a(self, volts: float, phases: int) -> float:
        if self.unit == "A":
            return self.limit
        return self.limit / (volts * (self.phases or phases))


@dataclass(slots=True)
class ProfileStore:
    """The profiles a simulated charger holds; replaced by id or purpose + stack level."""

    profiles: list[InstalledProfile] = field(default_factory=list)

    def install(self, p: InstalledProfile) -> None:
        self.profiles = [q for q in self.profiles
                         if q.profile_id != p.profile_id
                         and not (q.purpose == p.purpose and q.stack_level == p.stack_level
                                  and q.connector_id == p.connector_id)]
        self.profiles.append(p)

    def clear(self, profile_id: int | None = None) -> int:
        before = len(self.profiles)
        self.profiles = [q for q in self.profiles
                         if profile_id is not None and q.profile_id != profile_id]
        return before - len(self.profiles)

    def _top(self, purpose: str, connector: int, t_s: float,
             tx: str | None = None) -> InstalledProfile | None:
        cands = [p for p in self.profiles if p.purpose == purpose and p.connector_id == connector
                 and p.active(t_s) and (tx is None or p.transaction_id in (None, tx))]
        return max(cands, key=lambda p: p.stack_level) if cands else None

    def limit_a(self, *, t_s: float, connector: int, tx: str | None, volts: float,
                phases: int, hw_max_a: float) -> float:
        """The current the charger offers now (per phase) on ``connector``."""
        chosen = (self._top("TxProfile", connector, t_s, tx) if tx else None) \
            or self._top("TxDefaultProfile", connector, t_s) \
            or self._top("TxDefaultProfile", 0, t_s)
        out = hw_max_a if chosen is None else chosen.limit_a(volts, phases)
        cap = self._top("ChargePointMaxProfile", 0, t_s)
        if cap is not None:
            out = min(out, cap.limit_a(volts, phases))
        return max(0.0, min(out, hw_max_a))


class SimEv:
    """A car behind a simulated charger, moved by ``ampshare.sim.ev`` (the shared EV model:
    reaction delay, taper, minimum pilot), advanced piecewise so that a pilot change due in
    the middle of an interval takes effect at its own time."""

    def __init__(self, spec: EvSpec, t_s: float, volts: float, soc_pct: float) -> None:
        self.volts = volts
        stored = spec.capacity_wh * soc_pct / 100.0
        self.state: EvState = ev_plug_in(spec, stored_wh=stored,
                                         wanted_wh=spec.capacity_wh - stored)
        self._t_s = t_s

    def offer(self, pilot_a: float, t_s: float) -> None:
        self.advance(t_s)
        self.state = ev_follow_pilot(self.state, pilot_a, t_s)

    def advance(self, t_s: float) -> None:
        while self._t_s < t_s:
            due = [d for d, _ in self.state.queued if d > self._t_s]
            end = min([t_s, *due])
            self.state = ev_step(self.state, self._t_s, end - self._t_s, self.volts)
            self._t_s = end
        self.state = ev_step(self.state, self._t_s, 0.0, self.volts)  # obey what is due now

    def current_a(self, t_s: float) -> float:
        self.advance(t_s)
        return self.state.draw_a

    @property
    def energy_wh(self) -> float:
        return self.state.delivered_wh

    @property
    def soc_pct(self) -> float:
        return 100.0 * self.state.stored_wh / self.state.spec.capacity_wh
