"""The asyncio supervisor behind ``ampshare run``: chargers, meters and the control step, wired.

::

    meters --MeterCoordinator.on_reading--+
                                          +--> Trigger --> control.step --> commands
    chargers --ChargerLink.snapshot/wait--+                                   |
         ^                                                                    |
         +---- set_limit / install_fallback (decreases first) <---------------+

The step itself is pure (``ampshare.control``); this module only moves data and time. It is
the one place that catches broadly: a failed dispatch is logged and the loop goes on, because
the chargers' fallbacks keep the site safe while we retry.

Beside the loop: the web bridge (``web``: API, dashboard, store), the MQTT bridge (the site
file's ``mqtt:``) and the planner (``SupervisorOptions.planner``, from ``planner:``; its
solves run in a worker thread, its plans reach ``GET /api/v1/plan``). Session edits from the
web and MQTT bridges reach the next step the same way. With a store that a previous run used,
the controller restarts from it: ``rebuild_state`` from the stored sessions and installed
profiles and what the chargers report, so every limit is re-asserted.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ampshare.adapters.battery import BatteryLink, build_battery
from ampshare.adapters.meters import MeterCoordinator, MeterSource, build_coordinators
from ampshare.adapters.mqtt import SessionCommand
from ampshare.adapters.ocpp import CentralSystem, ChargerLink, CommandOutcome, LinkOptions
from ampshare.adapters.ocpp.port import OutcomeStatus
from ampshare.aio import cancel_and_wait
from ampshare.app._battery import LiveBattery
from ampshare.app._mqtt import MqttLink, SessionEdits, command_changes, mqtt_password
from ampshare.app._planner import LivePlanner, LoadHistory, PvMeters, stored_import_windows
from ampshare.app._web import WebBridge
from ampshare.clock import Clock, SystemClock
from ampshare.config import SiteConfig
from ampshare.config.tariff_files import battery_from_section
from ampshare.control import (
    CommandAck,
    ControlInputs,
    ControllerState,
    ControlSettings,
    InstallFallback,
    SetLimit,
    StepResult,
    Trigger,
    initial_state,
    rebuild_state,
    sent_limits,
    step,
)
from ampshare.core.allocation import Policy, PolicyName
from ampshare.core.planner import (
    PvProfile,
    RecedingHorizonPlanner,
    ceiling_w,
    planned_battery_w,
    uncredited,
)
from ampshare.core.snapshot import ChargerState, ExternalCap, MeterReading, Session
from ampshare.errors import InputError, StoreError
from ampshare.store import SqlStore
from ampshare.web import BatteryStatus

__all__ = ["Supervisor", "SupervisorOptions", "control_settings", "policy_from", "tune_gc"]

log = logging.getLogger("ampshare.app")
_METERED_FOR_S = 10.0  # a root meter's power older than this no longer bounds a discharge


@dataclass(frozen=True, slots=True, kw_only=True)
class SupervisorOptions:
    """What ``ampshare run`` may tune beyond the site file."""

    link: LinkOptions = field(default_factory=LinkOptions)
    poll_meters: bool = True  # False: no meter coordinators (tests, sites without meters)
    web: bool = False  # serve the API and dashboard (``web:`` section) and keep the store
    # the ``planner:`` section's planner (``config.planner_from_section``); with policy
    # ``planned`` the controller follows its targets, ``deadline`` while it has no plan
    planner: RecedingHorizonPlanner | None = None
    # PV behind the root meter for the planner's forecast (``config.load_pv_profile`` of the
    # ``planner:`` section's ``pv_profile_file`` and ``pv_kwp``)
    pv: PvProfile | None = None


def tune_gc() -> None:
    """Process-wide: collect the young generation less often.

    A central system holds thousands of long-lived connection objects and churns many short
    ones per message; with the default threshold (700) the collector keeps re-scanning the
    former. 50,000 halved the server's CPU per fan-out round at 3,000 chargers
    (``bench/ocpp_fanout.py``) at the same memory. Called by ``ampshare run``, not on import.
    """
    gc.set_threshold(50_000, 50, 100)


def control_settings(config: SiteConfig) -> ControlSettings:
    """``ControlSettings`` from the ``control:`` section (field names match one to one)."""
    known = set(ControlSettings.__dataclass_fields__)
    return ControlSettings(**{k: v for k, v in config.control.model_dump().items()
                              if k in known})


def policy_from(config: SiteConfig) -> Policy:
    p = config.policy
    return Policy(name=PolicyName(p.name), rotation_interval_s=p.rotation_interval_s,
                  deadline_mode=p.deadline_mode)


class Supervisor:
    """Runs one site: the central system (or any ``ChargerLink``), meters, control loop."""

    def __init__(self, config: SiteConfig, *, clock: Clock | None = None,
                 link: ChargerLink | None = None,
                 meter_sources: Sequence[MeterSource] | None = None,
                 options: SupervisorOptions | None = None,
                 on_step: Callable[[StepResult], None] | None = None,
                 battery_link: BatteryLink | None = None) -> None:
        self.config = config
        self.site = config.site
        self.clock = clock or SystemClock()
        self.options = options or SupervisorOptions()
        self.settings = control_settings(config)
        self.policy = policy_from(config)
        self.planner = None
        if self.options.planner is not None:
            section = config.planner
            history = LoadHistory(
                quantile=section.safety_quantile,
                lookback_weeks=section.forecast_weeks,
                pv=self.options.pv,
                root_id=self.site.root.id,
                root_lines=len(self.site.voltage.lines),
                v_ln=self.site.voltage.line_to_neutral_v,
                # PV meters (``role: pv``) teach the planner the building the root meter hides
                pv_metered=bool(self.site.pv_meters),
            )
            pv_meters = (
                PvMeters(self.site.pv_meters, self.site.voltage.line_to_neutral_v)
                if self.site.pv_meters
                else None
            )
            self.planner = LivePlanner(
                self.options.planner, history, hold_peak=section.hold_peak, pv_meters=pv_meters
            )
        # The site file's ``battery:`` (sized by ``planner:``), driven from the plan; the
        # caller's link (tests) or the section's driver.
        self.battery: LiveBattery | None = None
        model = battery_from_section(config.planner)
        if config.battery is not None and model is not None:
            blink = battery_link or build_battery(config.battery, model, self.clock)
            # a rise in its charge waits as a car's increase would: the cars' reaction time
            self.battery = LiveBattery(blink, config.battery, model, self.site, self.clock,
                                       hold_s=self.settings.ev_reaction_s + 2.0)
        self._root_meters = frozenset(m.id for m in self.site.meters
                                      if m.node_id == self.site.root.id)
        self.link: ChargerLink | None = link
        self._own_link = link is None
        self.state: ControllerState = initial_state(self.site, self.settings)
        self.trigger = Trigger(self.settings)
        self.last_result: StepResult | None = None
        self.outcomes: dict[str, CommandOutcome] = {}
        self._on_step = on_step
        self._readings: list[MeterReading] = []
        self._raw_readings: list[MeterReading] = []
        self._root_import: tuple[float, float] | None = None  # (t_s, W) from the root meter
        self._shown_readings: tuple[MeterReading, ...] = ()
        self._acks: list[CommandAck] = []
        self._passed_states: dict[str, ChargerState] = {}
        self._passed_sessions: tuple[Session, ...] | None = None
        self._passed_caps: tuple[ExternalCap, ...] = ()
        self.web: WebBridge | None = None
        self.mqtt: MqttLink | None = None
        self._edits = SessionEdits()  # MQTT commands when no web runtime keeps them
        self._all_sessions: tuple[Session, ...] = ()
        self._wake = asyncio.Event()
        self.started = asyncio.Event()  # set once chargers can connect
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sources = list(meter_sources) if meter_sources is not None else None
        self._pv_ids = frozenset(m.id for m in self.site.pv_meters)

    # --- wiring -------------------------------------------------------------------------
    def _on_reading(self, reading: MeterReading) -> None:
        if reading.meter_id in self._pv_ids:
            # a PV meter's output is never a node total: the planner's, not the controller's
            if self.planner is not None:
                self.planner.observe_pv(reading)
            return
        self._raw_readings.append(reading)  # as the meter said it, for the dashboard
        if self.battery is not None and reading.meter_id in self._root_meters:
            watts = reading.active_power_w()
            if watts is not None:  # the site's import as metered (a discharge bound)
                self._root_import = (reading.t_s, watts)
            # the controller never counts on the battery (``app._battery``)
            reading = uncredited(reading, self.battery.load_to_add_w(self.clock.now_s()),
                                 self.site.voltage.line_to_neutral_v)
        self._readings.append(reading)
        self.trigger.notify(self.clock.now_s())
        self._wake.set()

    def _build_meters(self) -> list[MeterCoordinator]:
        """One coordinator per meter: the caller's sources (tests, demo), else the site's."""
        # PV meters feed only the planner's forecasts: without a planner nobody reads them
        pv = self.site.pv_meters if self.planner is not None else ()
        if self._sources is not None:
            specs = {m.id: m for m in (*self.site.meters, *pv)}
            out = []
            for src in self._sources:
                spec = specs.get(src.meter_id)
                out.append(MeterCoordinator(
                    src, self.clock, poll_interval_s=spec.poll_interval_s if spec else 1.0,
                    timeout_s=spec.timeout_s if spec else 10.0, on_reading=self._on_reading))
            return out
        if not self.options.poll_meters:
            return []
        # One link per RS-485 line or gateway, shared by the meters behind it (a serial port
        # opens once; two clients on one line would talk over each other).
        return list(build_coordinators((*self.site.meters, *pv), self.clock,
                                       on_reading=self._on_reading))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _start_web(self) -> asyncio.Task[Any] | None:
        if not self.options.web:
            return None
        self.web = WebBridge(self.config, self.clock, self.policy, self.settings.lease_s)
        try:
            self.web.bind()  # a port in use fails the start, not a task nobody awaits
        except OSError:
            self.web.close()
            self.web = None
            raise
        if self.planner is not None:  # what drivers did before this run
            self.web.runtime.set_planner_on(True)
            ended = self.web.store.sessions(active=False, limit=self.planner.drivers.keep)
            self.planner.seed((r.session, r.ended_s) for r in reversed(ended)
                              if r.ended_s is not None)
            self._seed_peak(self.planner, self.web.store)
        task = asyncio.get_running_loop().create_task(self.web.serve())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _seed_peak(self, planner: LivePlanner, store: SqlStore) -> None:
        """The demand peak already set this billing period, from the recorder's series."""
        def history(name: str, start: float, end: float, res: float) -> list[tuple[float, float]]:
            return [(p.t_s, p.value) for p in store.history(name, start, end, res)]

        now = self.clock.now_s()
        planner.peak.seed(
            stored_import_windows(history, self.site, now, planner.peak.window_s), now
        )

    def _start_mqtt(self) -> asyncio.Task[Any] | None:
        section = self.config.mqtt
        if section is None or not section.enabled:
            return None
        self.mqtt = MqttLink(section, self.site, self.clock, password=mqtt_password(self.config),
                             on_command=self._on_command)
        task = asyncio.get_running_loop().create_task(self.mqtt.run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _on_command(self, cmd: SessionCommand) -> None:
        """An MQTT command: edit the session on its charger as the API would, then step."""
        try:
            if self.web is not None:
                session = self.web.runtime.view().session_at(cmd.charger_id)
                if session is None:
                    raise InputError(f"no car on charger {cmd.charger_id!r}")
                self.web.runtime.edit_session(session.session_id, command_changes(session, cmd),
                                              by="mqtt")
            elif self._edits.apply(self._all_sessions, cmd) is None:
                raise InputError(f"no car on charger {cmd.charger_id!r}")
        except InputError as exc:
            log.warning("MQTT command %s=%s for %s ignored: %s", cmd.field, cmd.value,
                        cmd.charger_id, exc)
            return
        except StoreError as exc:  # not saved: the car keeps what it had, the sender may retry
            log.error("MQTT command %s=%s for %s not saved: %s", cmd.field, cmd.value,
                      cmd.charger_id, exc)
            return
        self.trigger.notify(self.clock.now_s())
        self._wake.set()

    def _resume(self, link: ChargerLink, web: WebBridge) -> None:
        """Restart on a used store: rebuild the controller from what it kept and what the
        chargers report; every limit is then unknown, so the next step re-asserts them all."""
        now = self.clock.now_s()
        snap = link.snapshot()
        self.state = rebuild_state(
            self.site, self.settings, now_s=now, charger_states=snap.states,
            sessions=web.overlay(snap.sessions) or web.runtime.view().sessions,
            installed_limits_a=web.installed_limits_a(), external_caps=web.caps())
        self._passed_states = {s.charger_id: s for s in snap.states}
        self._passed_caps = web.caps()
        self.policy = web.policy()
        web.runtime.record_control_events(self.state.recent_events)
        if isinstance(link, CentralSystem):  # never re-issue a stored transaction id
            link.hub.saw_tx_id(web.last_transaction_number())
        self.trigger.notify(now)

    async def _forward_link_changes(self, link: ChargerLink) -> None:
        while True:
            if await link.wait_changed(1.0):
                self.trigger.notify(self.clock.now_s())
                self._wake.set()

    # --- the loop -----------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; the central system is started and stopped here."""
        async with contextlib.AsyncExitStack() as stack:
            if self.link is None:
                cs = CentralSystem(site=self.site, settings=self.config.ocpp,
                                   clock=self.clock, options=self.options.link)
                self.link = await stack.enter_async_context(cs)
            link = self.link
            web_task = self._start_web()  # first: a port in use leaves nothing running
            meters = self._build_meters()
            for m in meters:
                self._spawn(m.run())
            if self.battery is not None:
                self._spawn(self.battery.run())
            self._spawn(self._forward_link_changes(link))
            if self.web is not None and self.web.resumed:
                self._resume(link, self.web)
            mqtt_task = self._start_mqtt()
            self.started.set()
            try:
                await self._loop(link, stop)
            finally:
                if self.battery is not None:
                    await self.battery.idle()  # a battery is never left on a plan nobody follows
                for m in meters:
                    m.stop()
                if self.mqtt is not None and mqtt_task is not None:
                    self.mqtt.stop()  # publishes "offline" rather than leaving it to the will
                    await asyncio.wait({mqtt_task}, timeout=5)
                if self.web is not None and web_task is not None:
                    self.web.stop()  # let uvicorn close its connections before cancelling
                    await asyncio.wait({web_task}, timeout=5)
                await cancel_and_wait(list(self._tasks), what="supervisor tasks")
                if self.web is not None:
                    self.web.close()  # after the tasks: a profile write may still be running

    async def _loop(self, link: ChargerLink, stop: asyncio.Event) -> None:
        while not stop.is_set():
            now = self.clock.now_s()
            if self.trigger.due(now):
                self.step_once(link, now)
            wait = max(0.0, min(self.trigger.next_run_s() - self.clock.now_s(), 1.0))
            self._wake.clear()
            stopper = asyncio.ensure_future(stop.wait())
            waker = asyncio.ensure_future(self._wake.wait())
            await asyncio.wait({stopper, waker}, timeout=wait if math.isfinite(wait) else 1.0,
                               return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            waker.cancel()

    def _inputs(self, link: ChargerLink) -> tuple[ControlInputs, tuple[Session, ...]]:
        """What changed since the last step, and the full session list (API edits applied)."""
        snap = link.snapshot()
        states = tuple(s for s in snap.states if self._passed_states.get(s.charger_id) != s)
        self._passed_states.update({s.charger_id: s for s in states})
        all_sessions = (self.web.overlay(snap.sessions) if self.web
                        else self._edits.overlay(snap.sessions))
        self._all_sessions = all_sessions
        planned = all_sessions + (self.web.pending_restored(all_sessions) if self.web else ())
        sessions: tuple[Session, ...] | None = planned
        if planned == self._passed_sessions:
            sessions = None
        else:
            self._passed_sessions = planned
        caps: tuple[ExternalCap, ...] | None = None
        if self.web is not None:
            self.policy = self.web.policy()
            if self.web.caps() != self._passed_caps:
                caps = self._passed_caps = self.web.caps()
        inputs = ControlInputs(readings=tuple(self._readings), charger_states=states,
                               sessions=sessions, external_caps=caps, acks=tuple(self._acks))
        self._readings.clear()
        self._shown_readings = tuple(self._raw_readings)
        self._raw_readings.clear()
        self._acks.clear()
        return inputs, all_sessions

    def step_once(self, link: ChargerLink, now_s: float) -> StepResult:
        """One control step on the latest inputs; its commands are sent in the background."""
        before = self.state
        inputs, sessions = self._inputs(link)
        policy = self.policy
        if self.planner is not None:
            policy = self.planner.policy(self.policy, now_s)
        result = step(self.site, self.settings, policy, before, inputs, now_s)
        self.state = result.state
        self.last_result = result
        if self.planner is not None:
            # A plan made now is followed from a later step: it counts on the minimum of the
            # cars this step's allocation keeps charging (a car started now included).
            states = tuple(self._passed_states.values())
            if self.planner.wants(now_s, sessions, states, result.state.rotation):
                self._spawn(self._replan(self.planner, now_s, sessions))
            # the building load, for forecasts
            view = self.battery.planner_view(now_s) if self.battery else (0.0, 0.0)
            self.planner.observe(now_s, result.allocation, view)
        if self.battery is not None:
            self._drive_battery(self.battery, now_s, policy, sessions, result)
        self.trigger.ran(now_s, result.next_wakeup_s)
        for ev in result.events:
            log.log(logging.WARNING if ev.severity != "info" else logging.INFO,
                    "%s %s: %s", ev.kind.value, ev.subject, ev.message)
        if result.commands:
            self._spawn(self._dispatch(link, before, result.commands))
        if self.web is not None:
            try:
                self.web.after_step(sessions=sessions, states=inputs.charger_states,
                                    readings=self._shown_readings, result=result,
                                    battery=self._battery_status(now_s), pv_kw=self._pv_kw(now_s))
            except Exception:  # the dashboard must never stop the control loop
                log.exception("updating the dashboard runtime failed")
        if self.mqtt is not None:
            self.mqtt.after_step(result)
        if self._on_step is not None:
            self._on_step(result)
        return result

    def _battery_status(self, now_s: float) -> BatteryStatus | None:
        b = self.battery
        if b is None:
            return None
        r = b.fresh(now_s)
        return BatteryStatus(battery_id=b.link.battery_id,
                             soc_pct=None if r is None else r.soc_pct,
                             power_w=None if r is None else r.power_w,
                             command_w=b.command.power_w, reason=b.command.reason,
                             credit_w=b.planner_view(now_s)[1])

    def _pv_kw(self, now_s: float) -> float | None:
        pv = self.planner.pv_meters if self.planner is not None else None
        w = pv.total_w(now_s) if pv is not None else None
        return None if w is None else w / 1000.0

    def _drive_battery(self, battery: LiveBattery, now_s: float, policy: Policy,
                       sessions: tuple[Session, ...], result: StepResult) -> None:
        """The plan's battery power, bounded by this step's allocation, sent when due."""
        plan = self.planner.latest if self.planner is not None else None
        planned = policy.name is PolicyName.PLANNED
        got = self._root_import
        metered = got[1] if got is not None and now_s - got[0] <= _METERED_FOR_S else None
        cmd = battery.driver.decide(now_s, planned_battery_w(plan, now_s), result.allocation,
                             targets_a=policy.planned_targets_a if planned else None,
                             charger_of={s.session_id: s.charger_id for s in sessions},
                             ceiling_w=policy.planned_ceiling_w if planned else None,
                             metered_import_w=metered)
        if battery.due(now_s, cmd):
            self._spawn(battery.send(cmd))

    async def _replan(self, planner: LivePlanner, now_s: float,
                      sessions: tuple[Session, ...]) -> None:
        soc = self.battery.soc_wh(now_s) if self.battery is not None else None
        try:
            plan = await planner.replan(now_s, sessions, soc)
        except Exception:  # a planner bug must not stop the loop: deadline goes on
            log.exception("planning failed; the deadline policy holds until the next plan")
            return
        if not plan.status.usable:
            log.warning("plan %s (%s): the deadline policy holds until the next plan",
                        plan.status.value, plan.message)
        if self.web is not None:
            held = ceiling_w(plan) if planner.hold_peak else None
            self.web.runtime.set_plan(plan, held_peak_kw=None if held is None else held / 1000)
        self.trigger.notify(self.clock.now_s())  # the next step follows the new targets
        self._wake.set()

    # --- commands -----------------------------------------------------------------------
    async def _dispatch(self, link: ChargerLink, before: ControllerState,
                        commands: Sequence[SetLimit | InstallFallback]) -> None:
        """Decreases (and fallbacks) first, all confirmed, then the rest."""
        sent = sent_limits(before.tracks)

        def lowers(c: SetLimit | InstallFallback) -> bool:
            if isinstance(c, InstallFallback):
                return True
            old = sent.get(c.charger_id)
            return old is None or c.limit_a < old
        first = [c for c in commands if lowers(c)]
        then = [c for c in commands if not lowers(c)]
        for batch in (first, then):
            await asyncio.gather(*(self._send(link, c) for c in batch))

    async def _send(self, link: ChargerLink, cmd: SetLimit | InstallFallback) -> None:
        override = self.config.ocpp.fallback_limit_a
        if isinstance(cmd, InstallFallback) and override is not None:
            cmd = replace(cmd, limit_a=min(cmd.limit_a, override))  # only ever lower
        try:
            if isinstance(cmd, InstallFallback):
                out = await link.install_fallback(cmd)
            else:
                out = await link.set_limit(cmd)
        except Exception:  # the supervisor is where broad catches belong; fallbacks hold
            log.exception("sending %r failed", cmd)
            return
        self.outcomes[cmd.charger_id] = out
        if out.status in (OutcomeStatus.ACCEPTED, OutcomeStatus.REJECTED, OutcomeStatus.FAILED):
            self._acks.append(CommandAck(charger_id=cmd.charger_id, t_s=out.t_s,
                                         limit_a=cmd.limit_a, accepted=out.ok,
                                         fallback=isinstance(cmd, InstallFallback)))
            self.trigger.notify(self.clock.now_s())
            self._wake.set()
        if out.ok and self.web is not None:
            # Off the loop: a durable write per confirmed profile would stall a big fleet's
            # lease renewals; the ack above already reached the controller.
            try:
                await asyncio.to_thread(self.web.record_installed, cmd, out.t_s)
            except Exception:  # a store hiccup must not stop the loop; the next renewal retries
                log.exception("storing the installed profile of %s failed", cmd.charger_id)
