"""The planner in the live loop (``ampshare run`` with ``planner: {enabled: true}``) and in the
API (``GET /api/v1/plan``): the controller follows the plan's targets, the API shows each car's
expected energy by its departure and which cars will not be ready."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from ampshare.adapters.ocpp import FakeChargerLink
from ampshare.app import Supervisor, SupervisorOptions
from ampshare.app._planner import LivePlanner
from ampshare.clock import SystemClock, VirtualClock
from ampshare.config import SiteConfig, load_config
from ampshare.config.tariff_files import planner_from_section
from ampshare.core.allocation import Policy, PolicyName, RotationState
from ampshare.core.planner import PlanInput, RecedingHorizonPlanner, plan, targets_at
from ampshare.core.snapshot import ChargerState, Session
from ampshare.store import SessionRecord, SqlStore, open_store
from ampshare.web import InMemoryRuntime, Role, TokenAuth, create_app
from ampshare.web.testing import free_port, serve

H = 3600.0
SITE = """
site: Garage
voltage: "230/400"
nodes:
  - id: main
    limit_a: 32
chargers:
  - {id: cp1, node: main, max_a: 32}
  - {id: cp2, node: main, max_a: 32}
policy: {name: planned}
control:
  max_period_s: 0.2
  min_interval_s: 0.05
  ev_reaction_s: 0.2
  min_charge_s: 0
  deadband_a: 0.5
planner:
  enabled: true
  horizon_h: 12
  slot_s: 900
"""


async def until(cond: Callable[[], bool], timeout_s: float = 10.0,
                why: Callable[[], object] = lambda: "") -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while not cond():
        assert loop.time() < end, f"condition not reached in time: {why()}"
        await asyncio.sleep(0.02)


async def test_the_live_loop_follows_the_plan_and_warns_of_a_car_that_will_not_be_ready(
    tmp_path: Path,
) -> None:
    config = config_in(tmp_path)
    clock = SystemClock()
    mpc = planner_from_section(config.planner, config.site, tmp_path)
    link = FakeChargerLink(config.site.chargers, clock)
    sup = Supervisor(config, clock=clock, link=link, options=SupervisorOptions(
        poll_meters=False, planner=mpc))
    stop = asyncio.Event()
    task = asyncio.create_task(sup.run(stop))
    try:
        await asyncio.wait_for(sup.started.wait(), 5)
        now = clock.now_s()
        for cid in ("cp1", "cp2"):
            link.connect(cid)
        # cp1's car leaves in 1 h and wants more than 32 A for that hour can give (22 kWh);
        # cp2's has all day for 10 kWh. The plan gives cp1 all it may and warns about it.
        link.start_session("cp1", departure_s=now + H, energy_wh=30_000.0)
        link.start_session("cp2", departure_s=now + 10 * H, energy_wh=10_000.0)
        planner = sup.planner
        assert planner is not None
        await until(lambda: planner.latest is not None and len(planner.latest.sessions) == 2)
        p = planner.latest
        assert p is not None
        assert p.status.usable
        by_charger = {sp.charger_id: sp for sp in p.sessions}
        assert by_charger["cp1"].will_not_be_ready
        assert not by_charger["cp2"].will_not_be_ready
        assert by_charger["cp2"].expected_wh == pytest.approx(10_000.0, rel=1e-3)
        assert [sp.charger_id for sp in p.warnings] == ["cp1"]
        targets = planner.policy(sup.policy, clock.now_s()).planned_targets_a
        by_id = {sp.session_id: sp.charger_id for sp in p.sessions}
        target = {by_id[sid]: a for sid, a in targets.items()}
        # cp2 keeps its 6 A minimum now (as the allocator will), cp1 gets the rest.
        assert target["cp1"] == pytest.approx(26.0, abs=0.1)
        assert target["cp2"] == pytest.approx(6.0, abs=0.1)
        # The controller follows the targets (not an equal 16/16 split).
        await until(lambda: link.applied_a.get("cp1") == pytest.approx(26.0, abs=0.2)
                    and link.applied_a.get("cp2") == pytest.approx(6.0, abs=0.2),
                    why=lambda: link.applied_a)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_the_live_planner_learns_from_the_sessions_the_store_kept(tmp_path: Path) -> None:
    # Nine drivers who declared 2 h and stayed 3, 4 or 5 h, and one who declared nothing and
    # stayed 6 h: on start the plan's default stay is their median true stay (4 h) and their
    # stays against what they declared are its stay samples.
    db = tmp_path / "kept.db"
    kept = open_store(f"sqlite:///{db}")
    t0 = 1_750_000_000.0
    kept_stays = [(2, 3), (2, 4), (2, 5)] * 3 + [(None, 6)]
    for i, (declared_h, stayed_h) in enumerate(kept_stays):
        departure = None if declared_h is None else t0 + declared_h * H
        s = Session(session_id=f"old{i}", charger_id="cp1", arrival_s=t0,
                    departure_s=departure, energy_delivered_wh=5_000.0)
        kept.save_session(SessionRecord(session=s, ended_s=t0 + stayed_h * H))
    kept.close()
    path = tmp_path / "site.yaml"
    path.write_text(SITE + f"web: {{host: 127.0.0.1, port: {free_port()}, "
                    f"store_url: 'sqlite:///{db}'}}\n", encoding="utf-8")
    config = load_config(path)
    clock = SystemClock()
    mpc = planner_from_section(config.planner, config.site, tmp_path)
    sup = Supervisor(config, clock=clock, link=FakeChargerLink(config.site.chargers, clock),
                     options=SupervisorOptions(poll_meters=False, planner=mpc, web=True))
    stop = asyncio.Event()
    task = asyncio.create_task(sup.run(stop))
    try:
        await asyncio.wait_for(sup.started.wait(), 5)
        assert mpc.defaults.dwell_s == pytest.approx(4 * H)
        assert sorted(mpc.stay_samples) == pytest.approx(
            sorted([(2 * H, 1.5), (2 * H, 2.0), (2 * H, 2.5)] * 3 + [(4 * H, 1.5)]))
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


def config_in(tmp_path: Path) -> SiteConfig:
    path = tmp_path / "site.yaml"
    path.write_text(SITE, encoding="utf-8")
    return load_config(path)


def test_without_a_usable_plan_the_planned_policy_is_deadline(tmp_path: Path) -> None:
    config = config_in(tmp_path)
    live = LivePlanner(RecedingHorizonPlanner(site=config.site))
    base = Policy(name=PolicyName.PLANNED, rotation_interval_s=600.0)
    assert live.policy(base, 0.0) == Policy(name=PolicyName.DEADLINE, rotation_interval_s=600.0)
    equal = Policy(name=PolicyName.EQUAL)
    assert live.policy(equal, 0.0) is equal  # other policies are left alone


def test_the_live_plan_keeps_the_minimum_only_for_cars_the_controller_keeps_charging(
    tmp_path: Path,
) -> None:
    # cp1's car leaves in an hour and could take the whole 32 A; cp2's stays all day and wants
    # little. Kept charging by the controller, cp2 keeps its 6 A in the plan's first slot (the
    # allocator does not stop a charging car) — even before it draws (started a moment ago);
    # paused, it can wait and cp1 gets everything, whatever its last report said.
    site = config_in(tmp_path).site
    cars = (
        Session(session_id="soon", charger_id="cp1", arrival_s=0.0, departure_s=H,
                energy_wanted_wh=32 * 3 * 230.0),
        Session(session_id="late", charger_id="cp2", arrival_s=0.0, departure_s=10 * H,
                energy_wanted_wh=2_000.0),
    )

    def first_slot(cp2_a: float, rotation: RotationState) -> dict[str, float]:
        live = LivePlanner(RecedingHorizonPlanner(site=site, horizon_s=12 * H, slot_s=900.0,
                                                  time_limit_s=None))
        states = (ChargerState(charger_id="cp1", t_s=0.0, measured_current_a=(0.0,) * 3),
                  ChargerState(charger_id="cp2", t_s=0.0, measured_current_a=(cp2_a,) * 3))
        assert live.wants(0.0, cars, states, rotation)
        return targets_at(asyncio.run(live.replan(0.0, cars)), 0.0)

    kept = RotationState(charging_since_s={"cp2": -1.0})
    paused = RotationState(charging_since_s={"cp2": -600.0}, paused_since_s={"cp2": -60.0})
    assert first_slot(0.0, kept) == pytest.approx({"soon": 26.0, "late": 6.0})
    assert first_slot(6.0, paused) == pytest.approx({"soon": 32.0, "late": 0.0})
    assert first_slot(0.0, RotationState()) == pytest.approx({"soon": 32.0, "late": 0.0})


# --- GET /api/v1/plan ------------------------------------------------------------------------

T0 = 1_750_000_020.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    s = open_store(str(tmp_path / "api.db"))
    yield s
    s.close()


def test_the_api_shows_each_cars_plan_and_who_will_not_be_ready(
    store: SqlStore, tmp_path: Path
) -> None:
    site = config_in(tmp_path).site
    clock = VirtualClock(T0)
    rt = InMemoryRuntime(site, clock, store)
    auth = TokenAuth.from_tokens({"r-token": Role.READ})
    read = {"Authorization": "Bearer r-token"}
    with serve(create_app(rt, store, auth, clock=clock)) as url, httpx.Client(
        base_url=url, timeout=10.0
    ) as client:
        r = client.get("/api/v1/plan", headers=read)
        assert r.status_code == 404  # no planner has run
        assert "no plan" in r.json()["detail"]
        assert client.get("/api/v1/plan").status_code == 401
        sessions = (
            Session(session_id="s1", charger_id="cp1", arrival_s=T0, departure_s=T0 + H,
                    energy_wanted_wh=30_000.0, energy_delivered_wh=1_000.0),
            Session(session_id="s2", charger_id="cp2", arrival_s=T0, departure_s=T0 + 20 * H,
                    energy_wanted_wh=5_000.0),
        )
        rt.set_plan(plan(PlanInput(site=site, start_s=T0, slot_s=900.0, n_slots=48,
                                   sessions=sessions)))
        body = client.get("/api/v1/plan", headers=read).json()
    assert body["status"] == "optimal"
    assert (body["made_s"], body["end_s"], body["slot_s"]) == (T0, T0 + 12 * H, 900.0)
    s1, s2 = body["sessions"]
    assert s1["session_id"] == "s1"
    # 32 A x 3 x 230 V for the hour it has
    assert s1["expected_wh"] == pytest.approx(1_000.0 + 22_080.0, abs=1.0)
    assert s1["will_not_be_ready"]
    assert s1["departure_in_horizon"]
    assert s2["expected_wh"] == pytest.approx(5_000.0, abs=1.0)
    assert not s2["departure_in_horizon"]
    assert not s2["will_not_be_ready"]
    assert body["not_ready"] == ["s1"]
