"""Receding-horizon wrapper, targets for the live allocator, defaults, and the load forecast."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ampshare.core.allocation import Policy, PolicyName, RotationState
from ampshare.core.planner import (
    PlanInput,
    PlanStatus,
    Prefer,
    RecedingHorizonPlanner,
    SessionDefaults,
    SiteForecast,
    apply_defaults,
    charging_sessions,
    forecast_profile,
    learn_defaults,
    plan,
    policy_at,
    targets_at,
)
from ampshare.core.site import Charger, CircuitNode, Connection, NodeKind, Site, VoltageSystem
from ampshare.core.snapshot import Session
from ampshare.core.tariff import PriceSeries, Tariff
from ampshare.errors import InputError

H = 3600.0
DAY = 86400.0
WEEK = 7 * DAY


def site(limit_a: float = 32.0, n: int = 2) -> Site:
    root = CircuitNode(
        id="main", kind=NodeKind.SERVICE, parent_id=None, line_limit_a=(limit_a, math.inf, math.inf)
    )
    chargers = tuple(
        Charger(id=f"c{i}", node_id="main", connection=Connection.L1, max_current_a=32.0)
        for i in range(n)
    )
    return Site(name="home", voltage=VoltageSystem.EU_230, nodes=(root,), chargers=chargers)


def car(
    sid: str,
    charger: str,
    arrival: float,
    departure: float | None,
    wh: float | None,
    user: str | None = None,
    delivered: float = 0.0,
) -> Session:
    return Session(
        session_id=sid,
        charger_id=charger,
        arrival_s=arrival,
        departure_s=departure,
        energy_wanted_wh=wh,
        user_id=user,
        energy_delivered_wh=delivered,
    )


def test_targets_follow_the_slot_and_policy_falls_back_to_deadline() -> None:
    sessions = (
        car("a", "c0", 0.0, 100.0 + H, 32 * 230.0),
        car("b", "c1", 0.0, 9 * H, 32 * 230.0),
    )
    p = plan(PlanInput(site=site(), start_s=100.0, slot_s=H, n_slots=2, sessions=sessions))
    # "a" leaves after the first slot, so only that order delivers both.
    assert targets_at(p, 100.0) == pytest.approx({"a": 32.0, "b": 0.0})
    assert targets_at(p, 100.0 + H + 5) == pytest.approx({"a": 0.0, "b": 32.0})
    assert targets_at(p, 99.0) == {}
    assert targets_at(p, 100.0 + 2 * H) == {}
    pol = policy_at(p, 100.0)
    assert pol.name is PolicyName.PLANNED
    assert dict(pol.planned_targets_a) == pytest.approx({"a": 32.0, "b": 0.0})
    assert policy_at(None, 0.0).name is PolicyName.DEADLINE
    late = PlanInput(site=site(), start_s=0.0, slot_s=H, n_slots=2, sessions=sessions)
    assert policy_at(plan(late), 3 * H, fallback=Policy(name=PolicyName.EQUAL)).name is (
        PolicyName.EQUAL
    )


def test_warnings_name_cars_that_will_not_be_ready() -> None:
    sessions = (
        car("short", "c0", 0.0, 1 * H, 20_000.0, delivered=1000.0),
        car("fine", "c1", 0.0, 3 * H, 5_000.0),
        car("later", "c1", 0.0, 30 * H, 900_000.0),
    )
    p = plan(PlanInput(site=site(64.0), start_s=0.0, slot_s=H, n_slots=4, sessions=sessions))
    by_id = {s.session_id: s for s in p.sessions}
    assert by_id["short"].expected_wh == pytest.approx(1000.0 + 32 * 230.0)
    assert by_id["short"].will_not_be_ready
    assert not by_id["fine"].will_not_be_ready
    assert by_id["fine"].expected_wh == pytest.approx(5000.0)
    assert not by_id["later"].departure_in_horizon
    assert not by_id["later"].will_not_be_ready  # beyond the horizon: no verdict yet
    assert [s.session_id for s in p.warnings] == ["short"]


def test_receding_horizon_replans_on_interval_and_on_arrivals() -> None:
    tariff = Tariff(
        name="flat", energy=PriceSeries(start_s=0.0, step_s=H, prices_per_kwh=(0.2,) * 48)
    )
    mpc = RecedingHorizonPlanner(
        site=site(),
        horizon_s=6 * H,
        slot_s=900.0,
        replan_interval_s=1800.0,
        tariff=tariff,
        time_limit_s=None,
    )
    one = [car("a", "c0", 0.0, 4 * H, 10_000.0)]
    p0 = mpc.step(0.0, one)
    assert p0.status is PlanStatus.OPTIMAL
    assert p0.n_slots == 24
    assert mpc.step(600.0, one) is p0  # nothing changed, interval not over
    two = [*one, car("b", "c1", 700.0, 3 * H, 8_000.0)]
    p1 = mpc.step(700.0, two)
    assert p1 is not p0
    assert p1.start_s == 700.0
    assert set(p1.session_ids) == {"a", "b"}
    assert mpc.step(700.0 + 1800.0, two) is not p1  # the interval ran out
    assert mpc.replans == 3
    assert mpc.step(3000.0, one).session_ids == ("a",)  # a departure re-plans too


def test_the_first_slot_floor_holds_only_the_cars_that_charge() -> None:
    # "a" leaves in an hour and could take the whole 32 A line; "b" and "c" stay ten hours
    # and want little. A car that charges keeps its 6 A minimum in the plan's first slot (the
    # allocator does not stop it); one that does not charge may wait, so "a" gets its share.
    sessions = [
        car("a", "c0", 0.0, 1 * H, 32 * 230.0),
        car("b", "c1", 0.0, 10 * H, 2_000.0),
        car("c", "c2", 0.0, 10 * H, 2_000.0),
    ]

    def first_slot(charging: frozenset[str] | None) -> dict[str, float]:
        mpc = RecedingHorizonPlanner(site=site(n=3), horizon_s=12 * H, slot_s=H, time_limit_s=None)
        return targets_at(mpc.step(0.0, sessions, charging=charging), 0.0)

    assert first_slot(None) == pytest.approx({"a": 20.0, "b": 6.0, "c": 6.0})
    assert first_slot(frozenset({"a", "b"})) == pytest.approx({"a": 26.0, "b": 6.0, "c": 0.0})
    assert first_slot(frozenset())["a"] == pytest.approx(32.0)


def test_prefer_ready_completes_the_car_closest_to_its_request_for_the_same_energy() -> None:
    # Three hours of one 32 A line (22.08 kWh) for two cars leaving together: "a" wants 6 kWh,
    # "b" 30. Every split delivers 22.08 kWh; READY gives "a" all it asked for (with ENERGY
    # HiGHS happens to pick the plan that gives it nothing: a tie).
    sessions = (car("a", "c0", 0.0, 3 * H, 6_000.0), car("b", "c1", 0.0, 3 * H, 30_000.0))
    got = {}
    for prefer in Prefer:
        inp = PlanInput(
            site=site(), start_s=0.0, slot_s=H, n_slots=3, sessions=sessions, prefer=prefer
        )
        got[prefer] = {s.session_id: s.expected_wh for s in plan(inp).sessions}
        assert sum(got[prefer].values()) == pytest.approx(3 * 32 * 230.0)
    assert got[Prefer.READY]["a"] == pytest.approx(6_000.0)


def test_charging_sessions_are_those_the_allocator_keeps_charging() -> None:
    sessions = [car(x, f"c{i}", 0.0, H, None) for i, x in enumerate("abcd")]
    rotation = RotationState(
        charging_since_s={"c0": 10.0, "c1": 20.0, "x": 5.0},  # x: no session there
        paused_since_s={"c1": 30.0, "c2": 40.0},  # c1 started, then paused
    )
    assert charging_sessions(sessions, rotation) == {"a"}
    # no decision yet: the allocator keeps nobody, so the plan floors nobody
    assert charging_sessions(sessions, RotationState()) == frozenset()


def test_undeclared_departures_and_energies_come_from_learned_defaults() -> None:
    history = [
        car(
            f"h{i}",
            "c0",
            i * DAY,
            i * DAY + (6 + i % 3) * H,
            None,
            user="ann",
            delivered=10_000.0 + 1000 * i,
        )
        for i in range(5)
    ]
    history += [car("x", "c1", 0.0, 2 * H, None, user="bob", delivered=3000.0)]
    d = learn_defaults(history)
    assert d.per_user["ann"] == pytest.approx((7 * H, 12_000.0))
    assert "bob" not in d.per_user  # one session is not enough to learn from
    assert d.dwell_s == pytest.approx(6.5 * H)  # 2, 6, 6, 7, 7, 8 h over the site
    filled = apply_defaults(
        [
            car("n", "c0", 100.0, None, None, user="ann"),
            car("m", "c1", 100.0, 500.0, None, user="eve"),
        ],
        d,
    )
    assert (filled[0].departure_s, filled[0].energy_wanted_wh) == (100.0 + 7 * H, 12_000.0)
    assert (filled[1].departure_s, filled[1].energy_wanted_wh) == (500.0, d.energy_wh)
    assert learn_defaults([]) == SessionDefaults()


def test_forecast_takes_the_same_weekday_and_time_with_a_safety_quantile() -> None:
    t = np.arange(0.0, 4 * WEEK, 900.0)
    week_shape = 10.0 + 5.0 * np.sin(2 * np.pi * t / WEEK)  # repeats every week
    noise = np.repeat(np.array([0.0, 1.0, 2.0, 3.0]), len(t) // 4)  # week k adds k
    start = 4 * WEEK + 3 * DAY
    f = forecast_profile(
        t, week_shape + noise, start_s=start, slot_s=900.0, n_slots=96, quantile=1.0
    )
    expected = 10.0 + 5.0 * np.sin(2 * np.pi * (start + 900.0 * np.arange(96)) / WEEK) + 3.0
    assert f == pytest.approx(expected, abs=0.2)
    low = forecast_profile(
        t, week_shape + noise, start_s=start, slot_s=900.0, n_slots=96, quantile=0.0
    )
    assert low == pytest.approx(expected - 3.0, abs=0.2)


def test_a_slot_that_straddles_a_step_of_the_history_is_forecast_at_the_higher_side() -> None:
    """The plan's slots start when it is made, not on the history's grid: a 15-minute slot
    from 20:53 over a 15-minute history that falls from 15 to 5 at 21:00 carries 15 for its
    first seven minutes, so the load forecast (high quantile) must say 15 although the slot's
    middle is past 21:00; and a slot from 20:50 must read 5 at the low quantile (as PV is
    forecast) although its middle is before."""
    t = np.arange(0.0, 2 * WEEK, 900.0)
    evening = np.where((t % DAY) < 21 * H, 15.0, 5.0)
    start = 2 * WEEK + 20 * H + 53 * 60
    high = forecast_profile(t, evening, start_s=start, slot_s=900.0, n_slots=2, lookbacks=2)
    assert high == pytest.approx([15.0, 5.0])
    low = forecast_profile(
        t, evening, start_s=start - 180.0, slot_s=900.0, n_slots=1, lookbacks=2, quantile=0.0
    )
    assert low == pytest.approx([5.0])


def test_forecast_without_history_is_pessimistic_and_keeps_columns() -> None:
    t = np.arange(0.0, WEEK, 3600.0)
    v = np.column_stack([np.full(t.shape, 5.0), np.linspace(0.0, 20.0, t.size)])
    f = forecast_profile(t, v, start_s=WEEK + 2 * DAY, slot_s=900.0, n_slots=8)
    assert f.shape == (8, 2)
    assert f[:, 0] == pytest.approx(5.0)
    gap = forecast_profile(t, v, start_s=10 * WEEK, slot_s=900.0, n_slots=3)
    assert gap == pytest.approx(np.tile([5.0, 20.0], (3, 1)))  # history max
    with pytest.raises(InputError, match="quantile"):
        forecast_profile(t, v, start_s=0.0, slot_s=900.0, n_slots=1, quantile=2.0)


def test_forecast_feeds_the_planner_as_lost_headroom() -> None:
    s = site(32.0, 1)
    t = np.arange(0.0, 2 * WEEK, 900.0)
    load = np.where((t % DAY) < 12 * H, 20.0, 0.0)  # mornings busy on L1
    lines = np.column_stack(
        [
            forecast_profile(t, load, start_s=2 * WEEK, slot_s=H, n_slots=24),
            np.zeros(24),
            np.zeros(24),
        ]
    )
    p = plan(
        PlanInput(
            site=s,
            start_s=2 * WEEK,
            slot_s=H,
            n_slots=24,
            sessions=(car("a", "c0", 2 * WEEK, 2 * WEEK + DAY, None),),
            forecast=SiteForecast(building_line_a={"main": lines}),
        )
    )
    assert p.current_a[0, :12] == pytest.approx([12.0] * 12)
    assert p.current_a[0, 12:] == pytest.approx([32.0] * 12)
