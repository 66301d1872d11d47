"""Charger reports and meter readings taken at different times (``control._credit``).

The allocator takes a metered node's building load as the meter's total minus the chargers'
reported currents below it. Meters read every second; chargers report every 10-60 s, or on
every change. A report credited with more than its charger drew when the meter read makes the
building look smaller, and that current goes to other cars: a real overload once they take it.
"""

from __future__ import annotations

from dataclasses import fields, replace

import pytest

from ampshare.control import (
    CommandAck,
    ControlInputs,
    ControlSettings,
    InstallFallback,
    SetLimit,
    StepResult,
    _credit,
    initial_state,
    step,
)
from ampshare.core.allocation import Policy
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
from ampshare.core.snapshot import ChargerState, ChargerStatus, ExternalCap, MeterReading, Session

S = ControlSettings()
P = Policy()
T0 = 1_700_000_000.0


def _site(*, metered: bool = True, connection: Connection = Connection.THREE_PHASE) -> Site:
    """A 63 A service with two 32 A chargers and a service meter (worst case 25 A)."""
    node = CircuitNode(
        id="main", kind=NodeKind.SERVICE, parent_id=None, line_limit_a=(63.0, 63.0, 63.0)
    )
    chargers = tuple(
        Charger(
            id=f"c{i}",
            node_id="main",
            connection=connection,
            max_current_a=32,
            phase_rotation=PhaseRotation.L2L3L1 if i == 0 else PhaseRotation.L1L2L3,
        )
        for i in range(2)
    )
    meter = MeterSpec(
        id="m",
        node_id="main",
        measures=frozenset({Measurand.CURRENT_PER_LINE}),
        fallback_line_a=(25.0, 25.0, 25.0),
    )
    return Site(
        name="s",
        voltage=VoltageSystem.EU_230_400,
        nodes=(node,),
        chargers=chargers,
        meters=(meter,) if metered else (),
    )


def _reading(t: float, a: float | tuple[float, float, float]) -> MeterReading:
    lines = a if isinstance(a, tuple) else (a, a, a)
    return MeterReading(meter_id="m", t_s=t, current_a=lines)


def _report(cid: str, t: float, a: float | tuple[float, float, float]) -> ChargerState:
    lines = a if isinstance(a, tuple) else (a, a, a)
    return ChargerState(charger_id=cid, t_s=t, measured_current_a=lines)


def _acks(res: StepResult, t_s: float) -> tuple[CommandAck, ...]:
    return tuple(
        CommandAck(
            charger_id=c.charger_id,
            t_s=t_s,
            limit_a=c.limit_a,
            fallback=isinstance(c, InstallFallback),
        )
        for c in res.commands
    )


def _sent(res: StepResult) -> dict[str, float]:
    return {c.charger_id: c.limit_a for c in res.commands if isinstance(c, SetLimit)}


def _allocated(res: StepResult) -> dict[str, float]:
    assert res.allocation is not None
    return {lim.charger_id: lim.limit_a for lim in res.allocation.limits}


def _building(res: StepResult) -> tuple[float, float, float]:
    """The non-EV load the allocation assumed at the service."""
    assert res.allocation is not None
    (main,) = res.allocation.headroom
    return main.other_load_a


def _sharing(site: Site, cars: tuple[Session, ...], building_a: float) -> StepResult:
    """c0's car takes at most 16 A, c1 the rest under 63 A beside ``building_a``; both
    limits sent, acknowledged and confirmed (reports after the acknowledgement, the EV
    reaction time passed) by T0 + 6."""
    first = step(
        site,
        S,
        P,
        initial_state(site, S),
        ControlInputs(readings=(_reading(T0, building_a),), sessions=cars),
        T0,
    )
    return step(
        site,
        S,
        P,
        first.state,
        ControlInputs(
            readings=(_reading(T0 + 6, building_a),),
            charger_states=(_report("c0", T0 + 5.5, 0.0), _report("c1", T0 + 5.5, 0.0)),
            acks=_acks(first, T0 + 0.2),
        ),
        T0 + 6,
    )


CARS = (
    Session(session_id="s0", charger_id="c0", arrival_s=T0, vehicle_max_current_a=16.0),
    Session(session_id="s1", charger_id="c1", arrival_s=T0),
)


def test_a_report_newer_than_the_meter_reading_gives_no_current_away() -> None:
    """The meter reads at t=10 s while c0's car draws 6 A (ramping up to its 16 A); at
    10.5 s it reaches 16 A and its charger says so at 10.6 s. Subtracting 16 A from a total
    that holds 6 A makes a 25 A building look like 15 A, and c1 went from 22 A to its 32 A:
    25 + 16 + 32 = 73 A on a 63 A service until the next reading and c1's reaction. c0 is
    credited what it drew at or before the reading until a newer reading comes."""
    site = _site()
    sharing = _sharing(site, CARS, 25.0)
    assert _sent(sharing) == {"c1": 22.0}  # 63 - 25 - 16
    t1 = T0 + 10
    steady = step(
        site,
        S,
        P,
        sharing.state,
        ControlInputs(
            readings=(_reading(t1, 25.0 + 6.0 + 22.0),),
            charger_states=(_report("c0", t1 - 0.5, 6.0), _report("c1", t1 - 0.5, 22.0)),
            acks=_acks(sharing, T0 + 6.2),
        ),
        t1,
    )
    assert _sent(steady) == {}
    ramped = step(
        site,
        S,
        P,
        steady.state,
        ControlInputs(charger_states=(_report("c0", t1 + 0.6, 16.0),)),
        t1 + 0.6,
    )
    assert _building(ramped) == pytest.approx((25.0, 25.0, 25.0))
    assert _allocated(ramped)["c1"] == 22.0
    assert _sent(ramped) == {}
    # the state keeps the report as it came; what it may be credited is kept beside it
    assert ramped.state.charger_states["c0"].measured_current_a == (16.0, 16.0, 16.0)
    c0 = ramped.state.tracks["c0"]
    assert (c0.prior_line_a, c0.prior_s) == ((6.0, 6.0, 6.0), t1 - 0.5)
    # the next reading holds the 16 A: credited in full again
    later = step(
        site,
        S,
        P,
        ramped.state,
        ControlInputs(readings=(_reading(t1 + 1, 25.0 + 16.0 + 22.0),)),
        t1 + 1,
    )
    assert _building(later) == pytest.approx((25.0, 25.0, 25.0))
    assert _sent(later) == {}


def test_a_first_report_after_the_meter_reading_is_credited_nothing() -> None:
    """No report at or before the reading: what the charger draws is not in it yet."""
    site = _site()
    first = step(
        site,
        S,
        P,
        initial_state(site, S),
        ControlInputs(readings=(_reading(T0, 25.0),), sessions=CARS),
        T0,
    )
    assert _sent(first)["c0"] == 16.0
    started = step(
        site,
        S,
        P,
        first.state,
        ControlInputs(charger_states=(_report("c0", T0 + 0.6, 16.0),), acks=_acks(first, T0 + 0.2)),
        T0 + 0.6,
    )
    assert _building(started) == pytest.approx((25.0, 25.0, 25.0))  # not 25 - 16
    assert _allocated(started)["c1"] == 22.0  # not 32
    assert started.state.tracks["c0"].prior_s is None


def test_reports_are_lowered_per_site_line_for_a_rotated_one_phase_charger() -> None:
    """c0 is an L1 charger wired to the site's L2 (rotation L2L3L1): its reports carry its
    current on L2 only, and only L2's share is held back."""
    site = _site(connection=Connection.L1)
    sharing = _sharing(site, CARS, 25.0)
    t1 = T0 + 10
    steady = step(
        site,
        S,
        P,
        sharing.state,
        ControlInputs(
            readings=(_reading(t1, (25.0 + 22.0, 25.0 + 6.0, 25.0)),),
            charger_states=(
                _report("c0", t1 - 0.5, (0.0, 6.0, 0.0)),
                _report("c1", t1 - 0.5, (22.0, 0.0, 0.0)),
            ),
            acks=_acks(sharing, T0 + 6.2),
        ),
        t1,
    )
    assert _building(steady) == pytest.approx((25.0, 25.0, 25.0))
    ramped = step(
        site,
        S,
        P,
        steady.state,
        ControlInputs(charger_states=(_report("c0", t1 + 0.6, (0.0, 16.0, 0.0)),)),
        t1 + 0.6,
    )
    assert _building(ramped) == pytest.approx((25.0, 25.0, 25.0))  # L2 not 15
    assert ramped.state.tracks["c0"].prior_line_a == (0.0, 6.0, 0.0)


def test_without_a_meter_a_car_is_raised_back_at_once() -> None:
    """Nodes without a meter take their configured limits and subtract no report, so no
    dip can hide in a reading: a car lowered by a cap that goes again a second later is
    raised back at once, its decrease still unconfirmed."""
    site = _site(metered=False)
    first = step(site, S, P, initial_state(site, S), ControlInputs(sessions=CARS), T0)
    assert _allocated(first) == {"c0": 16.0, "c1": 32.0}
    cap = ExternalCap(source="grid operator", node_id="main", line_limit_a=(30.0, 30.0, 30.0))
    capped = step(
        site,
        S,
        P,
        first.state,
        ControlInputs(external_caps=(cap,), acks=_acks(first, T0 + 0.2)),
        T0 + 20,
    )
    assert _sent(capped) == {"c0": 15.0, "c1": 15.0}
    lifted = step(
        site,
        S,
        P,
        capped.state,
        ControlInputs(external_caps=(), acks=_acks(capped, T0 + 20.2)),
        T0 + 21,
    )
    assert _sent(lifted) == {"c0": 16.0, "c1": 32.0}


def _two_cars_at(level_t: float) -> StepResult:
    """Two cars sharing 53 A beside a 10 A building, their reports taken at ``level_t``."""
    site = _site()
    cars = tuple(Session(session_id=f"s{i}", charger_id=f"c{i}", arrival_s=T0) for i in range(2))
    sharing = _sharing(site, cars, 10.0)
    return step(
        site,
        S,
        P,
        sharing.state,
        ControlInputs(
            readings=(_reading(level_t, 63.0),),
            charger_states=(_report("c0", level_t, 26.5), _report("c1", level_t, 26.5)),
            acks=_acks(sharing, T0 + 6.2),
        ),
        level_t,
    )


def test_a_dip_no_report_saw_is_not_credited_at_the_older_reports() -> None:
    """Reports every 30 s. A 30 A building step lowers both cars to 11.5 A; the decrease is
    confirmed by the EV reaction time (no report shows it), the building drops back and the
    cars are raised to 26.5 A. The next reading still holds them at 11.5 A (they react a few
    seconds later), while their last reports, from before the step, say 26.5 A: subtracted,
    they made the building look like 0 A and the cars went to 31.5 A (73 A on 63 A once they
    followed). Until a report taken after the raise, each car is credited at most the limit
    it was raised from."""
    site = _site()
    steady = _two_cars_at(T0 + 10)
    assert _building(steady) == pytest.approx((10.0, 10.0, 10.0))
    step_up = step(
        site, S, P, steady.state, ControlInputs(readings=(_reading(T0 + 30, 93.0),)), T0 + 30
    )
    assert _sent(step_up) == {"c0": 11.5, "c1": 11.5}
    obeyed = step(
        site,
        S,
        P,
        step_up.state,
        ControlInputs(readings=(_reading(T0 + 36, 40.0 + 23.0),), acks=_acks(step_up, T0 + 30.2)),
        T0 + 36,
    )
    assert _building(obeyed) == pytest.approx((40.0, 40.0, 40.0))  # high_a, b7a0ba2
    calm = step(
        site, S, P, obeyed.state, ControlInputs(readings=(_reading(T0 + 40, 33.0),)), T0 + 40
    )
    assert _sent(calm) == {"c0": 26.5, "c1": 26.5}
    before_they_follow = step(
        site,
        S,
        P,
        calm.state,
        ControlInputs(readings=(_reading(T0 + 41, 33.0),), acks=_acks(calm, T0 + 40.2)),
        T0 + 41,
    )
    assert _building(before_they_follow) == pytest.approx((10.0, 10.0, 10.0))  # not 0
    assert _allocated(before_they_follow) == {"c0": 26.5, "c1": 26.5}  # not 31.5
    assert _sent(before_they_follow) == {}
    assert (calm.state.tracks["c0"].dip_a, calm.state.tracks["c0"].dip_seen_s) == (11.5, T0 + 40)
    # a report taken after the raise shows the cars: the dip is over
    shown = step(
        site,
        S,
        P,
        before_they_follow.state,
        ControlInputs(
            readings=(_reading(T0 + 45, 63.0),),
            charger_states=(_report("c0", T0 + 45, 26.5), _report("c1", T0 + 45, 26.5)),
        ),
        T0 + 45,
    )
    assert _building(shown) == pytest.approx((10.0, 10.0, 10.0))
    assert shown.state.tracks["c0"].dip_seen_s == float("-inf")


def test_a_car_is_raised_again_only_once_its_own_decrease_is_confirmed() -> None:
    """The building steps up and back down within a second. The cars were lowered; raised
    back at once, they could follow the lower pilot later (up to the EV reaction time after
    its acknowledgement) and dip at a time no report shows, while a meter reading sees it.
    So the raise waits until the decrease is confirmed."""
    site = _site()
    steady = _two_cars_at(T0 + 10)
    spike = step(
        site, S, P, steady.state, ControlInputs(readings=(_reading(T0 + 30, 93.0),)), T0 + 30
    )
    assert _sent(spike) == {"c0": 11.5, "c1": 11.5}
    back = step(
        site,
        S,
        P,
        spike.state,
        ControlInputs(readings=(_reading(T0 + 31, 63.0),), acks=_acks(spike, T0 + 30.2)),
        T0 + 31,
    )
    assert _allocated(back) == {"c0": 26.5, "c1": 26.5}
    assert _sent(back) == {}  # held: c0 and c1 may still follow 11.5 A
    confirmed_t = T0 + 30.2 + S.ev_reaction_s
    confirmed = step(
        site,
        S,
        P,
        back.state,
        ControlInputs(readings=(_reading(confirmed_t, 10.0 + 23.0),)),
        confirmed_t,
    )
    assert _sent(confirmed) == {"c0": 26.5, "c1": 26.5}


def test_a_lowered_report_is_the_report_with_those_currents() -> None:
    """``_credit`` copies a report through its slots' setters: the same value as
    ``dataclasses.replace``, field for field (so no new ``ChargerState`` field is lost)."""
    s = ChargerState(
        charger_id="c0",
        t_s=5.0,
        online=True,
        status=ChargerStatus.CHARGING,
        measured_current_a=(16.0, None, 15.5),
        offered_current_a=16.0,
        power_w=7300.0,
        energy_wh=1200.0,
        soc_pct=55.0,
        active_phases=2,
        installed_limit_a=16.0,
    )
    plain = ChargerState(charger_id="c", t_s=0.0)
    assert [f.name for f in fields(s) if getattr(s, f.name) == getattr(plain, f.name)] == ["online"]
    low = _credit._lowered(s, (6.0, 6.0, 20.0))
    assert low == replace(s, measured_current_a=(6.0, None, 15.5), power_w=7300.0 * 21.5 / 31.5)
    assert _credit._lowered(s, (16.0, 0.0, 15.5)) is s  # nothing above the cap
