"""The simulated world around the controller: building load, chargers, EVs and meters.

Mutable on purpose (it *is* the simulation's moving state); every physical rule it applies
comes from ``ampshare.sim.ev`` and ``ampshare.core.electrical``, so a scenario exercises the same
physics and accounting as the simulator.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from ampshare.control import (
    Command,
    CommandAck,
    InstallFallback,
    SetLimit,
    fallback_limits,
    index_site,
)
from ampshare.core.electrical import connection_phasors, line_phasors, primary_matrix
from ampshare.core.site import Charger, Connection, Site
from ampshare.core.snapshot import ChargerState, ChargerStatus, MeterReading, Session
from ampshare.errors import InputError
from ampshare.scenario._model import EvDecl, PerLineDecl, PhysicsDecl
from ampshare.sim.ev import EvSpec, EvState, ev_follow_pilot, ev_plug_in, ev_step, offered_pilot_a

__all__ = ["SimCharger", "World", "per_line"]

ComplexArray = npt.NDArray[np.complex128]


def per_line(value: PerLineDecl) -> tuple[float, float, float]:
    """A scalar means the same on every line."""
    if isinstance(value, int | float):
        return (float(value), float(value), float(value))
    return (float(value[0]), float(value[1]), float(value[2]))


@dataclass(slots=True)
class SimCharger:
    """One simulated charger and the car plugged into it (if any)."""

    charger: Charger
    phasor_by_phases: dict[int, ComplexArray]
    online: bool = True
    ignores_limit: bool = False
    limit_a: float | None = None
    lease_until_s: float = float("-inf")
    fallback_a: float | None = None
    ev: EvState | None = None
    session: Session | None = None
    inbox: list[tuple[float, Command]] = field(default_factory=list)
    energy_wh: float = 0.0
    starts: int = 0
    stops: int = 0
    drawing: bool = False
    limit_history: list[tuple[float, float]] = field(default_factory=list)

    def effective_limit_a(self, now_s: float) -> float:
        """The limit the charger enforces now: its lease, else its fallback, else its max."""
        if self.limit_a is not None and now_s < self.lease_until_s:
            return min(self.limit_a, self.charger.max_current_a)
        if self.fallback_a is not None:
            return self.fallback_a
        return self.charger.max_current_a

    def pilot_a(self, now_s: float) -> float:
        lease_ok = self.limit_a is not None and now_s < self.lease_until_s
        return offered_pilot_a(
            limit_a=self.limit_a if lease_ok else None,
            fallback_a=self.fallback_a
            if self.fallback_a is not None
            else self.charger.max_current_a,
            charger_max_a=self.charger.max_current_a,
            ignores_limit=self.ignores_limit,
        )

    def phasor(self) -> ComplexArray:
        """Per-line phasor of what the car draws now."""
        if self.ev is None or self.ev.draw_a <= 0:
            return self.phasor_by_phases[3] * 0.0
        return self.phasor_by_phases[self.ev.spec.phases] * self.ev.draw_a


class World:
    """Building load per node, chargers with cars, meters; advanced tick by tick."""

    def __init__(self, site: Site, physics: PhysicsDecl, start_s: float) -> None:
        self.site = site
        self.physics = physics
        self.start_s = start_s
        self.v_unit = line_phasors(site)
        # The site was commissioned: every charger already holds its safe fallback.
        fallback = fallback_limits(site, index_site(site))
        self.chargers = {
            c.id: SimCharger(
                charger=c,
                fallback_a=fallback[c.id],
                phasor_by_phases={
                    1: connection_phasors(site, c, 1),
                    3: connection_phasors(site, c, 3),
                },
            )
            for c in site.chargers
        }
        self.node_ids = [n.id for n in site.nodes]
        self._node_pos = {nid: i for i, nid in enumerate(self.node_ids)}
        self.below = self._below_matrix()
        self.building = np.zeros((len(self.node_ids), 3))
        self.stopped_meters: set[str] = set()
        self.sessions_changed = False
        self._session_seq = 0

    def _below_matrix(self) -> npt.NDArray[np.float64]:
        """below[i, j] = 1 when node j is node i or under it (building loads add up)."""
        m = np.zeros((len(self.node_ids), len(self.node_ids)))
        for n in self.site.nodes:
            for anc in self.site.ancestors(n.id):
                m[self._node_pos[anc], self._node_pos[n.id]] = 1.0
        return m

    # --- scenario actions ----------------------------------------------------------------

    def _get(self, charger_id: str) -> SimCharger:
        try:
            return self.chargers[charger_id]
        except KeyError:
            raise InputError(
                f"scenario names charger {charger_id!r}, which the site does not "
                f"have (chargers: {', '.join(self.chargers)})"
            ) from None

    def set_building(self, node_id: str, value: PerLineDecl) -> None:
        if node_id not in self._node_pos:
            raise InputError(
                f"scenario names node {node_id!r}, which the site does not have "
                f"(nodes: {', '.join(self.node_ids)})"
            )
        self.building[self._node_pos[node_id]] = per_line(value)

    def arrive(self, decl: EvDecl, now_s: float) -> None:
        sc = self._get(decl.charger)
        if sc.ev is not None:
            raise InputError(
                f"an EV arrives at charger {decl.charger!r} at "
                f"{now_s - self.start_s:g} s, but one is still plugged in"
            )
        reaction = decl.reaction_s if decl.reaction_s is not None else self.physics.ev_reaction_s
        # a car on a one-phase (or line-to-line) charger draws on one phase whatever it could do
        phases = decl.phases if sc.charger.connection is Connection.THREE_PHASE else 1
        spec = EvSpec(
            max_current_a=decl.max_a,
            phases=phases,
            capacity_wh=decl.capacity_kwh * 1000,
            reaction_s=reaction,
            taper_start_frac=decl.taper_start,
            basic=decl.basic,
        )
        sc.ev = ev_plug_in(
            spec, stored_wh=decl.soc * spec.capacity_wh, wanted_wh=decl.wanted_kwh * 1000
        )
        self._session_seq += 1
        dep = None if decl.departure_s is None else self.start_s + decl.departure_s
        sc.session = Session(
            session_id=f"s{self._session_seq}",
            charger_id=decl.charger,
            arrival_s=now_s,
            departure_s=dep,
            energy_wanted_wh=decl.wanted_kwh * 1000,
            priority=decl.priority,
        )
        self.sessions_changed = True

    def leave(self, charger_id: str) -> None:
        sc = self._get(charger_id)
        sc.ev, sc.session = None, None
        self.sessions_changed = True

    def set_online(self, charger_id: str, online: bool) -> None:
        self._get(charger_id).online = online

    def set_ignores(self, charger_id: str, ignores: bool) -> None:
        self._get(charger_id).ignores_limit = ignores

    def sessions(self) -> tuple[Session, ...]:
        return tuple(sc.session for sc in self.chargers.values() if sc.session is not None)

    # --- commands ------------------------------------------------------------------------

    def send(self, commands: tuple[Command, ...], now_s: float) -> None:
        """Commands reach online chargers after the command latency; offline ones lose them."""
        for cmd in commands:
            sc = self.chargers[cmd.charger_id]
            if sc.online:
                sc.inbox.append((now_s + self.physics.command_latency_s, cmd))

    def deliver(self, now_s: float) -> list[CommandAck]:
        acks = []
        for sc in self.chargers.values():
            if not sc.inbox or not sc.online:
                continue
            due = [(t, c) for t, c in sc.inbox if t <= now_s + 1e-9]
            sc.inbox = [(t, c) for t, c in sc.inbox if t > now_s + 1e-9]
            for _t, cmd in due:
                acks.append(self._apply(sc, cmd, now_s))
        return acks

    def _apply(self, sc: SimCharger, cmd: Command, now_s: float) -> CommandAck:
        if isinstance(cmd, InstallFallback):
            sc.fallback_a = cmd.limit_a
            return CommandAck(
                charger_id=sc.charger.id, t_s=now_s, limit_a=cmd.limit_a, fallback=True
            )
        assert isinstance(cmd, SetLimit)
        sc.limit_a, sc.lease_until_s = cmd.limit_a, cmd.lease_until_s
        return CommandAck(charger_id=sc.charger.id, t_s=now_s, limit_a=cmd.limit_a)

    # --- physics -------------------------------------------------------------------------

    def advance(self, now_s: float, dt_s: float) -> None:
        """Every car sees its pilot and draws over [now, now + dt)."""
        vln = self.site.voltage.line_to_neutral_v
        vll = self.site.voltage.line_to_line_v or vln
        for sc in self.chargers.values():
            lim = sc.effective_limit_a(now_s)
            if not sc.limit_history or abs(sc.limit_history[-1][1] - lim) > 1e-9:
                sc.limit_history.append((now_s, lim))
            if sc.ev is None:
                if sc.drawing:
                    sc.drawing, sc.stops = False, sc.stops + 1
                continue
            sc.ev = ev_follow_pilot(sc.ev, sc.pilot_a(now_s), now_s)
            volts = vll if sc.charger.connection.is_line_to_line else vln
            before = sc.ev.delivered_wh
            sc.ev = ev_step(sc.ev, now_s, dt_s, volts)
            sc.energy_wh += sc.ev.delivered_wh - before
            drawing = sc.ev.draw_a > 0
            if drawing != sc.drawing:
                sc.starts += drawing
                sc.stops += not drawing
                sc.drawing = drawing

    def node_phasors(self) -> ComplexArray:
        """Total line phasors at every node (building and EVs), shape (nodes, 3)."""
        ev = np.zeros((len(self.node_ids), 3), dtype=np.complex128)
        for sc in self.chargers.values():
            if sc.ev is not None and sc.ev.draw_a > 0:
                z = sc.phasor()
                for anc in self.site.ancestors(sc.charger.node_id):
                    ev[self._node_pos[anc]] += z
        building = (self.below @ self.building) * self.v_unit[np.newaxis, :]
        return ev + building

    def primary_phasors(self, totals: ComplexArray) -> dict[str, ComplexArray]:
        return {
            n.id: primary_matrix(n.primary) @ totals[self._node_pos[n.id]]
            for n in self.site.nodes
            if n.primary is not None
        }

    # --- what the controller hears ---------------------------------------------------------

    def readings(self, now_s: float, totals: ComplexArray, due: set[str]) -> list[MeterReading]:
        out = []
        for m in self.site.meters:
            if m.id not in due or m.id in self.stopped_meters:
                continue
            pos = self._node_pos[m.node_id]
            z = (
                totals[pos]
                if m.includes_ev_load
                else (self.below @ self.building)[pos] * self.v_unit
            )
            mags = np.abs(z)
            p = float(
                np.real(np.sum(self.site.voltage.line_to_neutral_v * self.v_unit * np.conj(z)))
            )
            out.append(
                MeterReading(
                    meter_id=m.id,
                    t_s=now_s,
                    power_w=p,
                    current_a=(float(mags[0]), float(mags[1]), float(mags[2])),
                )
            )
        return out

    def report(self, sc: SimCharger, now_s: float) -> ChargerState:
        if not sc.online:
            return ChargerState(
                charger_id=sc.charger.id, t_s=now_s, online=False, status=ChargerStatus.OFFLINE
            )
        mags = np.abs(sc.phasor())
        ev = sc.ev
        if ev is None:
            status = ChargerStatus.AVAILABLE
        elif ev.draw_a > 0:
            status = ChargerStatus.CHARGING
        else:
            status = ChargerStatus.SUSPENDED_EV if ev.full else ChargerStatus.SUSPENDED_EVSE
        return ChargerState(
            charger_id=sc.charger.id,
            t_s=now_s,
            online=True,
            status=status,
            measured_current_a=(float(mags[0]), float(mags[1]), float(mags[2])),
            offered_current_a=sc.pilot_a(now_s),
            installed_limit_a=sc.effective_limit_a(now_s),
            energy_wh=sc.energy_wh,
            active_phases=ev.spec.phases if ev else None,
        )
