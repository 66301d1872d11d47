"""``ampshare demo --ocpp``: the demo through the real stack.

The ``Supervisor`` of ``ampshare run`` (OCPP central system, control step, web bridge with
the store and dashboard) serves a demo site; simulated OCPP charge points (``connect_sim``,
``ampshare.sim.ev`` cars) connect to it over real websockets on loopback, and a simulated
site meter reports the replayed building load plus whatever the simulated cars really draw.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Mapping
from typing import Any

import typer

from ampshare.adapters.ocpp import CentralSystem, SimOptions, connect_sim
from ampshare.aio import cancel_and_wait, stop_on_signals
from ampshare.app import Supervisor, SupervisorOptions
from ampshare.app._web import listen_socket
from ampshare.cli.demo import BuildingProfile, DemoClock
from ampshare.config import SiteConfig
from ampshare.config.sections import (
    ControlSection,
    OcppSection,
    PlannerSection,
    PolicySection,
    WebSection,
    WebToken,
)
from ampshare.config.tariff_files import planner_from_section
from ampshare.core.allocate import allocate
from ampshare.core.site import Charger, Connection, Site
from ampshare.core.snapshot import MeterReading
from ampshare.sim.ev import EvSpec
from ampshare.store import open_store
from ampshare.web import InMemoryRuntime, hash_token, new_token

__all__ = ["DemoMeter", "run_ocpp_demo", "run_ocpp_fleet", "site_config"]

# The supervisor's own shutdown waits up to 5 s for uvicorn and 5 s for its tasks.
_SUPERVISOR_STOP_S = 15.0


class DemoMeter:
    """A ``MeterSource`` for the site meter: building profile + the simulated cars' draw."""

    def __init__(self, site: Site, profile: BuildingProfile, clock: DemoClock) -> None:
        self._site = site
        self._profile = profile
        self._clock = clock
        self.cps: dict[str, Any] = {}

    @property
    def meter_id(self) -> str:
        return self._site.meters[0].id

    async def read(self) -> MeterReading:
        now = self._clock.now_s()
        per_line = list(self._profile.line_currents_a(now))
        for c in self._site.chargers:
            cp = self.cps.get(c.id)
            if cp is None:
                continue
            draw = cp.current_a()
            for line in _lines(c, cp.opts.ev.phases):
                per_line[line] += draw
        cur = (per_line[0], per_line[1], per_line[2])
        return MeterReading(
            meter_id=self.meter_id,
            t_s=now,
            current_a=cur,
            power_w=230.0 * sum(cur),
            voltage_v=(230.0, 230.0, 230.0),
        )

    async def close(self) -> None:
        return None


def _lines(c: Charger, phases: int) -> list[int]:
    lines = c.site_lines()
    used = lines[:phases] if c.connection is Connection.THREE_PHASE else lines[:1]
    return [line.index for line in used]


def site_config(
    site: Site,
    *,
    policy: str,
    host: str,
    port: int,
    store_url: str,
    tokens: Mapping[str, str],
    speed: float = 1.0,
) -> SiteConfig:
    """The demo as a site file would say it (``tokens``: plain token -> role, hashed here).

    The controller's clock runs ``speed`` times faster than the messages on the wire, so the
    timers that wait for a charger's answer are stretched to stay a few real seconds long: a
    lease of 2 real seconds (120 s at x60) would lapse between two paced writes and drop the
    chargers to their fallback."""
    control = ControlSection(
        lease_s=max(120.0, 10.0 * speed), ack_timeout_s=min(300.0, max(10.0, 2.0 * speed))
    )
    return SiteConfig(
        site=site,
        policy=PolicySection(name=policy),
        control=control,
        # ``--policy planned`` plans as ``ampshare run`` with ``planner: {enabled: true}``
        # does: the simulated drivers declare departures and energies (``_drivers_declare``).
        planner=PlannerSection(enabled=policy == "planned"),
        ocpp=OcppSection(host="127.0.0.1", port=0),
        web=WebSection(
            host=host,
            port=port,
            store_url=store_url,
            tokens=tuple(
                WebToken(name=f"demo {role}", sha256=hash_token(tok), role=role)
                for tok, role in tokens.items()
            ),
        ),
        source="ampshare demo --ocpp",
    )


async def _connect(url: str, site: Site, clock: DemoClock) -> dict[str, Any]:
    cps = {}
    # The controller's clock runs ``speed`` times faster than the wire: a report every 2 real
    # seconds is two simulated minutes old at x60, and car current the chargers have not
    # reported yet reads as building load at the site meter. That paused every car, rotated
    # them each simulated minute and raised overload alerts in the demo's first seconds. Report
    # every half second while the fleet is small; a large one keeps the old 2 s (~250 frames/s
    # at 500 chargers).
    interval_s = min(2.0, max(0.5, len(site.chargers) / 48.0))
    for c in site.chargers:
        phases = 3 if c.connection is Connection.THREE_PHASE else 1
        opts = SimOptions(
            hw_max_current_a=c.max_current_a,
            meter_interval_s=interval_s,
            ev=EvSpec(max_current_a=c.max_current_a, phases=phases),
            model="demo",
        )
        cps[c.id] = await connect_sim(url, c.id, c.protocol, options=opts, clock=clock)
    return cps


async def _visits(cp: Any, rng: random.Random, speed: float) -> None:
    """Cars come and go: plug in, report meter values, leave after a few simulated hours."""
    await asyncio.sleep(rng.uniform(0.0, 3.0))
    while True:
        await cp.start_transaction()
        stay_real_s = rng.uniform(2.0, 8.0) * 3600.0 / speed
        elapsed = 0.0
        while elapsed < stay_real_s:
            await asyncio.sleep(cp.opts.meter_interval_s)
            elapsed += cp.opts.meter_interval_s
            await cp.meter_values()
        await cp.stop_transaction()
        await asyncio.sleep(rng.uniform(0.5, 2.0) * 3600.0 / speed)


async def _drivers_declare(sup: Supervisor, clock: DemoClock, rng: random.Random) -> None:
    """OCPP 1.6 carries no departure: drivers declare it (and the energy they want) in an
    app, which here writes through the same runtime method the API's PATCH uses."""
    while True:
        await asyncio.sleep(1.0)
        web = sup.web
        if web is None:
            continue
        for s in web.runtime.view().sessions:
            if s.departure_s is None and s.energy_wanted_wh is None:
                stay_s = rng.uniform(2.0, 9.0) * 3600.0
                changes = {
                    "departure_s": round((s.arrival_s + stay_s) / 300.0) * 300.0,
                    "energy_wanted_wh": round(rng.uniform(8_000.0, 30_000.0), -3),
                }
                await asyncio.to_thread(
                    web.runtime.edit_session, s.session_id, changes, by="driver"
                )


async def run_ocpp_fleet(
    config: SiteConfig,
    clock: DemoClock,
    profile: BuildingProfile,
    *,
    speed: float,
    duration_s: float | None,
    banner: list[str],
) -> None:
    """Run supervisor + simulated charge points until ``duration_s``, Ctrl-C or SIGTERM.

    The charge points join the central system before the controller's first step, so that
    the demo does not open with an "offline" alert for every charger; on the way out the
    controller stops first, so that the chargers closing their sockets raise none either.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    stop_on_signals(stop, name="ampshare demo")
    if duration_s is not None:
        loop.call_later(duration_s, stop.set)
    meter = DemoMeter(config.site, profile, clock)
    async with CentralSystem(site=config.site, settings=config.ocpp, clock=clock) as cs:
        url = f"ws://127.0.0.1:{cs.port}/ocpp"
        cps = await _connect(url, config.site, clock)
        meter.cps = cps
        await asyncio.gather(*(cs.wait_ready(cid) for cid in cps))
        # The controller's own events (meter stale, charger offline, non-compliant, ...)
        # become the dashboard's alerts through the supervisor's web bridge.
        sup = Supervisor(
            config,
            clock=clock,
            link=cs,
            meter_sources=[meter],
            options=SupervisorOptions(
                web=True,
                planner=(
                    planner_from_section(config.planner, config.site)
                    if config.planner.enabled
                    else None
                ),
            ),
        )
        task = asyncio.create_task(sup.run(stop))
        rng = random.Random(11)
        drivers = [asyncio.create_task(_visits(cp, rng, speed)) for cp in cps.values()]
        drivers.append(asyncio.create_task(_drivers_declare(sup, clock, rng)))
        try:
            await _until_serving(sup, task)
            if not task.done():  # else it failed to start (a port in use): no banner
                typer.echo(f"  {len(cps)} simulated OCPP charge points connected to {url}")
                for line in banner:
                    typer.echo(line)
                waiter = asyncio.create_task(stop.wait())
                await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
        finally:
            stop.set()
            # Bounded: a task that swallowed its cancel (3.11's wait_for in the ocpp
            # library) once kept the demo from exiting at all.
            await cancel_and_wait(drivers, what="simulated drivers")
            await asyncio.wait({task}, timeout=_SUPERVISOR_STOP_S)
            await cancel_and_wait([task], what="the supervisor")
            for cp in cps.values():
                with contextlib.suppress(Exception):  # the server may have closed it already
                    await cp.close()
    if task.done() and not task.cancelled() and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]


async def _until_serving(sup: Supervisor, task: asyncio.Task[None]) -> None:
    """Wait until the dashboard answers (or the supervisor failed, e.g. a port in use)."""
    while not (sup.web is not None and sup.web.started):
        if task.done():
            return
        await asyncio.sleep(0.05)


def _backfill(site: Site, store_url: str, start_s: float, until_s: float) -> None:
    """Fill the chart's history with the in-process model, then end those sessions: from
    now on the OCPP chargers report the real ones."""
    from ampshare.cli.demo import DemoCars, _Demo

    store = open_store(store_url)
    try:
        clock = DemoClock(start_s)
        runtime = InMemoryRuntime(site, clock, store, allocator=allocate)
        world = _Demo(
            site=site,
            runtime=runtime,
            clock=clock,
            profile=BuildingProfile.packaged(),
            cars=DemoCars(site),
        )
        world.plug_in_half()
        world.backfill(clock, store, until_s, 120.0)
        for s in runtime.view().sessions:
            runtime.end_session(s.session_id)
    finally:
        store.close()


async def run_ocpp_demo(
    *,
    chargers: int,
    speed: float,
    host: str,
    port: int,
    store_url: str,
    duration_s: float | None,
    policy: str,
    history_h: float,
) -> None:
    from ampshare.cli.demo import demo_limits_a, demo_site

    listen_socket(host, port, what="the dashboard").close()  # a port in use: fail at once
    # The site meter is polled once per real second, ``speed`` simulated seconds apart.
    site = demo_site(
        chargers, meter_timeout_s=max(10.0, 3.0 * speed, 360.0), **demo_limits_a(chargers)
    )
    now = time.time()
    fresh = not open_store_has_sessions(store_url)
    if history_h > 0 and fresh:
        typer.echo(f"simulating the last {history_h:g} h for the history chart ...")
        await asyncio.to_thread(_backfill, site, store_url, now - history_h * 3600.0, now)
    clock = DemoClock(now)
    clock.run(speed)
    admin, reader = new_token(), new_token()
    config = site_config(
        site,
        policy=policy,
        host=host,
        port=port,
        store_url=store_url,
        tokens={admin: "admin", reader: "read"},
        speed=speed,
    )
    banner = [
        f"ampshare demo: {chargers} OCPP chargers, time x{speed:g}, store {store_url}",
        "  the supervisor of `ampshare run` controls them; limits come from control.step",
        *(
            [
                f"  planner on: {p.horizon_h:g} h in {p.slot_s:g} s slots, re-planned every "
                f"{p.replan_interval_s:g} simulated s; drivers declare departure and energy"
            ]
            if (p := config.planner).enabled
            else []
        ),
        f"  dashboard (admin): http://{host}:{port}/#token={admin}",
        f"  read-only token:   {reader}",
        f"  API docs: http://{host}:{port}/docs   metrics: http://{host}:{port}/metrics",
    ]
    await run_ocpp_fleet(
        config, clock, BuildingProfile.packaged(), speed=speed, duration_s=duration_s, banner=banner
    )


def open_store_has_sessions(store_url: str) -> bool:
    store = open_store(store_url)
    try:
        return bool(store.sessions(limit=1))
    finally:
        store.close()
