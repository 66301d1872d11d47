"""Run a scenario on virtual time: the world ticks, the controller steps when its Trigger says.

Each tick of ``tick_s``: scenario events due now are applied, commands in flight reach their
chargers, every car follows its pilot (after its reaction delay) and draws, the exact line
currents of every node are measured against the limits in force, meters and chargers report
when their period is due, and the controller steps when the ``Trigger`` says so.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ampshare.clock import VirtualClock
from ampshare.control import (
    CommandAck,
    ControlInputs,
    ControllerState,
    Event,
    Trigger,
    initial_state,
    rebuild_state,
    step,
)
from ampshare.core.snapshot import ChargerState, ExternalCap, MeterReading
from ampshare.scenario._load import Scenario
from ampshare.scenario._metrics import LineStats
from ampshare.scenario._model import ScenarioEvent
from ampshare.scenario._world import World, per_line

__all__ = ["RunResult", "Trace", "run_scenario"]

LINES = ("L1", "L2", "L3")


@dataclass(slots=True)
class Trace:
    """Per tick: time, node line currents and limits (nodes x 3), each charger's enforced
    limit and its car's draw."""

    t_s: list[float] = field(default_factory=list)
    node_a: list[np.ndarray] = field(default_factory=list)
    limit_a: list[np.ndarray] = field(default_factory=list)
    charger_limit_a: dict[str, list[float]] = field(default_factory=dict)
    charger_draw_a: dict[str, list[float]] = field(default_factory=dict)

    def add(self, rel_s: float, mags: np.ndarray, limits: np.ndarray, world: World) -> None:
        self.t_s.append(rel_s)
        self.node_a.append(mags.copy())
        self.limit_a.append(limits)
        for cid, sc in world.chargers.items():
            self.charger_limit_a.setdefault(cid, []).append(
                sc.effective_limit_a(world.start_s + rel_s)
            )
            self.charger_draw_a.setdefault(cid, []).append(sc.ev.draw_a if sc.ev else 0.0)


@dataclass(slots=True)
class RunResult:
    """Everything a run measured; ``checks`` are filled in by ``evaluate``."""

    name: str
    lines: dict[str, dict[str, LineStats]]
    chargers: dict[str, dict[str, float]]
    events: list[Event]
    steps: int
    commands: int
    wall_s: float
    snapshots: dict[float, dict[str, Any]] = field(default_factory=dict)
    limit_history: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    checks: list[dict[str, Any]] = field(default_factory=list)
    step_times_s: list[float] = field(default_factory=list)
    trace: Trace | None = None

    @property
    def passed(self) -> bool:
        return all(c["passed"] for c in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.name,
            "passed": self.passed,
            "nodes": {n: {ln: s.as_dict() for ln, s in d.items()} for n, d in self.lines.items()},
            "chargers": self.chargers,
            "expectations": self.checks,
            "steps": self.steps,
            "commands": self.commands,
            "wall_s": round(self.wall_s, 3),
            "events": [
                {
                    "t_s": e.t_s,
                    "kind": e.kind.value,
                    "severity": e.severity.value,
                    "subject": e.subject,
                    "message": e.message,
                }
                for e in self.events
            ],
        }


def _reading_lines(
    value: float | tuple[float | None, float | None, float | None],
) -> tuple[float | None, float | None, float | None]:
    if isinstance(value, int | float):
        return per_line(value)
    return value


def _first_reports(sc: Scenario, start_s: float) -> dict[str, float]:
    """When each charger first reports: ``charger_report_offset_s`` after the start, and
    with ``charger_report_stagger`` charger k of n a further k/n of the period later."""
    physics = sc.decl.physics
    ids = [c.id for c in sc.site.chargers]
    stagger = physics.charger_report_stagger and ids
    spread = physics.charger_report_s / len(ids) if stagger else 0.0
    return {
        cid: start_s + physics.charger_report_offset_s + k * spread for k, cid in enumerate(ids)
    }


def _expand(events: list[ScenarioEvent]) -> list[tuple[float, ScenarioEvent]]:
    out: list[tuple[float, ScenarioEvent]] = []
    for e in events:
        times = 1 if e.repeat is None else e.repeat.times
        every = 0.0 if e.repeat is None else e.repeat.every_s
        out.extend((e.at_s + k * every, e) for k in range(times))
    return sorted(out, key=lambda p: p[0])


class _Run:
    """One run's moving parts (world, controller, pending inputs, statistics)."""

    def __init__(self, sc: Scenario, *, trace: bool = False) -> None:
        d = sc.decl
        self.sc = sc
        self.trace = Trace() if trace else None
        self.clock = VirtualClock(d.start_s)
        self.world = World(sc.site, d.physics, d.start_s)
        for nid, v in d.building_a.items():
            self.world.set_building(nid, v)
        for ev in d.evs:
            self.world.arrive(ev, d.start_s)
        self.state: ControllerState = initial_state(sc.site, sc.settings)
        self.trigger = Trigger(sc.settings)
        self.readings: list[MeterReading] = []
        self.reports: list[ChargerState] = []
        self.acks: list[CommandAck] = []
        self.caps: list[ExternalCap] = []
        self.caps_changed = False
        self.last_reports: dict[str, ChargerState] = {}
        self.last_readings: dict[str, MeterReading] = {}
        self.next_poll = {m.id: d.start_s for m in sc.site.meters}
        self.next_report = _first_reports(sc, d.start_s)
        self.reported_draw: dict[str, float] = {}
        self.events: list[Event] = []
        self.steps = 0
        self.step_times: list[float] = []
        self.commands = 0
        self.stats = self._stats()
        self.snap_times = sorted(
            {e.all_charging_by.at_s for e in d.expect if e.all_charging_by is not None}
        )
        self.snapshots: dict[float, dict[str, Any]] = {}

    def _stats(self) -> dict[str, dict[str, LineStats]]:
        present = [ln.index for ln in self.sc.site.voltage.lines]
        out: dict[str, dict[str, LineStats]] = {}
        for n in self.sc.site.nodes:
            out[n.id] = {LINES[k]: LineStats(limit_a=n.line_limit_a[k]) for k in present}
            if n.primary is not None:
                out[n.id].update(
                    {
                        f"primary {LINES[k]}": LineStats(limit_a=n.primary.line_limit_a)
                        for k in range(3)
                    }
                )
        return out

    # --- scenario events -------------------------------------------------------------------

    def apply(self, e: ScenarioEvent, now_s: float) -> None:
        w = self.world
        act = e.action
        if e.building_a is not None:
            for nid, v in e.building_a.items():
                w.set_building(nid, v)
        elif e.ev_arrives is not None:
            w.arrive(e.ev_arrives, now_s)
        elif e.ev_leaves is not None:
            w.leave(e.ev_leaves)
        elif act in ("charger_offline", "charger_online"):
            cid = str(getattr(e, act))
            w.set_online(cid, act == "charger_online")
            self._report(cid, now_s)
        elif act in ("charger_ignores_limit", "charger_obeys_limit"):
            w.set_ignores(str(getattr(e, act)), act == "charger_ignores_limit")
        elif e.meter_stops is not None:
            w.stopped_meters.add(e.meter_stops)
        elif e.meter_resumes is not None:
            w.stopped_meters.discard(e.meter_resumes)
        elif e.meter_reading is not None:
            r = MeterReading(
                meter_id=e.meter_reading.meter,
                t_s=now_s,
                current_a=_reading_lines(e.meter_reading.current_a),
            )
            self.readings.append(r)
            self.trigger.notify(now_s)
        elif e.external_cap is not None:
            c = e.external_cap
            until = None if c.until_s is None else self.sc.decl.start_s + c.until_s
            self.caps.append(
                ExternalCap(
                    source=c.source, node_id=c.node, line_limit_a=per_line(c.line_a), until_s=until
                )
            )
            self.caps_changed = True
            self.trigger.notify(now_s)
        elif e.controller_restart:
            self.restart(now_s)

    def restart(self, now_s: float) -> None:
        s = self.sc
        self.state = rebuild_state(
            s.site,
            s.settings,
            now_s=now_s,
            charger_states=self.last_reports.values(),
            readings=self.last_readings.values(),
            sessions=self.world.sessions(),
            external_caps=self.caps,
        )
        self.events.extend(self.state.recent_events)
        self.trigger = Trigger(s.settings)
        self.readings, self.reports, self.acks = [], [], []

    # --- periodic inputs -------------------------------------------------------------------

    def _report(self, cid: str, now_s: float) -> None:
        sim = self.world.chargers[cid]
        r = self.world.report(sim, now_s)
        self.reports.append(r)
        self.last_reports[cid] = r
        self.reported_draw[cid] = sim.ev.draw_a if sim.ev is not None else 0.0
        self.trigger.notify(now_s)

    def _charger_reports(self, now_s: float) -> None:
        """Each charger reports every ``charger_report_s`` from its first report on, and at
        once when its car's draw changes with ``charger_report_on_change``."""
        physics = self.sc.decl.physics
        for cid, sim in self.world.chargers.items():
            if now_s >= self.next_report[cid] - 1e-9:
                self.next_report[cid] = now_s + physics.charger_report_s
                if sim.online:
                    self._report(cid, now_s)
            elif physics.charger_report_on_change and sim.online:
                draw = sim.ev.draw_a if sim.ev is not None else 0.0
                if abs(draw - self.reported_draw.get(cid, 0.0)) > 1e-6:
                    self._report(cid, now_s)

    def poll(self, now_s: float, totals: np.ndarray) -> None:
        due = {m for m, t in self.next_poll.items() if now_s >= t - 1e-9}
        for m in self.sc.site.meters:
            if m.id in due:
                self.next_poll[m.id] = now_s + m.poll_interval_s
        for r in self.world.readings(now_s, totals, due):
            self.readings.append(r)
            self.last_readings[r.meter_id] = r
            self.trigger.notify(now_s)
        self._charger_reports(now_s)
        if self.world.sessions_changed:
            self.trigger.notify(now_s)

    def control(self, now_s: float) -> None:
        if not self.trigger.due(now_s):
            return
        w = self.world
        inputs = ControlInputs(
            readings=tuple(self.readings),
            charger_states=tuple(self.reports),
            acks=tuple(self.acks),
            sessions=w.sessions() if w.sessions_changed or self.steps == 0 else None,
            external_caps=tuple(self.caps) if self.caps_changed else None,
        )
        self.readings, self.reports, self.acks = [], [], []
        w.sessions_changed = self.caps_changed = False
        res = step(self.sc.site, self.sc.settings, self.sc.policy, self.state, inputs, now_s)
        self.state = res.state
        self.events.extend(res.events)
        self.steps += 1
        self.step_times.append(now_s - self.sc.decl.start_s)
        self.commands += len(res.commands)
        w.send(res.commands, now_s)
        self.trigger.ran(now_s, res.next_wakeup_s)

    # --- measurement -----------------------------------------------------------------------

    def _cap_limits(self, now_s: float) -> dict[str, tuple[float, float, float]]:
        out: dict[str, tuple[float, float, float]] = {}
        for c in self.caps:
            if c.line_limit_a is None or (c.until_s is not None and now_s >= c.until_s):
                continue
            prev = out.get(c.node_id, (math.inf,) * 3)
            out[c.node_id] = tuple(min(a, b) for a, b in zip(prev, c.line_limit_a, strict=True))  # type: ignore[assignment]
        return out

    def measure(self, now_s: float, dt_s: float, totals: np.ndarray) -> None:
        caps = self._cap_limits(now_s)
        mags = np.abs(totals)
        limits = np.full_like(mags, math.inf)
        for i, n in enumerate(self.sc.site.nodes):
            cap = caps.get(n.id, (math.inf,) * 3)
            for k in (ln.index for ln in self.sc.site.voltage.lines):
                lim = min(n.line_limit_a[k], cap[k])
                limits[i, k] = lim
                self.stats[n.id][LINES[k]].add(float(mags[i, k]), lim, dt_s)
        if self.trace is not None:
            self.trace.add(now_s - self.sc.decl.start_s, mags, limits, self.world)
        for nid, z in self.world.primary_phasors(totals).items():
            node = self.sc.site.node(nid)
            assert node.primary is not None
            for k in range(3):
                self.stats[nid][f"primary {LINES[k]}"].add(
                    float(abs(z[k])), node.primary.line_limit_a, dt_s
                )

    def snapshot(self, rel_s: float) -> None:
        waiting = [
            cid
            for cid, sc in self.world.chargers.items()
            if sc.ev is not None and not sc.ev.full and sc.ev.draw_a <= 0
        ]
        self.snapshots[rel_s] = {"not_charging": waiting}

    # --- the loop --------------------------------------------------------------------------

    def run(self) -> RunResult:
        d = self.sc.decl
        wall = time.perf_counter()
        timeline = _expand(d.events)
        i, n_ticks = 0, math.ceil(d.duration_s / d.tick_s - 1e-9)
        snaps = list(self.snap_times)
        for tick in range(n_ticks + 1):
            rel = tick * d.tick_s
            now = d.start_s + rel
            self.clock.set(now)
            while i < len(timeline) and timeline[i][0] <= rel + 1e-9:
                self.apply(timeline[i][1], now)
                i += 1
            self.acks.extend(self.world.deliver(now))
            self.world.advance(now, d.tick_s)
            totals = self.world.node_phasors()
            self.measure(now, d.tick_s, totals)
            while snaps and snaps[0] <= rel + 1e-9:
                self.snapshot(snaps.pop(0))
            self.poll(now, totals)
            self.control(now)
        return self._result(time.perf_counter() - wall)

    def _result(self, wall_s: float) -> RunResult:
        chargers = {
            cid: {"energy_wh": round(sc.energy_wh, 3), "starts": sc.starts, "stops": sc.stops}
            for cid, sc in self.world.chargers.items()
        }
        hist = {
            cid: [(t - self.sc.decl.start_s, lim) for t, lim in sc.limit_history]
            for cid, sc in self.world.chargers.items()
        }
        return RunResult(
            name=self.sc.decl.name,
            lines=self.stats,
            chargers=chargers,
            events=self.events,
            steps=self.steps,
            commands=self.commands,
            wall_s=wall_s,
            snapshots=self.snapshots,
            limit_history=hist,
            step_times_s=self.step_times,
            trace=self.trace,
        )


def run_scenario(sc: Scenario, *, trace: bool = False) -> RunResult:
    """Run ``sc`` to its end; expectations are checked by ``evaluate``. ``trace`` keeps every
    tick's line currents, limits, pilots and draws (for ``plot_result``)."""
    return _Run(sc, trace=trace).run()
