"""The controller around a (re)start: chargers that have not connected yet (startup grace),
no false "overload" from chargers counted at their worst case, no "resumed" for cars whose
limit is only re-asserted; and charger reports older than a confirmed decrease."""

from __future__ import annotations

from ampshare.control import (
    ChargerTrack,
    CommandAck,
    ControlInputs,
    ControlSettings,
    EventKind,
    InstallFallback,
    SetLimit,
    Severity,
    StepResult,
    initial_state,
    rebuild_state,
    step,
)
from ampshare.control._watch import apply_charger_state
from ampshare.core.allocation import Policy
from ampshare.core.site import (
    Charger,
    CircuitNode,
    Connection,
    Measurand,
    MeterSpec,
    NodeKind,
    Site,
    VoltageSystem,
)
from ampshare.core.snapshot import ChargerState, MeterReading, Session

S = ControlSettings()
P = Policy()
T0 = 1_700_000_000.0


def _site(n: int = 3) -> Site:
    node = CircuitNode(
        id="main", kind=NodeKind.SERVICE, parent_id=None, line_limit_a=(63.0, 63.0, 63.0)
    )
    chargers = tuple(
        Charger(id=f"c{i}", node_id="main", connection=Connection.THREE_PHASE, max_current_a=32)
        for i in range(n)
    )
    meter = MeterSpec(
        id="m",
        node_id="main",
        measures=frozenset({Measurand.CURRENT_PER_LINE}),
        fallback_line_a=(25.0, 25.0, 25.0),
    )
    return Site(
        name="s", voltage=VoltageSystem.EU_230_400, nodes=(node,), chargers=chargers,
        meters=(meter,),
    )


def _garage_site() -> Site:
    """A metered service and an unmetered 40 A garage panel with four 32 A chargers."""
    nodes = (
        CircuitNode(
            id="main", kind=NodeKind.SERVICE, parent_id=None, line_limit_a=(100.0,) * 3
        ),
        CircuitNode(
            id="garage", kind=NodeKind.SUBPANEL, parent_id="main", line_limit_a=(40.0,) * 3
        ),
    )
    chargers = tuple(
        Charger(id=f"c{i}", node_id="garage", connection=Connection.THREE_PHASE, max_current_a=32)
        for i in range(4)
    )
    meter = MeterSpec(
        id="m",
        node_id="main",
        measures=frozenset({Measurand.CURRENT_PER_LINE}),
        fallback_line_a=(60.0,) * 3,
    )
    return Site(
        name="g", voltage=VoltageSystem.EU_230_400, nodes=nodes, chargers=chargers,
        meters=(meter,),
    )


def _reading(t: float, a: float) -> MeterReading:
    return MeterReading(meter_id="m", t_s=t, current_a=(a, a, a))


def _report(cid: str, t: float, a: float | None = None, *, online: bool = True) -> ChargerState:
    cur = None if a is None else (a, a, a)
    return ChargerState(charger_id=cid, t_s=t, online=online, measured_current_a=cur)


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


def _kinds(res: StepResult, kind: EventKind) -> list[str]:
    return [e.subject for e in res.events if e.kind is kind]


# --- item: chargers that have not connected yet -----------------------------------------


def test_a_charger_not_connected_at_start_alerts_only_after_the_grace() -> None:
    site = _site()
    states = (_report("c0", T0, 0.0), _report("c1", T0, online=False), _report("c2", T0, 0.0))
    first = step(
        site, S, P, initial_state(site, S),
        ControlInputs(readings=(_reading(T0, 10.0),), charger_states=states), T0,
    )
    assert _kinds(first, EventKind.CHARGER_OFFLINE) == []  # not connected yet: no news
    assert not first.state.tracks["c1"].online  # ... but counted as offline (pessimistic)
    fixed = {lim.charger_id: lim.reason.kind.value for lim in first.allocation.limits}
    assert fixed["c1"] == "fixed"
    res = first
    for t in (T0 + 60, T0 + S.startup_grace_s - 1):
        res = step(site, S, P, res.state, ControlInputs(readings=(_reading(t, 10.0),)), t)
        assert _kinds(res, EventKind.CHARGER_OFFLINE) == []
    due = T0 + S.startup_grace_s
    late = step(site, S, P, res.state, ControlInputs(readings=(_reading(due, 10.0),)), due)
    (alert,) = [e for e in late.events if e.kind is EventKind.CHARGER_OFFLINE]
    assert (alert.subject, alert.severity) == ("c1", Severity.ALERT)
    assert "not connected 120 s after the controller started" in alert.message
    again = step(site, S, P, late.state, ControlInputs(readings=(_reading(due + 1, 10.0),)),
                 due + 1)
    assert _kinds(again, EventKind.CHARGER_OFFLINE) == []  # once
    joins = step(site, S, P, again.state,
                 ControlInputs(charger_states=(_report("c1", due + 5, 0.0),)), due + 5)
    assert _kinds(joins, EventKind.CHARGER_ONLINE) == ["c1"]  # closes the alert


def test_a_charger_that_joins_within_the_grace_raises_nothing() -> None:
    site = _site()
    first = step(
        site, S, P, initial_state(site, S),
        ControlInputs(charger_states=(_report("c1", T0, online=False),)), T0,
    )
    joins = step(site, S, P, first.state,
                 ControlInputs(charger_states=(_report("c1", T0 + 30, 0.0),)), T0 + 30)
    assert joins.state.tracks["c1"].online
    assert [e.kind for e in (*first.events, *joins.events)
            if e.kind in (EventKind.CHARGER_OFFLINE, EventKind.CHARGER_ONLINE)] == []
    later = T0 + S.startup_grace_s + 10
    gone = step(site, S, P, joins.state,
                ControlInputs(charger_states=(_report("c1", later, online=False),)), later)
    assert _kinds(gone, EventKind.CHARGER_OFFLINE) == ["c1"]  # seen, then lost: at once


def test_a_charger_seen_online_alerts_at_once_when_it_drops_even_in_the_grace() -> None:
    t = ChargerTrack(charger_id="c0")
    events: list = []
    t = apply_charger_state(t, _report("c0", T0, 0.0), 6.0, S, events, in_grace=True)
    assert t.joined
    t = apply_charger_state(t, _report("c0", T0 + 5, online=False), 6.0, S, events,
                            in_grace=True)
    assert [(e.kind, e.severity) for e in events] == [
        (EventKind.CHARGER_OFFLINE, Severity.ALERT)
    ]


def test_without_a_grace_a_missing_charger_alerts_at_the_first_step_once() -> None:
    site = _site()
    now_settings = ControlSettings(startup_grace_s=0.0)
    first = step(
        site, now_settings, P, initial_state(site, now_settings),
        ControlInputs(charger_states=(_report("c1", T0, online=False),)), T0,
    )
    assert _kinds(first, EventKind.CHARGER_OFFLINE) == ["c1"]


def test_after_a_restart_a_charger_that_does_not_come_back_alerts_after_the_grace() -> None:
    site = _site()
    state = rebuild_state(
        site, S, now_s=T0,
        charger_states=(_report("c0", T0, 10.0), _report("c1", T0, online=False)),
        readings=(_reading(T0, 30.0),),
    )
    assert state.tracks["c0"].joined
    assert not state.tracks["c1"].joined
    res = step(site, S, P, state, ControlInputs(readings=(_reading(T0 + 1, 30.0),)), T0 + 1)
    assert _kinds(res, EventKind.CHARGER_OFFLINE) == []
    due = T0 + S.startup_grace_s
    late = step(site, S, P, res.state, ControlInputs(readings=(_reading(due, 30.0),)), due)
    assert _kinds(late, EventKind.CHARGER_OFFLINE) == ["c1", "c2"]  # c2 never reported


# --- item: no false overload after a restart ----------------------------------------------


def test_after_a_restart_chargers_counted_at_their_maximum_are_no_overload() -> None:
    """Nothing reported yet after a restart: every charger of the unmetered garage is counted
    at its 32 A maximum (4 x 32 A on a 40 A panel, headroom far below zero). The meter shows
    30 A flowing through the service: the garage carries at most that, no overload."""
    site = _garage_site()
    state = rebuild_state(site, S, now_s=T0, charger_states=(), readings=(_reading(T0, 30.0),))
    res = step(site, S, P, state, ControlInputs(readings=(_reading(T0 + 1, 30.0),)), T0 + 1)
    garage = next(h for h in res.allocation.headroom if h.node_id == "garage")
    assert min(garage.headroom_a) < 0  # pessimistic accounting ...
    assert _kinds(res, EventKind.OVERLOAD) == []  # ... is not current above the limit
    assert res.state.overloaded_nodes == frozenset()


def test_current_reported_above_an_unmetered_panels_limit_is_still_an_overload() -> None:
    """The same restart, but three chargers report 15 A each: 45 A known to flow through the
    40 A garage (the fourth, silent, counted at its maximum, adds nothing to that)."""
    site = _garage_site()
    reports = tuple(_report(f"c{i}", T0, 15.0) for i in range(3))
    state = rebuild_state(site, S, now_s=T0, charger_states=reports,
                          readings=(_reading(T0, 60.0),))
    res = step(site, S, P, state, ControlInputs(readings=(_reading(T0 + 1, 60.0),)), T0 + 1)
    assert _kinds(res, EventKind.OVERLOAD) == ["garage"]


# --- item: re-asserting a limit is no resume -----------------------------------------------


def test_after_a_restart_cars_that_charge_on_are_not_resumed() -> None:
    site = _site()
    cars = tuple(Session(session_id=f"s{i}", charger_id=f"c{i}", arrival_s=T0 - 600)
                 for i in range(3))
    reports = tuple(_report(f"c{i}", T0, 16.0) for i in range(3))
    state = rebuild_state(site, S, now_s=T0, charger_states=reports,
                          readings=(_reading(T0, 58.0),), sessions=cars,
                          installed_limits_a={f"c{i}": 16.0 for i in range(3)})
    res = step(site, S, P, state, ControlInputs(readings=(_reading(T0 + 1, 58.0),)), T0 + 1)
    assert {c.charger_id for c in res.commands if isinstance(c, SetLimit)} == {"c0", "c1", "c2"}
    assert [e for e in res.events if e.kind in (EventKind.RESUMED, EventKind.PAUSED)] == []


def test_a_car_the_controller_paused_is_resumed_and_says_so() -> None:
    site = _site(2)
    settings = ControlSettings(min_pause_s=0.0)
    cars = tuple(Session(session_id=f"s{i}", charger_id=f"c{i}", arrival_s=T0) for i in range(2))
    first = step(site, settings, P, initial_state(site, settings),
                 ControlInputs(readings=(_reading(T0, 10.0),), sessions=cars), T0)
    assert _kinds(first, EventKind.RESUMED) == []  # a first limit is no resume either
    # the building takes all but 8 A: one car pauses
    drawing = tuple(_report(f"c{i}", T0 + 1, 26.5) for i in range(2))
    full = step(site, settings, P, first.state,
                ControlInputs(readings=(_reading(T0 + 1, 55.0 + 53.0),), charger_states=drawing,
                              acks=_acks(first, T0 + 0.2)), T0 + 1)
    (paused,) = _kinds(full, EventKind.PAUSED)
    other = "c1" if paused == "c0" else "c0"
    calm_t = T0 + 20
    reports = (_report(paused, calm_t, 0.0), _report(other, calm_t, 8.0))
    calm = step(site, settings, P, full.state,
                ControlInputs(readings=(_reading(calm_t, 18.0),), charger_states=reports,
                              acks=_acks(full, T0 + 1.2)), calm_t)
    assert _kinds(calm, EventKind.RESUMED) == [paused]


# --- charger reports older than a confirmed decrease ---------------------------------------


def test_a_report_older_than_a_confirmed_decrease_gives_no_current_away() -> None:
    """Three cars at 17.6 A on 63 A; the building steps from 10 A to 40 A and the cars are
    lowered to 7.6 A. Their chargers report every 30 s (a usual OCPP interval): once the
    decrease is confirmed the meter shows 40 + 3 x 7.6 A while the reports still say
    17.6 A. Subtracting those would make the building look like 10 A and send the cars back
    to 17.6 A: 93 A on a 63 A service until the next reports. Each is counted at no more
    than it may draw now."""
    site = _site()
    cars = tuple(Session(session_id=f"s{i}", charger_id=f"c{i}", arrival_s=T0) for i in range(3))
    first = step(site, S, P, initial_state(site, S),
                 ControlInputs(readings=(_reading(T0, 10.0),), sessions=cars), T0)
    reports = tuple(_report(f"c{i}", T0 + 5, 17.6) for i in range(3))
    steady = step(site, S, P, first.state,
                  ControlInputs(readings=(_reading(T0 + 5, 63.0),), charger_states=reports,
                                acks=_acks(first, T0 + 0.2)), T0 + 5)
    building = step(site, S, P, steady.state,
                    ControlInputs(readings=(_reading(T0 + 30, 93.0),),
                                  acks=_acks(steady, T0 + 5.2)), T0 + 30)
    assert {c.limit_a for c in building.commands if isinstance(c, SetLimit)} == {7.6}
    obeyed_t = T0 + 30.2 + S.ev_reaction_s + 1
    obeyed = step(site, S, P, building.state,
                  ControlInputs(readings=(_reading(obeyed_t, 40.0 + 3 * 7.6),),
                                acks=_acks(building, T0 + 30.2)), obeyed_t)
    assert all(t.limit_a is not None and t.limit_a <= 7.6 for t in obeyed.state.tracks.values())
    assert [c for c in obeyed.commands if isinstance(c, SetLimit) and c.limit_a > 7.6] == []
    # the reports come: the same answer, now from them
    fresh = tuple(_report(f"c{i}", obeyed_t + 2, 7.6) for i in range(3))
    later = step(site, S, P, obeyed.state,
                 ControlInputs(readings=(_reading(obeyed_t + 2, 62.8),), charger_states=fresh),
                 obeyed_t + 2)
    assert all(t.limit_a is not None and t.limit_a <= 7.6 for t in later.state.tracks.values())


def test_a_lone_charger_that_never_reported_does_not_stop_the_step() -> None:
    # One charger (a home), not connected yet, and a fresh meter reading: the step credits
    # no report (there is none) and goes on. It used to compare the lone missing report
    # (None) with the meter's time and raise TypeError.
    for n in (1, 0):
        site = _site(n)
        state = initial_state(site, S)
        for k in range(3):
            now = T0 + k
            inputs = ControlInputs(
                readings=(MeterReading(meter_id="m", t_s=now, current_a=(10.0, 10.0, 10.0)),)
            )
            res = step(site, S, P, state, inputs, now)
            state = res.state
        assert res.allocation is not None
        main = next(h for h in res.allocation.headroom if h.node_id == "main")
        assert main.measured
        assert not main.stale
