"""The replay loop: sessions and building load on virtual time through a controller and the
EV physics of ``ampshare.sim.ev``.

Time advances on a grid of ``step_s``, and also stops at every arrival and departure: a
car plugs in and out at its true time and the controller decides then, as it does live when a
charger reports the change (a car arriving just after a grid time would otherwise wait up to a
whole step, a departed car's current stay unused as long). At each stop departures and
arrivals are applied, the simulated meter and chargers report, the controller decides, the
chargers apply the new pilots and the cars follow them after their reaction time
(``ampshare.sim.ev``). Inside a step time is cut into segments at every pilot change a car
obeys, and a second decision runs once the reaction time has passed, so that the controller's
decrease-before-increase sequencing plays out as it would live. Every segment's exact line
currents (``_compiled``) are checked against every limit as the replay goes.

Idle stretches (no car plugged) are skipped in one jump, but the building load inside them is
still sampled at its own resolution, so peaks and violations caused by the building alone
are counted.

A stationary battery (``battery=``) sits at the root and is driven as live: the same
``core.planner.BatteryDriver`` bounds the plan's battery power by each decision's allocation,
reserves a rise as load before sending it, and has its discharge added back to the meter's
readings (the controller never counts on it). With a battery the replay steps on its grid
even while no car is plugged in, since the battery works then too.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ampshare.core.allocation import Policy
from ampshare.core.planner import MIN_COMMAND_W, BatteryDriver, uncredited
from ampshare.core.planner import Battery as BatteryModel
from ampshare.core.site import Connection, Site
from ampshare.core.snapshot import ChargerState, ChargerStatus, MeterReading, Session
from ampshare.errors import InputError
from ampshare.sim._compiled import compile_site
from ampshare.sim._plant import Battery as _Battery
from ampshare.sim._plant import Building as _Building
from ampshare.sim._plant import Recorder as _Recorder
from ampshare.sim._plant import metered_site
from ampshare.sim._types import BatteryState, EvOptions, PlanProvider, PlanView, Replay
from ampshare.sim.controllers import Controller, Decision, Pilot
from ampshare.sim.data import SessionRecord
from ampshare.sim.ev import EvSpec, EvState, ev_follow_pilot, ev_plug_in, ev_step
from ampshare.sim.series import TimeSeries

__all__ = ["EvOptions", "PlanProvider", "PlanView", "Replay", "metered_site", "run_replay"]

FloatArray = npt.NDArray[np.float64]
_MAX_FOLLOW_UPS = 6
# Draw changes smaller than this do not wake the controller on a quiet step: its reclaim
# threshold (ControlSettings.reclaim_below_a, 4 A) is coarser anyway.
_DRAW_BIN_A = 2.0


@dataclass(slots=True)
class _Plug:
    rec: SessionRecord
    index: int  # position in the session list
    charger: int
    ev: EvState
    pilot_a: float = 0.0
    lease_until_s: float = math.inf
    avg_a: float = 0.0  # mean current over the last segment (energy-true, for the records)
    charging: bool = False  # pilot > 0 at the last decision
    starts: int = 0  # times the pilot went 0 -> >0 for a car that wanted energy
    stops: int = 0  # times it went >0 -> 0 while the car still wanted energy


@dataclass(frozen=True, slots=True)
class _StationaryBattery:
    """The simulated battery (``plant``) and what drives it as ``app._battery`` does live
    (``driver``): one exists only with the other."""

    plant: _Battery
    driver: BatteryDriver


class _Loop:
    """One replay; state lives here so that each phase is a small method."""

    def __init__(
        self,
        site: Site,
        records: Sequence[SessionRecord],
        *,
        controller: Controller,
        policy: Policy,
        building: _Building,
        ev_opts: EvOptions,
        step_s: float,
        keep_ev: bool,
    ) -> None:
        self.site = site
        self.cs = compile_site(site, building_node_id=site.meters[0].node_id)
        self.records = tuple(records)
        self.controller = controller
        self.policy = policy
        self.building = building
        self.ev_opts = ev_opts
        self.step_s = step_s
        self.rec = _Recorder(keep_ev=keep_ev)
        n_ch = len(site.chargers)
        self.plugs: dict[int, _Plug] = {}  # charger index -> plug
        self.fallback_a = np.zeros(n_ch)
        # What each charger was last told and until when, plugged or not: a car plugging in
        # starts at once at the leased limit in force (else the fallback), as it would live.
        self.held_a = np.zeros(n_ch)
        self.held_until_s = np.full(n_ch, -math.inf)
        self.delivered = np.zeros(len(self.records))
        self.charger_of = np.full(len(self.records), -1, dtype=np.int64)
        self.ids = {c.id: j for j, c in enumerate(site.chargers)}
        self.next_free = 0
        self.freed: set[int] = set()  # unplugged since the last report: they report Available
        self.start_stops = 0
        self.decisions = 0
        self.max_quiet_s = 300.0
        self.last_decision_s = -math.inf
        self.last_obs: tuple[object, ...] = ()
        self.wake_s: float | None = None  # when the last decision asked to run again
        self.plan_provider: PlanProvider | None = None
        self.replan_s = 900.0
        self.next_plan_s = -math.inf
        self.plan_view = PlanView(targets_a={})
        self.lines_of: dict[tuple[int, bool], tuple[int, ...]] = {}
        self.battery: _StationaryBattery | None = None
        self._bat_w = (0.0, 0.0)  # the segment being recorded: battery power at start, mean
        self._metered_w: float | None = None  # the meter's last power reading

    def add_battery(self, model: BatteryModel, hold_s: float) -> None:
        """A stationary battery at the root, starting at ``model.soc_wh``."""
        if self.site.meters[0].node_id != self.site.root.id:
            raise InputError(
                f"a simulated battery sits at the site's root ({self.site.root.id}), but the "
                f"building meter is at {self.site.meters[0].node_id}: meter the root"
            )
        self.battery = _StationaryBattery(
            plant=_Battery(model=model, soc_wh=model.soc_wh),
            driver=BatteryDriver(model=model, site=self.site, hold_s=hold_s),
        )

    def _battery_a(self, power_w: float) -> FloatArray | None:
        """A balanced battery's current per line [A] (negative: discharging), as the one step
        ``CompiledSite.row_currents_a`` takes; None without a battery."""
        if self.battery is None:
            return None
        b = self.building
        return np.array([power_w / (b.n_lines * b.v_ln)])

    # --- plugging -------------------------------------------------------------------------
    def _free_charger(self, station_id: str) -> int | None:
        j = self.ids.get(station_id)
        if j is not None and j not in self.plugs:
            return j
        n = len(self.site.chargers)
        for k in range(n):  # round robin, so that unknown stations spread over the site
            cand = (self.next_free + k) % n
            if cand not in self.plugs:
                self.next_free = (cand + 1) % n
                return cand
        return None

    def _ev_spec(self, j: int, wanted_wh: float) -> tuple[EvSpec, float]:
        ch = self.site.chargers[j]
        o = self.ev_opts
        phases = (
            o.phases
            if ch.connection is Connection.THREE_PHASE and o.phases
            else (3 if ch.connection is Connection.THREE_PHASE else 1)
        )
        cap = max(o.capacity_wh, wanted_wh / o.target_soc)
        spec = EvSpec(
            max_current_a=o.max_current_a or ch.max_current_a,
            phases=phases,
            capacity_wh=cap,
            reaction_s=o.reaction_s,
            basic=o.basic,
        )
        return spec, cap * o.target_soc - wanted_wh

    def arrive(self, i: int, now_s: float) -> bool:
        rec = self.records[i]
        j = self._free_charger(rec.station_id)
        if j is None:
            return False
        spec, stored = self._ev_spec(j, rec.energy_wh)
        ev = ev_plug_in(spec, stored_wh=stored, wanted_wh=rec.energy_wh)
        leased = now_s < self.held_until_s[j]
        offer = float(self.held_a[j] if leased else self.fallback_a[j])
        self.plugs[j] = _Plug(
            rec=rec,
            index=i,
            charger=j,
            ev=ev_follow_pilot(ev, offer, now_s) if offer > 0 else ev,
            pilot_a=offer,
            lease_until_s=float(self.held_until_s[j]) if leased else math.inf,
            charging=offer > 0,
            starts=int(offer > 0),
        )
        self.charger_of[i] = j
        return True

    def depart(self, now_s: float) -> bool:
        gone = [j for j, p in self.plugs.items() if p.rec.departure_s <= now_s]
        for j in gone:
            self.freed.add(j)
            p = self.plugs.pop(j)
            self.delivered[p.index] = p.ev.delivered_wh
            self.start_stops += p.starts - (1 if p.starts else 0) + p.stops
        return bool(gone)

    def next_departure(self, now_s: float) -> float:
        """The first true departure after ``now_s`` among the plugged cars."""
        later = (p.rec.departure_s for p in self.plugs.values() if p.rec.departure_s > now_s)
        return min(later, default=math.inf)

    # --- what the devices report ------------------------------------------------------------
    def _currents(self, avg: bool = False) -> tuple[FloatArray, FloatArray, npt.NDArray[np.bool_]]:
        """Per-charger draw per phase: on the whole connection, on one phase only. ``avg``:
        the mean over the last segment instead of the draw now."""
        n = len(self.site.chargers)
        full, single = np.zeros(n), np.zeros(n)
        is_single = np.zeros(n, dtype=bool)
        for j, p in self.plugs.items():
            three = self.site.chargers[j].connection is Connection.THREE_PHASE
            amps = p.avg_a if avg else p.ev.draw_a
            if three and p.ev.spec.phases == 1:
                single[j] = amps
                is_single[j] = True
            else:
                full[j] = amps
        return full, single, is_single

    def _line_indices(self, j: int, one_phase_car: bool) -> tuple[int, ...]:
        """The site lines charger ``j`` loads (a one-phase car on a three-phase charger: the
        charger's L1), remembered: this is asked for every plugged car at every report."""
        key = (j, one_phase_car)
        hit = self.lines_of.get(key)
        if hit is None:
            ch = self.site.chargers[j]
            one = one_phase_car and ch.connection is Connection.THREE_PHASE
            hit = tuple(ln.index for ln in ch.site_lines(Connection.L1 if one else None))
            self.lines_of[key] = hit
        return hit

    def _charger_states(self, now_s: float) -> tuple[ChargerState, ...]:
        out = [
            ChargerState(
                charger_id=self.site.chargers[j].id,
                t_s=now_s,
                status=ChargerStatus.AVAILABLE,
                measured_current_a=(0.0, 0.0, 0.0),
                offered_current_a=0.0,
                power_w=0.0,
            )
            for j in sorted(self.freed)
            if j not in self.plugs
        ]
        self.freed.clear()
        return (*out, *self._plug_states(now_s))

    def _plug_states(self, now_s: float) -> list[ChargerState]:
        """What each charger with a car plugged in reports."""
        out = []
        for j, p in self.plugs.items():
            ch = self.site.chargers[j]
            meas = [0.0, 0.0, 0.0]
            for k in self._line_indices(j, p.ev.spec.phases == 1):
                meas[k] = p.ev.draw_a
            status = (
                ChargerStatus.CHARGING
                if p.ev.draw_a > 0
                else ChargerStatus.SUSPENDED_EV
                if p.ev.full
                else ChargerStatus.SUSPENDED_EVSE
            )
            out.append(
                ChargerState(
                    charger_id=ch.id,
                    t_s=now_s,
                    status=status,
                    measured_current_a=(meas[0], meas[1], meas[2]),
                    offered_current_a=p.pilot_a,
                    power_w=float(self.cs.volts_v[j]) * p.ev.draw_a * p.ev.spec.phases,
                    energy_wh=p.ev.delivered_wh,
                    active_phases=p.ev.spec.phases,
                    installed_limit_a=p.pilot_a,
                )
            )
        return out

    def _sessions(self) -> tuple[Session, ...]:
        # Only what a real controller can know: never the true departure.
        return tuple(
            Session(
                session_id=p.rec.session_id,
                charger_id=self.site.chargers[j].id,
                arrival_s=p.rec.arrival_s,
                departure_s=p.rec.declared_departure_s,
                energy_wanted_wh=p.rec.declared_energy_wh,
                energy_delivered_wh=p.ev.delivered_wh,
                user_id=p.rec.user_id,
            )
            for j, p in sorted(self.plugs.items())
        )

    def _readings(self, now_s: float) -> tuple[MeterReading, ...]:
        full, single, _ = self._currents()
        line_a, bld_kw = self.building.at(now_s)
        bat_w = self.battery.plant.power_w if self.battery is not None else 0.0
        bld_kw += bat_w / 1000.0
        meter = self.site.meters[0]
        rows = self.cs.row_currents_a(
            full[None, :], single[None, :], line_a[None, :], self._battery_a(bat_w)
        )[0]
        node_rows = [
            k for k, lab in enumerate(self.cs.labels) if lab.startswith(meter.node_id + "/L")
        ]
        cur = [0.0, 0.0, 0.0]
        for k in node_rows:
            cur[int(self.cs.labels[k][-1]) - 1] = float(rows[k])
        ev_kw = float(self.cs.power_w(full[None, :], single[None, :])[0]) / 1000.0
        reading = MeterReading(
            meter_id=meter.id,
            t_s=now_s,
            current_a=(cur[0], cur[1], cur[2]),
            power_w=(bld_kw + ev_kw) * 1000.0,
        )
        self._metered_w = reading.power_w  # the import as metered (bounds a discharge)
        if self.battery is not None:  # the controller never counts on the battery
            add = self.battery.driver.load_to_add_w(now_s)
            reading = uncredited(reading, add, self.site.voltage.line_to_neutral_v)
        return (reading,)

    # --- deciding --------------------------------------------------------------------------
    def _policy(self, now_s: float, sessions: tuple[Session, ...], changed: bool) -> Policy:
        if self.plan_provider is None:
            return self.policy
        if changed or now_s >= self.next_plan_s:
            states = tuple(self._plug_states(now_s))
            rotation = self.controller.rotation
            if self.battery is not None:
                b = self.battery.plant
                state = BatteryState(soc_wh=b.soc_wh, net_wh=b.charged_wh - b.discharged_wh)
                got = self.plan_provider(
                    now_s, self.site, sessions, states, rotation=rotation, battery=state
                )
            else:
                got = self.plan_provider(now_s, self.site, sessions, states, rotation=rotation)
            self.plan_view = got if isinstance(got, PlanView) else PlanView(targets_a=dict(got))
            self.next_plan_s = now_s + self.replan_s
        view = self.plan_view
        return dataclasses.replace(
            self.policy, planned_targets_a=dict(view.targets_a), planned_ceiling_w=view.ceiling_w
        )

    def decide(self, now_s: float, changed: bool) -> float | None:
        """Run the controller and apply its pilots; returns when it wants to run again."""
        sessions = self._sessions()
        policy = self._policy(now_s, sessions, changed)
        if self.battery is not None:
            self.battery.driver.latest = self.battery.plant.reading(now_s)
        d = self.controller.decide(
            now_s, policy, sessions, self._charger_states(now_s), self._readings(now_s)
        )
        if self.battery is not None:
            wake = self._drive_battery(self.battery, now_s, policy, sessions, d)
            d = dataclasses.replace(d, wakeup_s=wake)
        self.wake_s = d.wakeup_s
        self.decisions += 1
        self.last_decision_s = now_s
        for cid, fb in d.fallbacks_a.items():
            self.fallback_a[self.ids[cid]] = fb
        for cid, pilot in d.pilots.items():
            self.held_a[self.ids[cid]] = pilot.limit_a
            self.held_until_s[self.ids[cid]] = pilot.lease_until_s
            p = self.plugs.get(self.ids[cid])
            if p is not None:
                self._apply(p, pilot, now_s)
        return d.wakeup_s

    def _drive_battery(
        self,
        battery: _StationaryBattery,
        now_s: float,
        policy: Policy,
        sessions: tuple[Session, ...],
        d: Decision,
    ) -> float | None:
        """The battery's command after the decision (as ``app._battery`` does live); returns
        the decision's wake-up, brought forward to when a reserved rise may go out."""
        drv = battery.driver
        cmd = drv.decide(
            now_s,
            self.plan_view.battery_w(now_s),
            d.allocation,
            targets_a=policy.planned_targets_a,
            charger_of={s.session_id: s.charger_id for s in sessions},
            ceiling_w=policy.planned_ceiling_w,
            metered_import_w=self._metered_w,
        )
        if drv.due(now_s, cmd):
            battery.plant.set(cmd.power_w)
            drv.sent(cmd.power_w, now_s)
        wake = d.wakeup_s
        if drv.reserved_w > max(0.0, drv.sent_w or 0.0):  # a rise waits for the cars
            rise = drv.reserved_s + drv.hold_s
            wake = rise if wake is None else min(wake, rise)
        return wake

    def _apply(self, p: _Plug, pilot: Pilot, now_s: float) -> None:
        on = pilot.limit_a > 0
        if on and not p.charging and not p.ev.full:  # a probe of a full car starts nothing
            p.starts += 1
        elif p.charging and not on and not p.ev.full:
            p.stops += 1
        p.charging = on
        p.pilot_a = pilot.limit_a
        p.lease_until_s = pilot.lease_until_s
        p.ev = ev_follow_pilot(p.ev, pilot.limit_a, now_s)

    def _observation(self, now_s: float) -> tuple[object, ...]:
        """What the controller would be shown, coarsened: plugged chargers, draws to 2 A bins,
        building per line to 0.1 A."""
        line_a, _ = self.building.at(now_s)
        draws = tuple((j, round(p.ev.draw_a / _DRAW_BIN_A)) for j, p in sorted(self.plugs.items()))
        return draws, tuple(np.round(line_a, 1).tolist())

    def quiet(self, now_s: float) -> bool:
        """True when a decision now would see what the last one saw, no lease needs renewing
        within the next step, no car waits for current, no re-plan is due, the controller did
        not ask to run within the step and the last decision is less than ``max_quiet_s`` old:
        then the grid step runs without calling the controller (it is event-driven live,
        too)."""
        if now_s - self.last_decision_s >= self.max_quiet_s:
            return False
        if self.wake_s is not None and self.wake_s < now_s + self.step_s:
            return False  # the controller asked to run within this step
        if self.plan_provider is not None and now_s >= self.next_plan_s:
            return False  # a re-plan is due
        if any(p.pilot_a <= 0 and not p.ev.full for p in self.plugs.values()):
            return False  # a car waits: rotation and retries are due on the controller's time
        if any(p.lease_until_s - now_s < 1.5 * self.step_s for p in self.plugs.values()):
            return False
        if self.battery is not None:
            planned = self.plan_view.battery_w(now_s)
            if self.battery.plant.power_w != 0.0 or (
                planned is not None and abs(planned) >= MIN_COMMAND_W
            ):
                return False  # the battery works: its command follows every step
        return self._observation(now_s) == self.last_obs

    def _expire_leases(self, now_s: float) -> None:
        """A charger whose lease ran out falls back to its installed default."""
        for j, p in self.plugs.items():
            if now_s >= p.lease_until_s:
                p.pilot_a = float(self.fallback_a[j])
                p.lease_until_s = math.inf
                p.ev = ev_follow_pilot(p.ev, p.pilot_a, now_s)

    # --- physics ---------------------------------------------------------------------------
    def advance(self, t0: float, t1: float) -> None:
        """Move every car from ``t0`` to ``t1``, recording one segment per pilot change."""
        now = t0
        while now < t1 - 1e-9:
            due = [q[0] for p in self.plugs.values() for q in p.ev.queued if now + 1e-9 < q[0] < t1]
            nxt = min([t1, *due])
            self._segment(now, nxt)
            now = nxt

    def _segment(self, a: float, b: float) -> None:
        for p in self.plugs.values():
            dt = max(0.0, min(b, p.rec.departure_s) - a)
            volts = float(self.cs.volts_v[p.charger])
            before = p.ev.delivered_wh
            p.ev = ev_step(p.ev, a, dt, volts)
            # The car may fill up or leave inside the segment: record the current that
            # carries the energy it really took over the whole segment.
            p.avg_a = (p.ev.delivered_wh - before) * 3600.0 / (volts * p.ev.spec.phases * (b - a))
            if dt <= 0:
                p.ev = dataclasses.replace(p.ev, draw_a=0.0)
        if self.battery is not None:
            at_start = self.battery.plant.power_w
            self._bat_w = (at_start, self.battery.plant.step(b - a))
        self._record(a, b - a)

    def _record(self, t: float, dt: float) -> None:
        # Limits are checked against the current held at the segment's start (the peak inside
        # it); power and energy use the energy-true mean.
        full, single, is_single = self._currents()
        line_a, bld_kw = self.building.at(t)
        # the battery: its power at the segment's start loads the rows, its mean the site kW
        bat_now, bat_mean = self._bat_w if self.battery is not None else (0.0, 0.0)
        rows = self.cs.row_currents_a(
            full[None, :], single[None, :], line_a[None, :], self._battery_a(bat_now)
        )[0]
        fa, sa, _ = self._currents(avg=True)
        ev_kw = float(self.cs.power_w(fa[None, :], sa[None, :])[0]) / 1000.0
        self.rec.add(
            t=t,
            dt=dt,
            rows=rows,
            site_kw=bld_kw + ev_kw + bat_mean / 1000.0,
            battery_kw=bat_mean / 1000.0,
            battery_soc_kwh=0.0 if self.battery is None else self.battery.plant.soc_wh / 1000.0,
            bld=(line_a, bld_kw),
            ev=full + single,
            single=is_single,
        )

    def idle(self, a: float, b: float) -> None:
        """No car plugged from ``a`` to ``b``: record the building load at its own stamps."""
        marks = [a, *self.building.stamps_between(a, b), b]
        for s, e in itertools.pairwise(marks):
            self._record(s, e - s)


def _grid_up(t: float, start: float, step: float) -> float:
    """The first grid time after ``t`` (strictly)."""
    return start + (math.floor((t - start) / step + 1e-9) + 1) * step


def _step(loop: _Loop, t: float, t_end: float, changed: bool) -> bool:
    """One grid step: a decision, then follow-ups the controller asks for inside the step
    (at most a few: sequencing needs one per decrease-then-increase round, a probe of a full
    car three or four: the car's report, the reclaim timer, the increases to the others).
    Returns whether a decision ran (see ``_Loop.quiet``)."""
    loop._expire_leases(t)
    if not changed and loop.quiet(t):
        loop.advance(t, t_end)
        return False
    wake = loop.decide(t, changed)
    now = t
    for _ in range(_MAX_FOLLOW_UPS):
        if wake is None or wake >= t_end - 1e-9:
            break
        wake = max(wake, now + 1e-3)
        loop.advance(now, wake)
        now = wake
        wake = loop.decide(now, False)
    loop.advance(now, t_end)
    # What the step ended with (the cars have obeyed the new pilots by now) is what the next
    # step compares against.
    loop.last_obs = loop._observation(t_end)
    return True


def _run(loop: _Loop, start: float, end: float, progress: Callable[[float], None] | None) -> int:
    """The event loop; returns the number of grid steps replayed with a car plugged in.

    A step runs from ``t`` to the next grid time, or to the next arrival or departure when one
    comes first; the step from that event then runs to the same grid time, so the grid stays
    where it is and only the events are added to it."""
    recs, n = loop.records, len(loop.records)
    t, i, steps = start, 0, 0
    while i < n and recs[i].arrival_s < start:
        i += 1  # arrived before the window: not replayed
    while t < end - 1e-9:
        changed = loop.depart(t)
        while i < n and recs[i].arrival_s <= t + 1e-9:
            changed |= loop.arrive(i, t)
            i += 1
        nxt_arrival = recs[i].arrival_s if i < n else math.inf
        if not loop.plugs and loop.battery is None:
            nxt = min(end, nxt_arrival)
            loop.idle(t, nxt)
            t = nxt
            continue
        grid = _grid_up(t, start, loop.step_s)
        t_end = min(grid, nxt_arrival, loop.next_departure(t), end)
        _step(loop, t, t_end, changed)
        t = t_end
        if t_end < grid - 1e-9:
            continue  # an event inside the grid step: the step goes on from it
        steps += 1
        if progress is not None and steps % 500 == 0:
            progress(t)
    loop.depart(math.inf)
    return steps


def run_replay(
    site: Site,
    records: Sequence[SessionRecord],
    controller: Callable[[Site], Controller],
    policy: Policy,
    *,
    building: TimeSeries | None = None,
    pv: TimeSeries | None = None,
    ev: EvOptions | None = None,
    step_s: float = 60.0,
    start_s: float | None = None,
    end_s: float | None = None,
    keep_ev: bool = False,
    plan_provider: PlanProvider | None = None,
    replan_s: float = 900.0,
    max_quiet_s: float = 300.0,
    progress: Callable[[float], None] | None = None,
    battery: BatteryModel | None = None,
    battery_hold_s: float = 7.0,
) -> Replay:
    """Replay ``records`` (arrival order) on ``site`` with the controller that
    ``controller(site)`` builds (it gets the site with the simulator's meter added)."""
    wall0 = time.perf_counter()
    msite, _ = metered_site(site)
    loop = _Loop(
        msite,
        records,
        controller=controller(msite),
        policy=policy,
        building=_Building(msite, building, pv),
        ev_opts=ev or EvOptions(),
        step_s=step_s,
        keep_ev=keep_ev,
    )
    loop.plan_provider, loop.replan_s = plan_provider, replan_s
    loop.max_quiet_s = max_quiet_s
    if battery is not None:
        loop.add_battery(battery, battery_hold_s)
    first = min(r.arrival_s for r in records)
    start = start_s if start_s is not None else math.floor(first / step_s) * step_s
    end = end_s if end_s is not None else max(r.departure_s for r in records)
    steps = _run(loop, start, end, progress)
    rec = loop.rec
    return Replay(
        compiled=loop.cs,
        records=loop.records,
        seg_t_s=np.asarray(rec.t),
        seg_dt_s=np.asarray(rec.dt),
        seg_rows_a=np.asarray(rec.rows).reshape(len(rec.t), len(loop.cs.labels)),
        seg_site_kw=np.asarray(rec.site_kw),
        seg_building_kw=np.asarray(rec.bld_kw),
        seg_battery_kw=np.asarray(rec.battery_kw) if loop.battery is not None else None,
        seg_battery_soc_kwh=np.asarray(rec.battery_soc_kwh) if loop.battery is not None else None,
        seg_building_a=np.asarray(rec.bld_a).reshape(len(rec.t), 3),
        seg_ev_a=np.asarray(rec.ev) if keep_ev else None,
        seg_single=np.asarray(rec.single) if keep_ev else None,
        delivered_wh=loop.delivered,
        charger_of=loop.charger_of,
        start_stop_events=loop.start_stops,
        steps=steps,
        decisions=loop.decisions,
        wall_s=time.perf_counter() - wall0,
        battery_kwh=None
        if loop.battery is None
        else (loop.battery.plant.charged_wh / 1000.0, loop.battery.plant.discharged_wh / 1000.0),
    )
