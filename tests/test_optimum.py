"""The offline optimum: an upper bound, exact on a single line, and consistent with itself."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_flow

from ampshare.core.planner import Linearisation, PlanInput, plan
from ampshare.core.site import (
    Charger,
    CircuitNode,
    Connection,
    NodeKind,
    PrimaryWinding,
    Site,
    TransformerPrimary,
    VoltageSystem,
)
from ampshare.core.snapshot import Session
from ampshare.core.tariff import PriceSeries, Tariff
from ampshare.errors import InputError
from ampshare.sim.data import SessionRecord
from ampshare.sim.optimum import assign_chargers, offline_optimum, online_ideal
from ampshare.sim.optimum_min import offline_optimum_min
from ampshare.sim.series import TimeSeries

H = 3600.0


def line_site(limit_a: float, n: int) -> Site:
    root = CircuitNode(
        id="main", kind=NodeKind.SERVICE, parent_id=None, line_limit_a=(limit_a, math.inf, math.inf)
    )
    return Site(
        name="one-line",
        voltage=VoltageSystem.EU_230,
        nodes=(root,),
        chargers=tuple(
            Charger(id=f"c{i}", node_id="main", connection=Connection.L1, max_current_a=16.0)
            for i in range(n)
        ),
    )


def acn_site() -> Site:
    root = CircuitNode(
        id="tx",
        kind=NodeKind.TRANSFORMER,
        parent_id=None,
        line_limit_a=(100.0,) * 3,
        primary=TransformerPrimary(
            winding=PrimaryWinding.DELTA, winding_ratio=4.0, line_limit_a=40.0
        ),
    )
    conns = [Connection.L1_L2, Connection.L2_L3, Connection.L3_L1]
    return Site(
        name="acn",
        voltage=VoltageSystem.US_120_208,
        nodes=(root,),
        chargers=tuple(
            Charger(id=f"e{i}", node_id="tx", connection=conns[i % 3], max_current_a=32.0)
            for i in range(6)
        ),
    )


def rec(i: int, station: str, a_h: float, d_h: float, kwh: float) -> SessionRecord:
    return SessionRecord(
        session_id=f"r{i}",
        station_id=station,
        arrival_s=a_h * H,
        departure_s=d_h * H,
        energy_wh=kwh * 1000,
    )


def test_single_line_optimum_equals_max_flow() -> None:
    # 20 A line, 16 A chargers, hourly slots: capacity and needs are whole ampere-hours.
    sessions = [
        rec(0, "c0", 0, 3, 16 * 0.23 * 3),
        rec(1, "c1", 1, 4, 16 * 0.23 * 2),
        rec(2, "c2", 2, 3, 16 * 0.23),
        rec(3, "c0", 5, 6, 1.0),
    ]
    res = offline_optimum(line_site(20.0, 3), sessions, step_s=H)
    # max-flow in ampere-hours: source -> session (need) -> hour (16 A) -> sink (20 A)
    needs = [48, 32, 16, round(1000 / 230)]
    windows = [(0, 3), (1, 4), (2, 3), (5, 6)]
    n = 2 + 4 + 6
    cap = np.zeros((n, n), dtype=np.int32)
    for i, (need, (a, d)) in enumerate(zip(needs, windows, strict=True)):
        cap[0, 1 + i] = need
        cap[1 + i, 5 + a : 5 + d] = 16
    cap[5:11, n - 1] = 20
    flow = maximum_flow(csr_matrix(cap), 0, n - 1).flow_value
    assert res.energy_delivered_wh == pytest.approx((flow - needs[3]) * 230.0 + 1000.0)
    assert res.stretches == 2
    assert res.delivered_wh[3] == pytest.approx(1000.0)


def test_optimum_bounds_the_conservative_plan_and_decomposes_exactly() -> None:
    site = acn_site()
    sessions = [rec(i, f"e{i % 6}", 0.25 * i, 0.25 * i + 3 + i % 4, 30.0) for i in range(6)]
    sessions += [rec(6 + i, f"e{i}", 10 + i, 14 + i, 20.0) for i in range(3)]
    res = offline_optimum(site, sessions, step_s=900.0)
    assert res.stretches == 2
    whole = [
        Session(
            session_id=r.session_id,
            charger_id=r.station_id,
            arrival_s=r.arrival_s,
            departure_s=r.departure_s,
            energy_wanted_wh=r.energy_wh,
        )
        for r in sessions
    ]
    base = {"site": site, "start_s": 0.0, "slot_s": 900.0, "n_slots": 72, "sessions": tuple(whole)}
    outer = plan(PlanInput(**base, linearisation=Linearisation.CIRCUMSCRIBED))  # type: ignore[arg-type]
    inner = plan(PlanInput(**base))  # type: ignore[arg-type]
    e_outer = sum(s.expected_wh for s in outer.sessions)
    e_inner = sum(s.expected_wh for s in inner.sessions)
    assert res.energy_delivered_wh == pytest.approx(e_outer, rel=1e-6)  # stretches are exact
    assert e_inner <= res.energy_delivered_wh
    assert e_inner >= res.energy_delivered_wh * math.cos(math.radians(5.0)) - 1e-6
    assert res.energy_delivered_wh < res.energy_requested_wh  # the primary really binds


def test_power_profile_carries_the_delivered_energy_and_is_costed() -> None:
    tariff = Tariff(
        name="flat",
        energy=PriceSeries(start_s=0.0, step_s=H, prices_per_kwh=(0.25,) * 24),
        demand_charge_per_kw_override=10.0,
    )
    sessions = [rec(0, "c0", 0.5, 2.25, 5.0), rec(1, "c1", 1.0, 3.0, 2.0)]
    building = TimeSeries(t_s=np.array([0.0, 2 * H]), values=np.array([1.0, 3.0]), unit="kW")
    res = offline_optimum(line_site(40.0, 2), sessions, building, step_s=900.0, tariff=tariff)
    assert res.energy_delivered_wh == pytest.approx(5000.0 + 2000.0)
    assert (res.ev_kw * 0.25).sum() == pytest.approx(7.0)
    assert res.cost is not None
    total_kwh = ((res.ev_kw + res.building_kw) * 0.25).sum()
    assert res.cost.energy_cost == pytest.approx(0.25 * total_kwh)
    assert res.cost.demand_charge == pytest.approx(10.0 * res.peak_kw, rel=1e-6)
    m = res.metrics()
    assert m["energy_delivered_ratio"] == 1.0
    assert m["demands_met_ratio"] == 1.0


def test_building_load_takes_headroom() -> None:
    sessions = [rec(0, "c0", 0, 2, 100.0)]
    load = TimeSeries(t_s=np.array([0.0]), values=np.array([[10.0, 0.0, 0.0]]), unit="A")
    free = offline_optimum(line_site(16.0, 1), sessions, step_s=H)
    busy = offline_optimum(line_site(16.0, 1), sessions, load, step_s=H)
    assert free.energy_delivered_wh == pytest.approx(2 * 16 * 230.0)
    assert busy.energy_delivered_wh == pytest.approx(2 * 6 * 230.0)


def test_chargers_are_assigned_like_the_replay() -> None:
    site = line_site(100.0, 2)
    sessions = [
        rec(0, "c0", 0, 5, 1.0),
        rec(1, "c0", 1, 2, 1.0),
        rec(2, "zz", 1.5, 3, 1.0),
        rec(3, "c0", 2.5, 3, 1.0),
        rec(4, "c1", 4, 6, 1.0),
    ]
    assert assign_chargers(site, sessions) == ["c0", "c1", None, "c1", "c1"]
    res = offline_optimum(site, sessions, step_s=900.0)
    assert res.delivered_wh[2] == 0.0
    assert res.demands_met_ratio == pytest.approx(4 / 5)
    with pytest.raises(InputError, match="step must be positive"):
        offline_optimum(site, sessions, step_s=0.0)


def test_minimum_current_bound_is_exact_where_only_one_car_fits_at_its_minimum() -> None:
    # 10 A line, two cars of 7 A (vehicle limit) with a 6 A minimum, one hour in 5-minute
    # steps: the continuous optimum shares 10 A; with the minimum only one car runs at a time
    # (7 + 0.9 * 6 > 10), plus each car's one step at 6 A outside the rule.
    sessions = [rec(0, "c0", 0, 1, 100.0), rec(1, "c1", 0, 1, 100.0)]
    site = line_site(10.0, 2)
    res = offline_optimum_min(site, sessions, step_s=300.0, vehicle_max_current_a=7.0)
    slack_wh = 2 * 6.0 * 230.0 * 300.0 / H
    assert res.lp_bound_wh == pytest.approx(10.0 * 230.0)
    assert res.bound_wh == pytest.approx(7.0 * 230.0 + slack_wh, rel=1e-3)
    assert res.incumbent_wh <= res.bound_wh + 1e-6
    assert res.incumbent_wh == pytest.approx(res.bound_wh, rel=2e-3)
    assert res.timed_out == 0
    continuous = offline_optimum(site, sessions, step_s=300.0, vehicle_max_current_a=7.0)
    assert continuous.energy_delivered_wh == pytest.approx(res.lp_bound_wh, rel=1e-6)
    m = res.metrics()
    assert m["energy_bound_kwh"] == pytest.approx(res.bound_wh / 1000, abs=1e-3)


def test_minimum_current_bound_lies_between_a_feasible_schedule_and_the_continuous_one() -> None:
    site = acn_site()
    sessions = [rec(i, f"e{i % 6}", 0.25 * i, 0.25 * i + 3 + i % 4, 30.0) for i in range(6)]
    res = offline_optimum_min(site, sessions, step_s=900.0, time_limit_s=20.0)
    assert res.incumbent_wh <= res.bound_wh + 1e-6 <= res.lp_bound_wh + 2e-6
    assert res.incumbent_wh > 0.9 * res.lp_bound_wh
    assert res.mip_gap <= 1e-3 or res.timed_out
    whole = offline_optimum(site, sessions, step_s=900.0)
    assert res.lp_bound_wh == pytest.approx(whole.energy_delivered_wh, rel=1e-6)


def test_pilot_steps_hold_a_stepped_charger_to_its_allowed_currents() -> None:
    # A 20 A line and a charger that only takes 8, 16, 24 or 32 A: with steps the car holds
    # 16 A (plus its one step at 8 A outside the rule); without, it takes the whole 20 A.
    root = CircuitNode(
        id="main", kind=NodeKind.SERVICE, parent_id=None, line_limit_a=(20.0, math.inf, math.inf)
    )
    stepped = Charger(
        id="c0",
        node_id="main",
        connection=Connection.L1,
        max_current_a=32.0,
        min_current_a=8.0,
        allowed_currents_a=(8.0, 16.0, 24.0, 32.0),
    )
    site = Site(name="cc", voltage=VoltageSystem.EU_230, nodes=(root,), chargers=(stepped,))
    sessions = [rec(0, "c0", 0, 1, 100.0)]
    free = offline_optimum_min(site, sessions, step_s=300.0, start_loss=0.0)
    steps = offline_optimum_min(site, sessions, step_s=300.0, start_loss=0.0, pilot_steps=True)
    assert free.bound_wh == pytest.approx(20.0 * 230.0, rel=1e-4)
    assert steps.bound_wh == pytest.approx((16.0 + 8.0 / 12) * 230.0, rel=1e-3)
    with pytest.raises(InputError, match="start_loss"):
        offline_optimum_min(site, sessions, start_loss=1.0)


def _pod_site() -> Site:
    """30 A on one line; chargers c1 and c2 behind a 16 A pod, c0 beside it."""
    root = CircuitNode(
        id="main", kind=NodeKind.SERVICE, parent_id=None, line_limit_a=(30.0, math.inf, math.inf)
    )
    pod = CircuitNode(
        id="pod", kind=NodeKind.SUBPANEL, parent_id="main", line_limit_a=(16.0, math.inf, math.inf)
    )
    return Site(
        name="pod",
        voltage=VoltageSystem.EU_230,
        nodes=(root, pod),
        chargers=(
            Charger(id="c0", node_id="main", connection=Connection.L1, max_current_a=32.0),
            Charger(id="c1", node_id="pod", connection=Connection.L1, max_current_a=32.0),
            Charger(id="c2", node_id="pod", connection=Connection.L1, max_current_a=32.0),
        ),
    )


def test_the_online_ideal_loses_only_what_an_unknown_arrival_costs() -> None:
    """A (pod, leaves at 4 h) and C (beside it, leaves at 2 h) share 30 A from 0 h; B comes at
    2 h to the pod and needs all of it until 4 h. Knowing B, A takes its 16 A from the start
    and C the rest: everyone is served (92 A·h). Not knowing B, the plan gives C (leaving
    first) the whole 30 A for a while, A is not done by 2 h and then shares the pod with B."""
    site = _pod_site()
    a_h = 230.0 / 1000  # kWh per A·h
    recs = (
        rec(0, "c1", 0.0, 4.0, 32 * a_h),  # A
        rec(1, "c0", 0.0, 2.0, 28 * a_h),  # C
        rec(2, "c2", 2.0, 4.0, 32 * a_h),  # B
    )
    best = offline_optimum(site, recs, step_s=300.0)
    online = online_ideal(site, recs, step_s=300.0)
    assert best.energy_delivered_wh == pytest.approx(92 * 230.0, rel=1e-4)
    assert online.plans == 2  # at 0 h and at B's arrival
    assert online.not_optimal == 0
    assert online.delivered_wh[1] == pytest.approx(28 * 230.0, rel=1e-4)  # C is served
    # The pod carries at most 16 A x 2 h after B comes, whoever gets it: A's shortfall at
    # 2 h is lost for good.
    assert online.delivered_wh[0] + online.delivered_wh[2] <= (32 + 32) * 230.0 - 5 * 230.0
    assert online.energy_delivered_wh <= best.energy_delivered_wh - 5 * 230.0
    # Arriving together, nothing is unknown: the online plan is the offline one.
    together = (
        rec(0, "c1", 0.0, 4.0, 32 * a_h),
        rec(1, "c0", 0.0, 2.0, 28 * a_h),
        rec(2, "c2", 0.0, 4.0, 32 * a_h),
    )
    assert online_ideal(site, together).energy_delivered_wh == pytest.approx(
        offline_optimum(site, together).energy_delivered_wh, rel=1e-6
    )
