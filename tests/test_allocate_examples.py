"""Worked examples from installers' guides, and one table row per behaviour of the allocator."""

from __future__ import annotations

import pytest

from ampshare.core.allocate import allocate
from ampshare.core.allocation import (
    AllocationInput,
    ExternalCap,
    FixedLoad,
    NodeMeasurement,
    Policy,
    PolicyName,
    ReasonKind,
    RotationState,
)
from ampshare.core.electrical import node_line_currents_a, primary_line_currents_a
from ampshare.core.site import (
    Charger,
    CircuitNode,
    Connection,
    LimitUnit,
    Line,
    NodeKind,
    PrimaryWinding,
    Site,
    TransformerPrimary,
    VoltageSystem,
)
from ampshare.core.snapshot import ChargerState, Session


def _site(
    limit_a: float,
    n: int,
    *,
    conn: Connection = Connection.THREE_PHASE,
    volt: VoltageSystem = VoltageSystem.EU_230_400,
    **ch: object,
) -> Site:
    node = CircuitNode(
        id="main", kind=NodeKind.SERVICE, parent_id=None, line_limit_a=(limit_a,) * 3
    )
    chargers = tuple(
        Charger(id=f"c{i}", node_id="main", connection=conn, **ch)  # type: ignore[arg-type]
        for i in range(n)
    )
    return Site(name="t", voltage=volt, nodes=(node,), chargers=chargers)


def _sessions(n: int, **kw: object) -> tuple[Session, ...]:
    return tuple(
        Session(session_id=f"s{i}", charger_id=f"c{i}", arrival_s=float(i), **kw)  # type: ignore[arg-type]
        for i in range(n)
    )


def _limits(inp: AllocationInput) -> dict[str, float]:
    return {lim.charger_id: lim.limit_a for lim in allocate(inp).limits}


def test_static_40a_shared_by_four_chargers_gives_10a_each() -> None:
    site = _site(40.0, 4, max_current_a=32.0)
    inp = AllocationInput(
        site=site, now_s=0.0, sessions=_sessions(4), policy=Policy(name=PolicyName.STATIC)
    )
    alloc = allocate(inp)
    assert [lim.limit_a for lim in alloc.limits] == [10.0] * 4
    assert {lim.reason.kind for lim in alloc.limits} == {ReasonKind.STATIC_SHARE}


@pytest.mark.parametrize(("building_a", "left_a"), [(40.0, 160.0), (120.0, 80.0)])
def test_200a_building_leaves_the_rest_for_evs(building_a: float, left_a: float) -> None:
    # Ten cars of up to 32 A; the meter sees building plus the cars' own 10 A each.
    site = _site(200.0, 10, max_current_a=32.0)
    states = tuple(
        ChargerState(charger_id=f"c{i}", t_s=0.0, measured_current_a=(10.0,) * 3) for i in range(10)
    )
    meas = (NodeMeasurement(node_id="main", current_a=(building_a + 100.0,) * 3),)
    inp = AllocationInput(
        site=site, now_s=0.0, sessions=_sessions(10), charger_states=states, measurements=meas
    )
    alloc = allocate(inp)
    assert alloc.headroom[0].other_load_a == pytest.approx((building_a,) * 3)
    assert sum(lim.limit_a for lim in alloc.limits) == pytest.approx(left_a)
    assert alloc.headroom[0].headroom_a == pytest.approx((0.0,) * 3)


def test_100a_site_with_70a_building_load_leaves_30a() -> None:
    site = _site(100.0, 2, conn=Connection.L1, volt=VoltageSystem.EU_230, max_current_a=32.0)
    meas = (NodeMeasurement(node_id="main", current_a=(70.0, None, None)),)
    inp = AllocationInput(site=site, now_s=0.0, sessions=_sessions(2), measurements=meas)
    assert _limits(inp) == {"c0": 15.0, "c1": 15.0}


def test_floor_pauses_rather_than_going_below_minimum_and_rotates() -> None:
    site = _site(20.0, 4, max_current_a=16.0)
    inp = AllocationInput(
        site=site, now_s=10_000.0, sessions=_sessions(4), policy=Policy(rotation_interval_s=900.0)
    )
    first = allocate(inp)
    got = sorted(lim.limit_a for lim in first.limits)
    assert got[0] == 0.0
    assert all(v >= 6.0 for v in got[1:])
    assert sum(got) == pytest.approx(20.0)
    paused = [lim.charger_id for lim in first.limits if lim.limit_a == 0]
    assert [lim.reason.kind for lim in first.limits if lim.limit_a == 0] == [
        ReasonKind.PAUSED_ROTATION
    ]
    # Shortly after nothing changes; after the rotation interval the paused car starts and the
    # car that has charged longest yields.
    soon = allocate(
        AllocationInput(site=site, now_s=10_100.0, sessions=_sessions(4), rotation=first.rotation)
    )
    assert [lim.charger_id for lim in soon.limits if lim.limit_a == 0] == paused
    later = allocate(
        AllocationInput(site=site, now_s=11_000.0, sessions=_sessions(4), rotation=soon.rotation)
    )
    now_paused = [lim.charger_id for lim in later.limits if lim.limit_a == 0]
    assert now_paused != paused
    assert len(now_paused) == 1


def _paused(alloc: object) -> list[str]:
    return [lim.charger_id for lim in alloc.limits if lim.limit_a == 0]  # type: ignore[attr-defined]


def test_a_car_held_by_the_controllers_minimum_pause_keeps_its_pause_clock() -> None:
    """The controller holds a car it just paused with a cap below the minimum (its minimum
    pause). Its rotation clock keeps running from the allocator's pause: were the car
    forgotten meanwhile, it came back keyed by its arrival (long ago: "paused a whole
    interval") and pushed the next car out at once, a rotation every minimum pause."""
    site = _site(20.0, 4, max_current_a=16.0)
    policy = Policy(rotation_interval_s=900.0)
    first = allocate(
        AllocationInput(site=site, now_s=10_000.0, sessions=_sessions(4), policy=policy)
    )
    (paused,) = _paused(first)
    held = allocate(
        AllocationInput(
            site=site,
            now_s=10_030.0,
            sessions=_sessions(4),
            policy=policy,
            caps_a={paused: 0.0},
            rotation=first.rotation,
        )
    )
    assert _paused(held) == [paused]
    assert held.rotation.paused_since_s[paused] == 10_000.0
    after_pause = allocate(
        AllocationInput(
            site=site, now_s=10_060.0, sessions=_sessions(4), policy=policy, rotation=held.rotation
        )
    )
    assert _paused(after_pause) == [paused]  # it waits for its rotation interval
    due = allocate(
        AllocationInput(
            site=site,
            now_s=10_900.0,
            sessions=_sessions(4),
            policy=policy,
            rotation=after_pause.rotation,
        )
    )
    assert paused not in _paused(due)


def test_a_car_rotated_in_charges_a_whole_interval_before_the_next_waiting_car() -> None:
    """Room for one car among three: when the first has charged an interval, the car paused
    longest takes over and keeps charging an interval, although the third has waited as
    long (it is not stopped again at the next cycle)."""
    site = _site(8.0, 3, max_current_a=16.0)
    policy = Policy(rotation_interval_s=300.0)

    def at(now: float, prev: object | None) -> object:
        rot = {} if prev is None else {"rotation": prev.rotation}  # type: ignore[attr-defined]
        return allocate(
            AllocationInput(site=site, now_s=now, sessions=_sessions(3), policy=policy, **rot)  # type: ignore[arg-type]
        )

    first = at(1_000.0, None)
    assert _paused(first) == ["c1", "c2"]
    turn = at(1_300.0, first)
    assert _paused(turn) == ["c0", "c2"]
    for now in (1_301.0, 1_400.0, 1_599.0):
        turn = at(now, turn)
        assert _paused(turn) == ["c0", "c2"], now
    turn = at(1_600.0, turn)
    assert _paused(turn) == ["c0", "c1"]  # then the third, then the first again


def test_not_even_one_car_fits() -> None:
    site = _site(5.0, 2)
    alloc = allocate(AllocationInput(site=site, now_s=0.0, sessions=_sessions(2)))
    assert {lim.limit_a for lim in alloc.limits} == {0.0}
    assert alloc.limits[0].reason.kind is ReasonKind.PAUSED_NO_HEADROOM
    assert alloc.limits[0].reason.node_id == "main"


def test_stale_meter_without_worst_case_pauses_everything_and_with_one_uses_it() -> None:
    site = _site(63.0, 2)
    stale = NodeMeasurement(node_id="main", current_a=(1.0, 1.0, 1.0), stale=True)
    assert set(
        _limits(
            AllocationInput(site=site, now_s=0.0, sessions=_sessions(2), measurements=(stale,))
        ).values()
    ) == {0.0}
    worst = NodeMeasurement(node_id="main", current_a=None, worst_case_line_a=(43.0,) * 3)
    assert _limits(
        AllocationInput(site=site, now_s=0.0, sessions=_sessions(2), measurements=(worst,))
    ) == {"c0": 10.0, "c1": 10.0}


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (PolicyName.EQUAL, {"c0": 10.0, "c1": 10.0, "c2": 10.0}),
        (PolicyName.FCFS, {"c0": 16.0, "c1": 8.0, "c2": 6.0}),
        (PolicyName.PRIORITY, {"c0": 6.0, "c1": 8.0, "c2": 16.0}),  # c2 is fleet
        (PolicyName.UNCONTROLLED, {"c0": 16.0, "c1": 16.0, "c2": 16.0}),
    ],
)
def test_policies_on_one_30a_circuit(policy: PolicyName, expected: dict[str, float]) -> None:
    site = _site(30.0, 3, resolution_a=1.0)
    sessions = tuple(
        Session(session_id=f"s{i}", charger_id=f"c{i}", arrival_s=float(i), priority=(0, 1, 2)[i])
        for i in range(3)
    )
    assert (
        _limits(
            AllocationInput(site=site, now_s=100.0, sessions=sessions, policy=Policy(name=policy))
        )
        == expected
    )


def test_deadline_gives_the_urgent_car_what_it_needs_first() -> None:
    site = _site(24.0, 2, conn=Connection.L1, volt=VoltageSystem.EU_230, resolution_a=1.0)
    now = 0.0
    urgent = Session(
        session_id="u",
        charger_id="c0",
        arrival_s=0.0,
        departure_s=3600.0,
        energy_wanted_wh=230.0 * 16,
    )  # needs 16 A for the hour
    relaxed = Session(
        session_id="r",
        charger_id="c1",
        arrival_s=0.0,
        departure_s=36000.0,
        energy_wanted_wh=230.0 * 10,
    )  # 1 A on average
    got = _limits(
        AllocationInput(
            site=site,
            now_s=now,
            sessions=(urgent, relaxed),
            policy=Policy(name=PolicyName.DEADLINE),
        )
    )
    assert got == {"c0": 16.0, "c1": 8.0}


def test_planned_follows_targets_then_shares_the_rest() -> None:
    pol = Policy(name=PolicyName.PLANNED, planned_targets_a={"s0": 14.0, "s1": 6.0})
    # 22 A: the targets (20 A) first, the 2 A left go to the car furthest below the level.
    site = _site(22.0, 2, resolution_a=1.0)
    assert _limits(AllocationInput(site=site, now_s=0.0, sessions=_sessions(2), policy=pol)) == {
        "c0": 14.0,
        "c1": 8.0,
    }
    # 30 A: beyond the targets the rest is shared max-min fair.
    site = _site(30.0, 2, resolution_a=1.0)
    assert _limits(AllocationInput(site=site, now_s=0.0, sessions=_sessions(2), policy=pol)) == {
        "c0": 15.0,
        "c1": 15.0,
    }


def test_planned_pauses_a_car_the_plan_wants_off_when_its_minimum_would_cut_a_target() -> None:
    # The plan wants c0 at 16 A now and c1 (a long stay) off. At 20 A both would fit at their
    # 6 A minimum, but c1's 6 A would leave c0 only 14 A of its 16: c1 waits, c0 takes it all.
    pol = Policy(name=PolicyName.PLANNED, planned_targets_a={"s0": 16.0, "s1": 0.0})
    site = _site(20.0, 2, resolution_a=1.0, max_current_a=32.0)
    alloc = allocate(AllocationInput(site=site, now_s=0.0, sessions=_sessions(2), policy=pol))
    got = {lim.charger_id: lim for lim in alloc.limits}
    assert (got["c0"].limit_a, got["c1"].limit_a) == (20.0, 0.0)
    assert got["c1"].reason.kind is ReasonKind.PAUSED_PLAN
    assert got["c1"].reason.text == "paused plan: main, line L1 (node line full)"
    # The plan holds a car back from starting but never stops one that charges: c1 charging
    # since a minute ago keeps its minimum (plans change their mind between re-plans).
    rot = RotationState(charging_since_s={"c1": -60.0})
    inp = AllocationInput(site=site, now_s=0.0, sessions=_sessions(2), policy=pol, rotation=rot)
    assert _limits(inp) == {"c0": 14.0, "c1": 6.0}
    # With room for both the target and the minimum, c1 charges too (and takes the rest).
    site = _site(30.0, 2, resolution_a=1.0, max_current_a=32.0)
    assert _limits(AllocationInput(site=site, now_s=0.0, sessions=_sessions(2), policy=pol)) == {
        "c0": 16.0,
        "c1": 14.0,
    }


def test_planned_counts_only_the_part_of_a_target_the_limits_let_through() -> None:
    # c0 sits under a 10 A sub-circuit: its 16 A target can only take 10 A of the 20 A main,
    # so c1's minimum still fits beside it and c1 charges rather than leave 10 A unused.
    main = CircuitNode(id="main", kind=NodeKind.SERVICE, parent_id=None, line_limit_a=(20.0,) * 3)
    sub = CircuitNode(id="sub", kind=NodeKind.SUBPANEL, parent_id="main", line_limit_a=(10.0,) * 3)
    site = Site(
        name="t",
        voltage=VoltageSystem.EU_230_400,
        nodes=(main, sub),
        chargers=(
            Charger(id="c0", node_id="sub", connection=Connection.THREE_PHASE, resolution_a=1.0),
            Charger(id="c1", node_id="main", connection=Connection.THREE_PHASE, resolution_a=1.0),
        ),
    )
    pol = Policy(name=PolicyName.PLANNED, planned_targets_a={"s0": 16.0, "s1": 0.0})
    assert _limits(AllocationInput(site=site, now_s=0.0, sessions=_sessions(2), policy=pol)) == {
        "c0": 10.0,
        "c1": 10.0,
    }


def test_planned_holds_the_plan_peak_beyond_the_targets_and_never_cuts_a_target() -> None:
    # Two three-phase cars at 230/400 V: 690 W per A. The plan wants 10 A and 6 A (11.04 kW)
    # and holds the site at 15.18 kW (22 A in all) for the demand charge.
    site = _site(60.0, 2, resolution_a=1.0, max_current_a=32.0)
    targets = {"s0": 10.0, "s1": 6.0}
    free = Policy(name=PolicyName.PLANNED, planned_targets_a=targets)
    held = Policy(name=PolicyName.PLANNED, planned_targets_a=targets, planned_ceiling_w=15_180.0)
    assert _limits(AllocationInput(site=site, now_s=0.0, sessions=_sessions(2), policy=free)) == {
        "c0": 30.0,
        "c1": 30.0,
    }
    alloc = allocate(AllocationInput(site=site, now_s=0.0, sessions=_sessions(2), policy=held))
    got = {lim.charger_id: lim for lim in alloc.limits}
    assert got["c0"].limit_a + got["c1"].limit_a == 22.0
    assert got["c0"].limit_a >= 10.0
    assert got["c1"].limit_a >= 6.0
    assert got["c0"].reason.kind is ReasonKind.PLAN_PEAK
    assert got["c0"].reason.text == "plan peak: main"
    # The building's 5 A per line (3.45 kW) counts against the ceiling: 17 A left for cars.
    meas = (NodeMeasurement(node_id="main", current_a=(5.0,) * 3, includes_ev_load=False),)
    inp = AllocationInput(
        site=site, now_s=0.0, sessions=_sessions(2), policy=held, measurements=meas
    )
    assert sum(_limits(inp).values()) == 17.0
    # A ceiling below what the targets take cuts nothing the plan asked for: energy comes
    # first, and the next plan raises its peak if the cars need it.
    low = Policy(name=PolicyName.PLANNED, planned_targets_a=targets, planned_ceiling_w=5_000.0)
    assert _limits(AllocationInput(site=site, now_s=0.0, sessions=_sessions(2), policy=low)) == {
        "c0": 10.0,
        "c1": 6.0,
    }


def test_one_phase_switch_when_three_phases_at_minimum_do_not_fit() -> None:
    site = _site(40.0, 1, can_switch_phases=True)
    meas = (NodeMeasurement(node_id="main", current_a=(10.0, 36.0, 36.0), includes_ev_load=False),)
    alloc = allocate(
        AllocationInput(site=site, now_s=0.0, sessions=_sessions(1), measurements=meas)
    )
    lim = alloc.limits[0]
    assert lim.phases == 1
    assert lim.limit_a == 16.0
    assert "1 phase" in lim.reason.text


def test_vehicle_max_controller_cap_and_reasons() -> None:
    site = _site(100.0, 3, max_current_a=32.0)
    sessions = _sessions(3)
    sessions = (
        sessions[0].__class__(
            session_id="s0", charger_id="c0", arrival_s=0.0, vehicle_max_current_a=13.0
        ),
        *sessions[1:],
    )
    alloc = allocate(
        AllocationInput(site=site, now_s=0.0, sessions=sessions, caps_a={"c1": 10.0, "c2": 4.0})
    )
    by = {lim.charger_id: lim for lim in alloc.limits}
    assert (by["c0"].limit_a, by["c0"].reason.kind) == (13.0, ReasonKind.VEHICLE_MAX)
    assert (by["c1"].limit_a, by["c1"].reason.kind) == (10.0, ReasonKind.CONTROLLER_CAP)
    assert (by["c2"].limit_a, by["c2"].reason.kind) == (0.0, ReasonKind.CONTROLLER_CAP)


def test_no_session_gets_zero_and_fixed_load_is_counted() -> None:
    site = _site(40.0, 3, max_current_a=32.0)
    fixed = FixedLoad(charger_id="c2", current_a=(16.0, 16.0, 16.0), reason="offline")
    alloc = allocate(
        AllocationInput(site=site, now_s=0.0, sessions=_sessions(1), fixed_loads=(fixed,))
    )
    by = {lim.charger_id: lim for lim in alloc.limits}
    assert by["c0"].limit_a == 24.0
    assert by["c1"].reason.kind is ReasonKind.NO_SESSION
    assert by["c1"].limit_a == 0
    assert by["c2"].reason.kind is ReasonKind.FIXED


def test_external_cap_binds_with_its_source() -> None:
    site = _site(100.0, 1, max_current_a=32.0)
    cap = ExternalCap(source="dso", node_id="main", line_limit_a=(20.0, 20.0, 20.0))
    lim = allocate(
        AllocationInput(site=site, now_s=0.0, sessions=_sessions(1), external_caps=(cap,))
    ).limits[0]
    assert lim.limit_a == 20.0
    assert lim.reason.kind is ReasonKind.EXTERNAL_CAP
    assert "dso" in lim.reason.text


def test_a_row_names_the_cap_in_force_on_each_call_of_one_site() -> None:
    """The same row binds on every call; whether an external cap set it, and which, changes
    between calls on the same site object (reasons are kept per site between calls)."""
    site = _site(30.0, 1, max_current_a=32.0)

    def reason(*caps: ExternalCap) -> str:
        inp = AllocationInput(site=site, now_s=0.0, sessions=_sessions(1), external_caps=caps)
        return allocate(inp).limits[0].reason.text

    line = (20.0, 20.0, 20.0)
    assert "dso" in reason(ExternalCap(source="dso", node_id="main", line_limit_a=line))
    uncapped = reason()
    assert "dso" not in uncapped
    assert "main" in uncapped
    assert "admin" in reason(ExternalCap(source="admin", node_id="main", line_limit_a=line))


def test_pilot_set_and_watt_chargers_land_on_their_grid() -> None:
    site = _site(21.0, 1, max_current_a=32.0, allowed_currents_a=(8.0, 16.0, 24.0, 32.0))
    assert _limits(AllocationInput(site=site, now_s=0.0, sessions=_sessions(1))) == {"c0": 16.0}
    wsite = _site(10.0, 1, limit_unit=LimitUnit.WATT)
    lim = allocate(AllocationInput(site=wsite, now_s=0.0, sessions=_sessions(1))).limits[0]
    assert lim.power_w is not None
    assert lim.power_w == int(lim.power_w) <= 3 * 230 * 10
    assert lim.power_w >= 3 * 230 * 10 - 1


def _acn_like() -> Site:
    prim = TransformerPrimary(winding=PrimaryWinding.DELTA, winding_ratio=4.0, line_limit_a=15.0)
    nodes = (
        CircuitNode(
            id="xfmr",
            kind=NodeKind.TRANSFORMER,
            parent_id=None,
            line_limit_a=(416.7,) * 3,
            primary=prim,
        ),
        CircuitNode(id="pod", kind=NodeKind.GROUP, parent_id="xfmr", line_limit_a=(80.0,) * 3),
    )
    conns = [Connection.L1_L2, Connection.L2_L3, Connection.L3_L1] * 3
    chargers = tuple(
        Charger(id=f"c{i}", node_id="pod", connection=c, max_current_a=32.0, resolution_a=1.0)
        for i, c in enumerate(conns)
    )
    return Site(name="acn", voltage=VoltageSystem.US_120_208, nodes=nodes, chargers=chargers)


def test_line_to_line_chargers_under_a_delta_primary_stay_within_exact_phasor_limits() -> None:
    site = _acn_like()
    alloc = allocate(AllocationInput(site=site, now_s=0.0, sessions=_sessions(9)))
    cur = {lim.charger_id: lim.limit_a for lim in alloc.limits}
    lines = node_line_currents_a(site, cur)
    prim = primary_line_currents_a(site, cur)
    assert max(lines["pod"]) <= 80.0 + 1e-9
    assert max(prim["xfmr"]) <= 15.0 + 1e-9
    assert max(prim["xfmr"]) > 14.0  # and it is used
    kinds = {lim.reason.kind for lim in alloc.limits}
    assert ReasonKind.TRANSFORMER_PRIMARY in kinds
    bound = next(lim for lim in alloc.limits if lim.reason.kind is ReasonKind.TRANSFORMER_PRIMARY)
    assert bound.reason.node_id == "xfmr"
    assert bound.reason.line in set(Line)


def test_chargers_that_cannot_pause_are_counted_at_their_minimum() -> None:
    site = _site(10.0, 2, zero_pauses=False)
    alloc = allocate(AllocationInput(site=site, now_s=0.0, sessions=_sessions(2)))
    assert [lim.limit_a for lim in alloc.limits] == [6.0, 6.0]
    assert all("cannot be paused" in lim.reason.detail for lim in alloc.limits)
    assert alloc.headroom[0].headroom_a[0] == pytest.approx(-2.0)  # the overload is visible


def test_power_and_line_sum_limits_bind_with_their_reason() -> None:
    node = CircuitNode(
        id="main",
        kind=NodeKind.SERVICE,
        parent_id=None,
        line_limit_a=(63.0,) * 3,
        max_power_w=11_040.0,
    )
    site = Site(
        name="p",
        voltage=VoltageSystem.EU_230_400,
        nodes=(node,),
        chargers=(
            Charger(id="c0", node_id="main", connection=Connection.THREE_PHASE, max_current_a=32.0),
        ),
    )
    lim = allocate(AllocationInput(site=site, now_s=0.0, sessions=_sessions(1))).limits[0]
    assert lim.limit_a == pytest.approx(16.0)
    assert lim.reason.kind is ReasonKind.NODE_POWER
    node = CircuitNode(
        id="main",
        kind=NodeKind.SERVICE,
        parent_id=None,
        line_limit_a=(63.0,) * 3,
        max_line_sum_a=30.0,
    )
    lim = allocate(
        AllocationInput(
            site=Site(name="s", voltage=site.voltage, nodes=(node,), chargers=site.chargers),
            now_s=0.0,
            sessions=_sessions(1),
        )
    ).limits[0]
    assert lim.limit_a == pytest.approx(10.0)
    assert lim.reason.kind is ReasonKind.NODE_LINE_SUM


@pytest.mark.parametrize("policy", list(PolicyName))
def test_no_cars_no_current_under_every_policy(policy: PolicyName) -> None:
    site = _site(40.0, 2)
    alloc = allocate(AllocationInput(site=site, now_s=0.0, sessions=(), policy=Policy(name=policy)))
    assert [(lim.limit_a, lim.reason.kind) for lim in alloc.limits] == [
        (0.0, ReasonKind.NO_SESSION)
    ] * 2
    empty = Site(name="e", voltage=site.voltage, nodes=site.nodes, chargers=())
    assert (
        allocate(
            AllocationInput(site=empty, now_s=0.0, sessions=(), policy=Policy(name=policy))
        ).limits
        == ()
    )


def test_building_load_over_the_limit_leaves_nothing_not_its_mirror_image() -> None:
    # 47 A of building load on a 40 A line: the headroom is -7 A, and no car on that line may
    # charge (a quadratic |I| <= L read with L = -7 would wrongly allow 7 A).
    site = _site(40.0, 1, conn=Connection.L2)
    meas = (NodeMeasurement(node_id="main", current_a=(0.0, 47.0, 0.0), includes_ev_load=False),)
    alloc = allocate(
        AllocationInput(site=site, now_s=0.0, sessions=_sessions(1), measurements=meas)
    )
    assert alloc.limits[0].limit_a == 0.0
    assert alloc.limits[0].reason.kind is ReasonKind.PAUSED_NO_HEADROOM
    assert alloc.headroom[0].headroom_a[1] == pytest.approx(-7.0)


def test_measured_ev_current_is_subtracted_as_a_phasor_sum_and_missing_lines_count_as_zero() -> (
    None
):
    # Two 208 V chargers, A-B and C-A, each measured at 10 A: on line A their currents are 60
    # degrees apart, so the EVs carry 10·√3 = 17.3 A there, not 20 A. A meter reading of
    # 37.32 A on A therefore leaves 20 A of building load (subtracting 20 would claim 17.3).
    site = _site(100.0, 2, conn=Connection.L1_L2, volt=VoltageSystem.US_120_208)
    site = Site(
        name="s",
        voltage=site.voltage,
        nodes=site.nodes,
        chargers=(
            site.chargers[0],
            Charger(id="c1", node_id="main", connection=Connection.L3_L1),
        ),
    )
    states = (
        ChargerState(charger_id="c0", t_s=0.0, measured_current_a=(10.0, 10.0, None)),
        ChargerState(charger_id="c1", t_s=0.0, measured_current_a=(10.0, None, 10.0)),
    )
    meas = (NodeMeasurement(node_id="main", current_a=(20.0 + 10.0 * 3**0.5, 30.0, 30.0)),)
    alloc = allocate(
        AllocationInput(
            site=site, now_s=0.0, sessions=_sessions(2), charger_states=states, measurements=meas
        )
    )
    assert alloc.headroom[0].other_load_a == pytest.approx((20.0, 20.0, 20.0))


def test_inputs_read_again_when_new_and_reused_only_when_the_very_same() -> None:
    """``allocate`` remembers what it read from the last sessions and charger-state tuples;
    a new tuple (even an equal-looking one with other values) is read afresh."""
    site = _site(32.0, 2)
    states = (
        ChargerState(charger_id="c0", t_s=0.0, measured_current_a=(10.0, 10.0, 10.0)),
    )
    meas = (NodeMeasurement(node_id="main", current_a=(30.0, 30.0, 30.0)),)
    first = AllocationInput(
        site=site, now_s=1.0, sessions=_sessions(2), charger_states=states, measurements=meas
    )
    # 30 A measured, 10 A of it the EV: 20 A building, 12 A left for two cars.
    assert _limits(first) == {"c0": 6.0, "c1": 6.0}
    assert _limits(first) == {"c0": 6.0, "c1": 6.0}
    slower = _sessions(2, vehicle_max_current_a=7.0)
    assert _limits(AllocationInput(
        site=site, now_s=2.0, sessions=slower[:1], charger_states=states, measurements=meas
    )) == {"c0": 7.0, "c1": 0.0}
    more_ev = (ChargerState(charger_id="c0", t_s=1.0, measured_current_a=(16.0, 16.0, 16.0)),)
    # The same 30 A with 16 A of EV in it: 14 A building, 18 A left.
    assert _limits(AllocationInput(
        site=site, now_s=3.0, sessions=_sessions(2), charger_states=more_ev, measurements=meas
    )) == {"c0": 9.0, "c1": 9.0}
    assert _limits(first) == {"c0": 6.0, "c1": 6.0}
