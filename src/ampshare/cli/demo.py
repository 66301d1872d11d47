"""``ampshare demo``: the whole system alive on one machine.

Builds a small garage site in code, opens a store, runs the runtime with the real allocator,
simulated cars (``ampshare.sim.ev`` physics) and a simulated site meter that replays one real
measured week of building load shipped in ``ampshare.data``, and serves the dashboard.

Cars are simulated in-process (their chargers report through the runtime the way the OCPP
adapter would); the OCPP central system is wired in by the supervisor once it exists.
"""

from __future__ import annotations

import asyncio
import csv
import logging
import random
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer
import uvicorn

from ampshare.aio import cancel_and_wait, stop_on_signals
from ampshare.app._web import listen_socket
from ampshare.cli._app import app
from ampshare.clock import Clock
from ampshare.core.allocate import allocate
from ampshare.core.allocation import Policy, PolicyName
from ampshare.core.site import (
    Charger,
    CircuitNode,
    Connection,
    Measurand,
    MeterSpec,
    NodeKind,
    PhaseRotation,
    Site,
    VoltageSystem,
)
from ampshare.core.snapshot import ChargerState, ChargerStatus, MeterReading, Session
from ampshare.sim.ev import EvSpec, EvState, ev_follow_pilot, ev_plug_in, ev_step, offered_pilot_a
from ampshare.store import SqlStore, open_store
from ampshare.web import (
    InMemoryRuntime,
    Role,
    TokenAuth,
    create_app,
    new_token,
    record_once,
    run_recorder,
)
from ampshare.web.server import EmbeddedServer

__all__ = ["BuildingProfile", "DemoCars", "DemoClock", "demo_limits_a", "demo_site"]

_ROTATIONS = (PhaseRotation.L1L2L3, PhaseRotation.L2L3L1, PhaseRotation.L3L1L2)
_PROFILE = "building_load_ucam_b57_2019-06-03_week.csv"
_WEEK_S = 7 * 86400.0
_MONDAY_EPOCH_OFFSET_S = 4 * 86400.0  # 1970-01-01 was a Thursday; Monday 00:00 is +4 days
_UNBALANCE = (1.12, 1.0, 0.88)  # building loads are never balanced; L1 carries the most


def demo_limits_a(chargers: int) -> dict[str, float]:
    """Service and garage limits for ``chargers`` wallboxes: the 6-bay garage's 3x63 A / 3x50 A,
    grown in proportion beyond 6 bays so that a bigger demo still shares rather than pauses
    nearly every car."""
    garage = round(50.0 * max(1.0, chargers / 6.0))
    return {"main_a": garage + 13.0, "garage_a": float(garage)}


def demo_site(
    chargers: int = 6,
    *,
    main_a: float = 63.0,
    garage_a: float = 50.0,
    meter_timeout_s: float = 10.0,
) -> Site:
    """A 230/400 V building: main service ``main_a`` per line, a garage sub-panel ``garage_a``
    per line with ``chargers`` wallboxes (16 A three-phase; every third one 32 A single-phase,
    spread over the lines), and one meter on the main service that sees building plus EVs."""
    if chargers < 1:
        raise ValueError("the demo needs at least one charger")
    nodes = (
        CircuitNode(
            id="main",
            kind=NodeKind.SERVICE,
            parent_id=None,
            name="Main service",
            line_limit_a=(main_a, main_a, main_a),
            margin_a=2.0,
        ),
        CircuitNode(
            id="garage",
            kind=NodeKind.SUBPANEL,
            parent_id="main",
            name="Garage panel",
            line_limit_a=(garage_a, garage_a, garage_a),
            margin_a=1.0,
        ),
    )
    cps = tuple(
        Charger(
            id=f"cp{i + 1:02d}",
            node_id="garage",
            name=f"Bay {i + 1}",
            connection=Connection.L1 if i % 3 == 2 else Connection.THREE_PHASE,
            # Single-phase wallboxes are spread over the site's lines (bays 3, 6, 9 on L1, L2,
            # L3, ...), three-phase ones rotated so that one-phase cars do not all load L1.
            phase_rotation=_ROTATIONS[(i // 3) % 3 if i % 3 == 2 else i % 3],
            max_current_a=16.0 if i % 3 != 2 else 32.0,
            protocol="ocpp1.6" if i % 2 == 0 else "ocpp2.0.1",
        )
        for i in range(chargers)
    )
    meter = MeterSpec(
        id="m-main",
        node_id="main",
        timeout_s=meter_timeout_s,
        # Worst case of the replayed building (28 kW peak, L1 heaviest) plus 10 %: with it the
        # chargers' fallback profiles share what is surely left, instead of falling to 0 A.
        fallback_line_a=(50.0, 45.0, 40.0),
        measures=frozenset({Measurand.CURRENT_PER_LINE, Measurand.POWER_TOTAL}),
    )
    return Site(
        name="Demo garage",
        voltage=VoltageSystem.EU_230_400,
        nodes=nodes,
        chargers=cps,
        meters=(meter,),
    )


class DemoClock:
    """Simulated time: moved by hand first (to fill the history), then running ``speed`` times
    faster than the wall clock from wherever it was set."""

    def __init__(self, start_s: float) -> None:
        self._t_s = start_s
        self._speed: float | None = None
        self._m0 = 0.0

    def now_s(self) -> float:
        if self._speed is None:
            return self._t_s
        return self._t_s + (time.monotonic() - self._m0) * self._speed

    def set(self, t_s: float) -> None:
        if self._speed is not None:
            raise RuntimeError("the demo clock is already running")
        self._t_s = max(self._t_s, t_s)

    def run(self, speed: float) -> None:
        self._speed = speed
        self._m0 = time.monotonic()


@dataclass(frozen=True, slots=True)
class BuildingProfile:
    """A week of hourly mean power, replayed by weekday and hour (linear in between)."""

    power_kw: tuple[float, ...]  # 168 values, Monday 00:00 first

    @classmethod
    def packaged(cls) -> BuildingProfile:
        text = resources.files("ampshare.data").joinpath(_PROFILE).read_text(encoding="utf-8")
        return cls.from_csv_text(text)

    @classmethod
    def from_csv_text(cls, text: str) -> BuildingProfile:
        rows = list(csv.DictReader(text.splitlines()))
        return cls(tuple(float(r["mean_power_kw"]) for r in rows))

    def power_w(self, t_s: float) -> float:
        pos = ((t_s - _MONDAY_EPOCH_OFFSET_S) % _WEEK_S) / 3600.0
        i = int(pos)
        frac = pos - i
        a, b = self.power_kw[i % len(self.power_kw)], self.power_kw[(i + 1) % len(self.power_kw)]
        return 1000.0 * (a + (b - a) * frac)

    def line_currents_a(self, t_s: float, volts: float = 230.0) -> tuple[float, float, float]:
        per_line = self.power_w(t_s) / (3 * volts)
        return (per_line * _UNBALANCE[0], per_line * _UNBALANCE[1], per_line * _UNBALANCE[2])


@dataclass(slots=True)
class _Car:
    session: Session
    ev: EvState


@dataclass(slots=True)
class DemoCars:
    """Cars arriving, charging under the runtime's limits and leaving (seeded, repeatable)."""

    site: Site
    seed: int = 7
    cars: dict[str, _Car] = field(default_factory=dict)
    _n: int = 0
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def arrive(self, charger: Charger, now_s: float) -> Session:
        rng = self.rng
        self._n += 1
        phases = 1 if charger.connection is not Connection.THREE_PHASE else rng.choice((1, 3, 3))
        spec = EvSpec(
            max_current_a=rng.choice((16.0, 16.0, 32.0)),
            phases=phases,
            capacity_wh=rng.choice((40_000.0, 60_000.0, 77_000.0)),
        )
        wanted = rng.uniform(8_000.0, 30_000.0)
        stay_s = rng.uniform(2.0, 9.0) * 3600.0
        s = Session(
            session_id=f"demo-{int(now_s)}-{self._n}",
            charger_id=charger.id,
            arrival_s=now_s,
            departure_s=round((now_s + stay_s) / 300) * 300,
            energy_wanted_wh=round(wanted, -3),
            vehicle_phases=phases,
            vehicle_max_current_a=spec.max_current_a,
            priority=rng.choice((0, 0, 1)),
        )
        ev = ev_plug_in(spec, stored_wh=rng.uniform(0.1, 0.5) * spec.capacity_wh, wanted_wh=wanted)
        self.cars[charger.id] = _Car(session=s, ev=ev)
        return s

    def resume(self, s: Session) -> None:
        """A car the store says is still plugged in after a restart: it carries on from the
        energy recorded (the battery model itself is not stored, so it is re-estimated)."""
        spec = EvSpec(
            max_current_a=s.vehicle_max_current_a or 16.0,
            phases=s.vehicle_phases or 3,
            capacity_wh=60_000.0,
        )
        need = s.energy_needed_wh if s.energy_needed_wh is not None else 20_000.0
        ev = ev_plug_in(spec, stored_wh=0.3 * spec.capacity_wh, wanted_wh=need)
        self.cars[s.charger_id] = _Car(
            session=s, ev=replace(ev, delivered_wh=s.energy_delivered_wh)
        )

    def step(
        self,
        limits: dict[str, float | None],
        now_s: float,
        dt_s: float,
    ) -> list[ChargerState]:
        """Advance every car by ``dt_s`` under ``limits`` (charger id -> A, None: no limit yet)."""
        states = []
        for c in self.site.chargers:
            car = self.cars.get(c.id)
            if car is None:
                states.append(
                    ChargerState(charger_id=c.id, t_s=now_s, measured_current_a=(0.0, 0.0, 0.0))
                )
                continue
            pilot = offered_pilot_a(
                limit_a=limits.get(c.id),
                fallback_a=c.min_current_a,
                charger_max_a=c.max_current_a,
                ignores_limit=False,
            )
            ev = ev_step(ev_follow_pilot(car.ev, pilot, now_s), now_s, dt_s, 230.0)
            car.ev = ev
            car.session = replace(car.session, energy_delivered_wh=ev.delivered_wh)
            states.append(_charger_state(c, ev, pilot, now_s))
        return states


def _charger_state(c: Charger, ev: EvState, pilot_a: float, now_s: float) -> ChargerState:
    per_line = [0.0, 0.0, 0.0]
    lines = (
        c.site_lines()[: ev.spec.phases]
        if c.connection is Connection.THREE_PHASE
        else (c.site_lines()[:1])
    )
    for line in lines:
        per_line[line.index] = ev.draw_a
    status = (
        ChargerStatus.CHARGING
        if ev.draw_a > 0
        else ChargerStatus.SUSPENDED_EV
        if ev.full
        else ChargerStatus.SUSPENDED_EVSE
    )
    return ChargerState(
        charger_id=c.id,
        t_s=now_s,
        status=status,
        measured_current_a=(per_line[0], per_line[1], per_line[2]),
        offered_current_a=pilot_a,
        energy_wh=ev.delivered_wh,
        active_phases=ev.spec.phases,
        installed_limit_a=pilot_a,
    )


@dataclass(slots=True)
class _Demo:
    """The simulated world around the runtime: building meter and cars."""

    site: Site
    runtime: InMemoryRuntime
    clock: Clock
    profile: BuildingProfile
    cars: DemoCars
    last_s: float = 0.0

    def tick(self) -> None:
        now = self.clock.now_s()
        dt = max(0.0, now - self.last_s) if self.last_s else 0.0
        self.last_s = now
        self._arrivals_and_departures(now)
        v = self.runtime.view()
        limits: dict[str, float | None] = {c.id: None for c in self.site.chargers}
        limits.update({lim.charger_id: lim.limit_a for lim in v.limits})
        states = self.cars.step(limits, now, dt)
        self.runtime.update(
            charger_states=states,
            meter_readings=[self._meter(now, states)],
            energy_wh={
                car.session.session_id: car.session.energy_delivered_wh
                for car in self.cars.cars.values()
            },
        )

    def _meter(self, now: float, states: list[ChargerState]) -> MeterReading:
        bld = self.profile.line_currents_a(now)
        ev = [
            sum((s.measured_current_a or (0.0, 0.0, 0.0))[i] or 0.0 for s in states)
            for i in range(3)
        ]
        cur = (bld[0] + ev[0], bld[1] + ev[1], bld[2] + ev[2])
        return MeterReading(
            meter_id="m-main",
            t_s=now,
            current_a=cur,
            power_w=230.0 * sum(cur),
            voltage_v=(230.0, 230.0, 230.0),
        )

    def _arrivals_and_departures(self, now: float) -> None:
        for cid, car in list(self.cars.cars.items()):
            dep = self.runtime.view().session_at(cid)
            departure = dep.departure_s if dep else car.session.departure_s
            if departure is not None and now >= departure:
                del self.cars.cars[cid]
                self.runtime.end_session(car.session.session_id)
        hour = (now % 86400.0) / 3600.0
        busy = 7.0 <= hour <= 10.0 or 16.0 <= hour <= 19.0  # commuters' arrival waves
        p_per_tick = 0.04 if busy else 0.01
        for c in self.site.chargers:
            if c.id not in self.cars.cars and self.cars.rng.random() < p_per_tick:
                self.runtime.start_session(self.cars.arrive(c, now))

    def plug_in_half(self) -> None:
        now = self.clock.now_s()
        self.last_s = now
        for c in self.site.chargers[::2]:
            self.runtime.start_session(self.cars.arrive(c, now))

    def backfill(self, clock: DemoClock, store: SqlStore, until_s: float, step_s: float) -> int:
        """Run the same loop over the past on hand-moved time so that the 24 h chart and the
        event list have something to show from the first second; returns the steps run."""
        steps = 0
        t = clock.now_s()
        while t < until_s:
            clock.set(t)
            self.tick()
            record_once(self.runtime, store, t)
            t += step_s
            steps += 1
        clock.set(until_s)
        return steps


def _store_url(store: str) -> str:
    if store:
        return store
    folder = Path(tempfile.mkdtemp(prefix="ampshare-demo-"))
    return f"sqlite:///{folder / 'demo.db'}"


async def _run_demo(
    *,
    chargers: int,
    speed: float,
    host: str,
    port: int,
    store_url: str,
    duration_s: float | None,
    policy: PolicyName,
    history_h: float,
) -> None:
    listen_socket(host, port, what="the dashboard").close()  # a port in use: fail at once
    step_s = 120.0
    # The simulated meter reports once per real second (``speed`` simulated seconds), and once
    # per ``step_s`` while back-filling: its timeout must cover that or it would look stale.
    site = demo_site(
        chargers,
        meter_timeout_s=max(10.0, 3.0 * speed, 3.0 * step_s),
        **demo_limits_a(chargers),
    )
    now = time.time()
    clock = DemoClock(now - history_h * 3600.0)
    store = open_store(store_url)
    # A store with sessions in it is a restart: resume from it instead of starting afresh.
    resumed = bool(store.sessions(limit=1))
    if resumed:
        last = store.events(limit=1)
        clock = DemoClock(max(now, last[0].t_s if last else now))
    runtime = InMemoryRuntime(site, clock, store, allocator=allocate)
    admin, reader = new_token(), new_token()
    auth = TokenAuth.from_tokens({admin: Role.ADMIN, reader: Role.READ})
    web = create_app(runtime, store, auth, clock=clock)
    world = _Demo(
        site=site,
        runtime=runtime,
        clock=clock,
        profile=BuildingProfile.packaged(),
        cars=DemoCars(site),
    )
    if resumed:
        count = runtime.restore()  # sessions, policy, admin caps; limits re-asserted
        for sess in runtime.view().sessions:
            world.cars.resume(sess)
        world.last_s = clock.now_s()
        typer.echo(f"resumed {count} sessions from the store; limits re-asserted")
    else:
        runtime.set_policy(Policy(name=policy), by="demo")
        world.plug_in_half()
        if history_h > 0:
            typer.echo(f"simulating the last {history_h:g} h for the history chart ...")
            await asyncio.to_thread(world.backfill, clock, store, now, step_s)
    clock.run(speed)
    sock = listen_socket(host, port, what="the dashboard")
    server = EmbeddedServer(uvicorn.Config(web, host=host, port=port, log_level="warning"))
    typer.echo(f"ampshare demo: {chargers} simulated chargers, time x{speed:g}, store {store_url}")
    typer.echo("  cars are simulated in-process (sim.ev physics); limits come from core.allocate")
    typer.echo(f"  dashboard (admin): http://{host}:{port}/#token={admin}")
    typer.echo(f"  read-only token:   {reader}")
    typer.echo(f"  API docs: http://{host}:{port}/docs   metrics: http://{host}:{port}/metrics")
    try:
        await _serve_until_stopped(
            server.serve(sockets=[sock]),
            [_ticks(world), run_recorder(runtime, store, clock, compact_every_s=3600.0)],
            stop_server=lambda: setattr(server, "should_exit", True),
            duration_s=duration_s,
        )
    finally:
        sock.close()
        store.close()


async def _serve_until_stopped(
    serve: Coroutine[Any, Any, None],
    helpers: list[Coroutine[Any, Any, None]],
    *,
    stop_server: Callable[[], None],
    duration_s: float | None,
) -> None:
    """Serve until Ctrl-C, SIGTERM, ``duration_s`` or the server failing on its own; then
    stop the server (5 s for its connections) and the helpers, within a bound."""
    stop = asyncio.Event()
    stop_on_signals(stop, name="ampshare demo")
    if duration_s is not None:
        asyncio.get_running_loop().call_later(duration_s, stop.set)
    server = asyncio.create_task(serve)
    tasks = [server, *(asyncio.create_task(h) for h in helpers)]
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({server, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        stop_server()
        await asyncio.wait({server}, timeout=5)
        await cancel_and_wait(tasks, what="demo tasks")
    if server.done() and not server.cancelled() and server.exception() is not None:
        raise server.exception()  # type: ignore[misc]


async def _ticks(world: _Demo) -> None:
    while True:
        await asyncio.to_thread(world.tick)
        await asyncio.sleep(1.0)


@app.command()
def demo(  # noqa: PLR0917 - one parameter per CLI option
    chargers: Annotated[int, typer.Option(min=1, max=500, help="simulated chargers")] = 6,
    speed: Annotated[
        float, typer.Option(min=0.1, max=3600.0, help="simulated seconds per real second")
    ] = 60.0,
    host: Annotated[str, typer.Option(help="address to serve the dashboard on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8080,
    store: Annotated[str, typer.Option(help="store URL (default: a fresh SQLite file)")] = "",
    policy: Annotated[PolicyName, typer.Option(help="how headroom is shared")] = (
        PolicyName.DEADLINE
    ),
    duration_s: Annotated[
        float | None, typer.Option(help="stop after this many real seconds")
    ] = None,
    history_h: Annotated[
        float, typer.Option(min=0, max=168, help="hours of past to simulate first")
    ] = 24.0,
    ocpp: Annotated[
        bool,
        typer.Option(
            help="OCPP charge points over websockets, run by the supervisor of "
            "`ampshare run` (--no-ocpp: cars simulated in-process, store resumable)"
        ),
    ] = True,
) -> None:
    """Run a whole simulated site with the live dashboard and print its URL."""
    # The controller's warnings and alerts (a stale meter, an offline charger) are worth
    # seeing on the console; the libraries' chatter is not.
    logging.basicConfig(level=logging.WARNING, format="  %(levelname)s %(name)s: %(message)s")
    try:
        if ocpp:
            from ampshare.cli._demo_ocpp import run_ocpp_demo

            asyncio.run(
                run_ocpp_demo(
                    chargers=chargers,
                    speed=speed,
                    host=host,
                    port=port,
                    store_url=_store_url(store),
                    duration_s=duration_s,
                    policy=policy.value,
                    history_h=history_h,
                )
            )
            return
        if policy is PolicyName.PLANNED:  # the in-process cars have no planner to follow
            typer.echo(
                "ampshare demo: --policy planned needs the planner, which the OCPP demo runs "
                "(drop --no-ocpp)",
                err=True,
            )
            raise typer.Exit(2)
        asyncio.run(
            _run_demo(
                chargers=chargers,
                speed=speed,
                host=host,
                port=port,
                store_url=_store_url(store),
                duration_s=duration_s,
                history_h=history_h,
                policy=policy,
            )
        )
    except OSError as e:  # a port in use: say which, and how to pick another
        typer.echo(f"ampshare demo: {e} (choose another with --port)", err=True)
        raise typer.Exit(1) from e
