"""Holding the plan's demand peak: the live loop stops charging beyond the plan's targets at
the peak the plan aims for (``Policy.planned_ceiling_w``), and learns the peak already set
this billing period (``PeakSoFar``), which costs nothing more."""

from __future__ import annotations

import asyncio
import math
from dataclasses import replace
from pathlib import Path

import pytest

from ampshare.adapters.ocpp import FakeChargerLink
from ampshare.app import Supervisor, SupervisorOptions
from ampshare.app._planner import LivePlanner, stored_import_windows
from ampshare.clock import SystemClock
from ampshare.config import SiteConfig, load_config, parse_config
from ampshare.config.tariff_files import planner_from_section
from ampshare.core.allocate import allocate
from ampshare.core.allocation import (
    AllocationInput,
    NodeMeasurement,
    Policy,
    PolicyName,
    site_import_kw,
)
from ampshare.core.planner import (
    PeakSoFar,
    PlanInput,
    RecedingHorizonPlanner,
    ceiling_w,
    plan,
)
from ampshare.core.site import Site
from ampshare.core.snapshot import Session
from ampshare.store import SeriesPoint, open_store
from ampshare.web.testing import free_port
from test_planner_live import SITE, until

H = 3600.0


def _month(t_s: float) -> int:
    return int(t_s // (30 * 86400))  # a stand-in billing period: 30-day blocks


def test_the_peak_so_far_is_the_highest_window_average_not_the_highest_sample() -> None:
    peak = PeakSoFar(billing_period=_month, window_s=900.0)
    # 10 kW for a whole window, then a 60 kW spike for one minute in an otherwise idle one.
    for t in range(0, 900, 60):
        peak.observe(float(t), 10.0)
    peak.observe(900.0, 60.0)
    peak.observe(960.0, 0.0)
    assert peak.peak_kw == pytest.approx(10.0)  # only the first window has closed
    peak.observe(1800.0, 0.0)
    assert peak.peak_kw == pytest.approx(10.0)  # the spike averages to 4 kW over its window
    # 30 kW held over a whole window sets a new peak once the window is over.
    peak.observe(2700.0, 30.0)
    peak.observe(3600.0, 30.0)
    assert peak.peak_kw == pytest.approx(10.0)
    peak.observe(3601.0, 0.0)
    assert peak.peak_kw == pytest.approx(30.0)


def test_a_new_billing_period_starts_from_no_peak() -> None:
    peak = PeakSoFar(billing_period=_month, window_s=900.0)
    peak.observe(0.0, 20.0)
    peak.observe(1800.0, 5.0)
    assert peak.peak_kw == pytest.approx(20.0)
    start = 30 * 86400.0  # the next period
    peak.observe(start, 5.0)
    peak.observe(start + 900.0, 5.0)
    peak.observe(start + 1800.0, 5.0)
    assert peak.peak_kw == pytest.approx(5.0)


def test_site_import_is_the_metered_building_plus_what_the_cars_may_draw(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path, "")
    site = config.site
    cars = (Session(session_id="a", charger_id="cp1", arrival_s=0.0),)
    meter = NodeMeasurement(node_id="main", current_a=(4.0, 4.0, 4.0), includes_ev_load=False)
    got = allocate(AllocationInput(site=site, now_s=0.0, sessions=cars, measurements=(meter,)))
    # 4 A building and the car's 28 A (all that is left of 32 A) on three lines at 230 V.
    assert site_import_kw(site, got.headroom) == pytest.approx(32 * 3 * 230 / 1000)
    blind = allocate(AllocationInput(site=site, now_s=0.0, sessions=cars))
    assert site_import_kw(site, blind.headroom) is None  # no meter at the root: nothing to learn


def test_the_planned_policy_carries_the_plans_peak_and_the_sites_rotation(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path, "  demand_charge_per_kw: 10\n")
    mpc = _learned(planner_from_section(config.planner, config.site, tmp_path))
    car = Session(
        session_id="a",
        charger_id="cp1",
        arrival_s=0.0,
        departure_s=10 * H,
        energy_wanted_wh=10_000.0,
    )
    live = LivePlanner(mpc)
    live.latest = mpc.step(0.0, (car,))
    base = Policy(name=PolicyName.PLANNED, rotation_interval_s=600.0)
    got = live.policy(base, 60.0)
    assert got.name is PolicyName.PLANNED
    assert got.rotation_interval_s == 600.0
    assert got.planned_ceiling_w == pytest.approx(live.latest.peak_kw * 1000)
    assert live.latest.peak_kw < 32 * 3 * 230 / 1000  # the plan spreads 10 kWh over 10 h
    free = LivePlanner(mpc, hold_peak=False)
    free.latest = live.latest
    assert free.policy(base, 60.0).planned_ceiling_w is None


def test_a_plan_holds_a_peak_only_with_a_demand_charge_and_learned_stays(tmp_path: Path) -> None:
    site = _config(tmp_path, "").site
    car = Session(session_id="a", charger_id="cp1", arrival_s=0.0, departure_s=4 * H)
    inp = PlanInput(
        site=site, start_s=0.0, slot_s=900.0, n_slots=16, sessions=(car,), stay_samples=STAYS
    )
    p = plan(inp)
    assert p.status.usable
    assert ceiling_w(p) is None  # no demand charge: no peak to hold
    charged = plan(replace(inp, demand_charge_per_kw=10.0))
    assert ceiling_w(charged) == pytest.approx(charged.peak_kw * 1000)
    # Not knowing yet how drivers keep their declared departures, the plan spreads energy up
    # to each declaration; holding its peak would cost the cars that leave early.
    cold = plan(replace(inp, demand_charge_per_kw=10.0, stay_samples=()))
    assert cold.status.usable
    assert ceiling_w(cold) is None


@pytest.mark.parametrize("hold", [True, False])
async def test_the_live_loop_holds_the_plans_peak_unless_told_not_to(
    tmp_path: Path, hold: bool
) -> None:
    # One car, 10 kWh by 10 h from now, under a demand charge: the plan asks for its 6 A
    # minimum now (4.1 kW), and that is its peak. Holding it, the car stays at 6 A; without,
    # stage 2 hands it the free service (the controller raises it in steps).
    web = (
        f"web: {{host: 127.0.0.1, port: {free_port()}, "
        f"store_url: 'sqlite:///{tmp_path / 'peak.db'}'}}\n"
    )
    planner_extra = "  demand_charge_per_kw: 10\n" + ("" if hold else "  hold_peak: false\n")
    config = _config(tmp_path, planner_extra + web)
    clock = SystemClock()
    mpc = _learned(planner_from_section(config.planner, config.site, tmp_path))
    link = FakeChargerLink(config.site.chargers, clock)
    sup = Supervisor(
        config,
        clock=clock,
        link=link,
        options=SupervisorOptions(poll_meters=False, planner=mpc, web=True),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(sup.run(stop))
    try:
        await asyncio.wait_for(sup.started.wait(), 5)
        link.connect("cp1")
        link.start_session("cp1", departure_s=clock.now_s() + 10 * H, energy_wh=10_000.0)
        planner = sup.planner
        assert planner is not None
        await until(lambda: planner.latest is not None and len(planner.latest.sessions) == 1)
        assert sup.web is not None
        runtime = sup.web.runtime
        if not hold:
            await until(lambda: link.applied_a.get("cp1", 0.0) >= 12.0, why=lambda: link.applied_a)
            assert runtime.view().held_peak_kw is None
            return
        await until(
            lambda: link.applied_a.get("cp1") == pytest.approx(6.0, abs=0.2),
            why=lambda: link.applied_a,
        )
        await asyncio.sleep(1.0)  # many control periods later it still holds
        assert link.applied_a.get("cp1") == pytest.approx(6.0, abs=0.2)
        policy = planner.policy(sup.policy, clock.now_s())
        assert policy.planned_ceiling_w == pytest.approx(6 * 3 * 230, rel=0.02)
        # The dashboard is told what is held (its policy line says so).
        assert runtime.view().held_peak_kw == pytest.approx(6 * 3 * 0.230, rel=0.02)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


# Ten past drivers who declared 8 h and stayed them: what a planner that has learned stays
# holds (``DriverHistory`` teaches them once ten sessions have ended).
STAYS = ((8 * H, 1.0),) * 10


def _learned(mpc: RecedingHorizonPlanner) -> RecedingHorizonPlanner:
    return replace(mpc, stay_samples=STAYS)


def _config(tmp_path: Path, planner_extra: str) -> SiteConfig:
    path = tmp_path / "site.yaml"
    path.write_text(SITE + planner_extra, encoding="utf-8")
    return load_config(path)


async def test_the_peak_so_far_survives_a_restart_through_the_recorders_series(
    tmp_path: Path,
) -> None:
    # The store holds what the web recorder wrote before the restart: for the last hour the
    # service carried 10 A of building and 10 A of cars per line (13.8 kW), but 30 A of cars
    # during one earlier quarter hour (27.6 kW). On start the planner knows that peak.
    db = tmp_path / "kept.db"
    kept = open_store(f"sqlite:///{db}")
    now = SystemClock().now_s()
    peak_window = math.floor((now - 2400.0) / 900.0) * 900.0
    points = []
    for t in range(int(now - 3600), int(now), 10):
        ev = 30.0 if peak_window <= t < peak_window + 900 else 10.0
        for line in ("L1", "L2", "L3"):
            points.append(SeriesPoint(series=f"node:main:{line}:other_a", t_s=float(t), value=10.0))
            points.append(SeriesPoint(series=f"node:main:{line}:ev_a", t_s=float(t), value=ev))
    kept.append(points)
    kept.close()
    web = f"web: {{host: 127.0.0.1, port: {free_port()}, store_url: 'sqlite:///{db}'}}\n"
    config = _config(tmp_path, "  demand_charge_per_kw: 10\n" + web)
    mpc = planner_from_section(config.planner, config.site, tmp_path)
    clock = SystemClock()
    sup = Supervisor(
        config,
        clock=clock,
        link=FakeChargerLink(config.site.chargers, clock),
        options=SupervisorOptions(poll_meters=False, planner=mpc, web=True),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(sup.run(stop))
    try:
        await asyncio.wait_for(sup.started.wait(), 5)
        assert sup.planner is not None
        assert sup.planner.peak.peak_kw == pytest.approx((10 + 30) * 3 * 230 / 1000)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


def test_stored_windows_need_every_series_and_the_seed_only_this_periods_closed_ones() -> None:
    site = _config_site()
    data = {
        "node:main:L1:other_a": [(0.0, 10.0), (900.0, 10.0), (1800.0, 10.0)],
        "node:main:L2:other_a": [(0.0, 10.0), (900.0, 10.0), (1800.0, 10.0)],
        "node:main:L3:other_a": [(0.0, 10.0), (900.0, 10.0), (1800.0, 10.0)],
        "node:main:L1:ev_a": [(0.0, 5.0), (900.0, 40.0), (1800.0, 60.0)],
        "node:main:L2:ev_a": [(0.0, 5.0), (900.0, 40.0), (1800.0, 60.0)],
        "node:main:L3:ev_a": [(0.0, 5.0), (1800.0, 60.0)],  # L3 has no 900 s window
    }
    windows = stored_import_windows(
        lambda name, start, end, res: data[name], site, now_s=2000.0, window_s=900.0
    )
    assert windows == [
        (0.0, pytest.approx(15 * 3 * 0.23)),
        (1800.0, pytest.approx(70 * 3 * 0.23)),
    ]
    peak = PeakSoFar(billing_period=lambda t: 0 if t < 1000 else 1, window_s=900.0)
    # now_s = 2000: the 1800 s window has not ended; the 0 s one is in another period.
    peak.seed(windows, now_s=2000.0)
    assert peak.peak_kw == 0.0
    peak.seed(windows, now_s=2700.0)
    assert peak.peak_kw == pytest.approx(70 * 3 * 0.23)


def _config_site() -> Site:
    return parse_config(SITE).site
