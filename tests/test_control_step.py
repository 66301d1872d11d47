"""The decision step with the real allocator: first step, restart, staleness, the public API,
and decrease-before-increase as a Hypothesis property over random session changes."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

import ampshare.control as control
from ampshare.control import (
    CommandAck,
    ControlInputs,
    ControlSettings,
    InstallFallback,
    SetLimit,
    initial_state,
    rebuild_state,
    step,
)
from ampshare.core.allocation import Policy, ReasonKind
from ampshare.core.electrical import node_line_currents_a
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

S = ControlSettings()
P = Policy()
T0 = 1_700_000_000.0


def _site(n: int = 3, *, meter: bool = True) -> Site:
    node = CircuitNode(
        id="main", kind=NodeKind.SERVICE, parent_id=None, line_limit_a=(63.0, 63.0, 63.0)
    )
    chargers = tuple(
        Charger(id=f"c{i}", node_id="main", connection=Connection.THREE_PHASE, max_current_a=32)
        for i in range(n)
    )
    meters = (
        (
            MeterSpec(
                id="m",
                node_id="main",
                measures=frozenset({Measurand.CURRENT_PER_LINE}),
                fallback_line_a=(25.0, 25.0, 25.0),
            ),
        )
        if meter
        else ()
    )
    return Site(
        name="s", voltage=VoltageSystem.EU_230_400, nodes=(node,), chargers=chargers, meters=meters
    )


def _sessions(ids: list[str]) -> tuple[Session, ...]:
    return tuple(Session(session_id=f"s-{c}", charger_id=c, arrival_s=T0) for c in ids)


def _reading(t: float, a: float) -> MeterReading:
    return MeterReading(meter_id="m", t_s=t, current_a=(a, a, a))


def test_public_api_is_pinned() -> None:
    assert set(control.__all__) >= {
        "ControlSettings",
        "ControllerState",
        "ControlInputs",
        "SetLimit",
        "InstallFallback",
        "Event",
        "StepResult",
        "Trigger",
        "step",
        "initial_state",
        "rebuild_state",
        "fallback_limits",
        "CommandAck",
    }


def test_first_step_installs_fallbacks_and_shares_the_headroom() -> None:
    site = _site()
    res = step(
        site,
        S,
        P,
        initial_state(site, S),
        ControlInputs(readings=(_reading(T0, 10.0),), sessions=_sessions(["c0", "c1"])),
        T0,
    )
    limits = {c.charger_id: c.limit_a for c in res.commands if isinstance(c, SetLimit)}
    fallbacks = {c.charger_id: c.limit_a for c in res.commands if isinstance(c, InstallFallback)}
    # idle c2 would start an arriving car at its fallback: counted at it, and held at 0 A
    assert limits == {"c0": 20.2, "c1": 20.2, "c2": 0.0}  # (63 - 10 - 12.6) / 2
    assert fallbacks == {"c0": 12.6, "c1": 12.6, "c2": 12.6}  # (63 - 25) / 3
    first = res.commands[0]
    assert isinstance(first, SetLimit)
    assert first.charger_id == "c2"  # the hold goes first
    cmd = next(c for c in res.commands if isinstance(c, SetLimit) and c.charger_id == "c0")
    assert cmd.lease_until_s == T0 + S.lease_s
    assert "main" in cmd.reason
    assert T0 < res.next_wakeup_s <= T0 + S.max_period_s
    acks = tuple(
        CommandAck(charger_id=c.charger_id, t_s=T0 + 0.2, limit_a=c.limit_a)
        for c in res.commands
        if isinstance(c, SetLimit)
    )
    later = step(site, S, P, res.state, ControlInputs(acks=acks), T0 + 1.0)
    raised = {c.charger_id: c.limit_a for c in later.commands if isinstance(c, SetLimit)}
    assert raised == {"c0": 26.5, "c1": 26.5}  # hold acknowledged: (63 - 10) / 2


def test_stale_meter_lowers_to_the_worst_case_and_alerts() -> None:
    site = _site(2)
    st_ = step(
        site,
        S,
        P,
        initial_state(site, S),
        ControlInputs(readings=(_reading(T0, 10.0),), sessions=_sessions(["c0", "c1"])),
        T0,
    )
    acks = tuple(
        CommandAck(
            charger_id=c.charger_id,
            t_s=T0 + 0.2,
            limit_a=c.limit_a,
            fallback=isinstance(c, InstallFallback),
        )
        for c in st_.commands
    )
    later = step(site, S, P, st_.state, ControlInputs(acks=acks), T0 + 11.0)
    assert [e.kind.value for e in later.events] == ["meter_stale"]
    assert st_.state.tracks["c0"].limit_a == 26.5  # (63 - 10) / 2 while fresh
    assert [(c.charger_id, c.limit_a) for c in later.commands] == [("c0", 19.0), ("c1", 19.0)]


def test_restart_counts_unknown_chargers_pessimistically_and_reasserts() -> None:
    site = _site()
    rep = ChargerState(
        charger_id="c0", t_s=T0, measured_current_a=(20.0, 20.0, 20.0), installed_limit_a=20.0
    )
    state = rebuild_state(
        site,
        S,
        now_s=T0,
        charger_states=[rep],
        readings=[_reading(T0, 30.0)],
        sessions=_sessions(["c0", "c1"]),
    )
    assert state.tracks["c0"].high_a == 20.0
    assert state.tracks["c1"].high_a == 32.0  # said nothing: counted at its maximum
    assert not state.tracks["c1"].online
    res = step(site, S, P, state, ControlInputs(), T0 + 0.1)
    kinds = [type(c).__name__ for c in res.commands]
    assert "SetLimit" in kinds
    assert kinds.count("InstallFallback") == 1  # only the charger that is online
    assert state.recent_events[0].kind.value == "restarted"


# --- decrease before increase through the real allocator ------------------------------------


def _mixed_site(kinds: list[int]) -> Site:
    nodes = (
        CircuitNode(id="main", kind=NodeKind.SERVICE, parent_id=None, line_limit_a=(40.0,) * 3),
        CircuitNode(id="A", kind=NodeKind.SUBPANEL, parent_id="main", line_limit_a=(25.0,) * 3),
    )
    rot = list(PhaseRotation)
    chargers = tuple(
        Charger(
            id=f"c{i}",
            node_id="A" if i % 2 else "main",
            connection=Connection.THREE_PHASE if k == 0 else Connection.L1,
            phase_rotation=rot[k % 3],
            max_current_a=32,
        )
        for i, k in enumerate(kinds)
    )
    return Site(name="m", voltage=VoltageSystem.EU_230_400, nodes=nodes, chargers=chargers)


@settings(max_examples=40, deadline=None)
@given(
    kinds=st.lists(st.integers(0, 3), min_size=2, max_size=6),
    rounds=st.lists(
        st.tuples(st.sets(st.integers(0, 5)), st.booleans(), st.floats(0.2, 6.0)),
        min_size=1,
        max_size=10,
    ),
)
def test_in_flight_limits_never_exceed_any_node_line_through_step(kinds, rounds) -> None:
    run_random_sessions(kinds, rounds)


def run_random_sessions(kinds, rounds) -> None:
    """Cars come and go at random; acks arrive or not; after every step the exact line
    currents with every charger at max(old, new) stay within every node's limits."""
    site = _mixed_site(kinds)
    sets = ControlSettings(min_pause_s=0.0, deadband_a=0.0)
    state = initial_state(site, sets)
    now = T0
    for present, ack, dt in rounds:
        ids = [f"c{i}" for i in sorted(present) if i < len(kinds)]
        res = step(site, sets, P, state, ControlInputs(sessions=_sessions(ids)), now)
        state = res.state
        highs = {cid: t.high_a for cid, t in state.tracks.items()}
        for nid, lines in node_line_currents_a(site, highs).items():
            assert max(lines) <= site.node(nid).line_limit_a[0] + 1e-6, (nid, lines, highs)
        acks = tuple(
            CommandAck(
                charger_id=c.charger_id,
                t_s=now,
                limit_a=c.limit_a,
                fallback=isinstance(c, InstallFallback),
            )
            for c in res.commands
            if ack
        )
        now += dt
        state = step(site, sets, P, state, ControlInputs(acks=acks), now).state
        highs = {cid: t.high_a for cid, t in state.tracks.items()}
        for nid, lines in node_line_currents_a(site, highs).items():
            assert max(lines) <= site.node(nid).line_limit_a[0] + 1e-6, (nid, lines, highs)


def test_ramp_limits_how_fast_a_limit_rises() -> None:
    site = _site(meter=False)
    ramp = ControlSettings(ramp_up_a_per_s=2.0, deadband_a=0.0)
    res = step(
        site, ramp, P, initial_state(site, ramp), ControlInputs(sessions=_sessions(["c0"])), T0
    )
    first = res.state.tracks["c0"].limit_a
    # a first limit is not a rise from a known value; idle c1 and c2 count at their fallback
    assert first == 21.0
    # the car's limit is cut to 6 A by a cap, then the cap goes: it may only climb 2 A/s
    state = res.state
    low = step(
        site,
        ramp,
        P,
        state,
        ControlInputs(external_caps=(), sessions=_sessions(["c0", "c1", "c2"])),
        T0 + 1,
    )
    acks = tuple(
        CommandAck(charger_id=c.charger_id, t_s=T0 + 1.1, limit_a=c.limit_a)
        for c in low.commands
        if isinstance(c, SetLimit)
    )
    before = {cid: t.limit_a for cid, t in low.state.tracks.items()}
    left = step(
        site, ramp, P, low.state, ControlInputs(acks=acks, sessions=_sessions(["c0"])), T0 + 1.5
    )
    holds = tuple(
        CommandAck(charger_id=c.charger_id, t_s=T0 + 1.6, limit_a=c.limit_a)
        for c in left.commands
        if isinstance(c, SetLimit)
    )
    assert {("c1", 0.0), ("c2", 0.0)} <= {(a.charger_id, a.limit_a) for a in holds}
    assert before["c1"] == 6.0  # from a 0 A hold the ramp starts at the minimum
    assert left.state.tracks["c0"].limit_a == 24.0  # 21 A at T0, 1.5 s at 2 A/s
    up = step(site, ramp, P, left.state, ControlInputs(acks=holds), T0 + 3)
    assert before["c0"] == 21.0  # 63 / 3
    # the holds are acknowledged, 63 A is free, but c0 may only climb 2 A/s, not to 32 at once
    assert up.state.tracks["c0"].limit_a == 27.0


def _site_with_meter_fallback(line_a: float | None) -> Site:
    worst = None if line_a is None else (line_a, line_a, line_a)
    meter = MeterSpec(
        id="m",
        node_id="main",
        measures=frozenset({Measurand.CURRENT_PER_LINE}),
        fallback_line_a=worst,
    )
    base = _site()
    return Site(
        name="s", voltage=base.voltage, nodes=base.nodes, chargers=base.chargers, meters=(meter,)
    )


def _fallback_messages(site: Site) -> list[str]:
    res = step(site, S, P, initial_state(site, S), ControlInputs(), T0)
    return [e.message for e in res.events if e.kind.value == "fallback_zero"]


def test_fallback_zero_names_its_actual_cause() -> None:
    (missing,) = _fallback_messages(_site_with_meter_fallback(None))
    assert "meter m on node main has no meters[].fallback_line_a" in missing
    assert missing.startswith("3 chargers (c0, c1, c2) fall back to 0 A")
    (small,) = _fallback_messages(_site_with_meter_fallback(62.0))
    assert "no meters[].fallback_line_a" not in small
    assert "(0.33 A) is below the charger minimum 6 A" in small  # (63 - 62) / 3
    (full,) = _fallback_messages(_site_with_meter_fallback(63.0))
    assert "fallback_line_a (63 A)" in full
    assert "no meters[].fallback_line_a" not in full
    assert _fallback_messages(_site_with_meter_fallback(25.0)) == []


def test_a_single_charger_falling_back_to_zero_is_the_subject_not_repeated() -> None:
    site = _site_with_meter_fallback(None)
    one = Site(
        name="s",
        voltage=site.voltage,
        nodes=site.nodes,
        chargers=site.chargers[:1],
        meters=site.meters,
    )
    res = step(one, S, P, initial_state(one, S), ControlInputs(), T0)
    (ev,) = [e for e in res.events if e.kind.value == "fallback_zero"]
    assert ev.subject == "c0"
    assert ev.message.startswith("falls back to 0 A without the controller: meter m")
    assert "c0" not in ev.message


def _acked(res, t_s: float) -> tuple[CommandAck, ...]:
    return tuple(
        CommandAck(
            charger_id=c.charger_id,
            t_s=t_s,
            limit_a=c.limit_a,
            fallback=isinstance(c, InstallFallback),
        )
        for c in res.commands
    )


def test_an_overload_inside_the_safety_margin_says_the_rating_itself_holds() -> None:
    """A 2 A margin on the 63 A service: the controller keeps 61 A ("never overload" is the
    limit less the margin), so 62 A is an overload, but its text says the rating itself is
    not exceeded; 64 A is above the rating and says so, even within the same episode."""
    base = _site(0)
    site = replace(base, nodes=(replace(base.nodes[0], margin_a=2.0),))
    first = step(
        site, S, P, initial_state(site, S), ControlInputs(readings=(_reading(T0, 62.0),)), T0
    )
    (inside,) = [e for e in first.events if e.kind.value == "overload"]
    assert inside.message.startswith("load inside the safety margin below the limit")
    # The same episode climbing past the rating is alerted again, in its own words, once.
    hot = step(site, S, P, first.state, ControlInputs(readings=(_reading(T0 + 1, 64.0),)), T0 + 1)
    (above,) = [e for e in hot.events if e.kind.value == "overload"]
    assert above.message.startswith("load above the limit")
    still = step(site, S, P, hot.state, ControlInputs(readings=(_reading(T0 + 2, 64.0),)), T0 + 2)
    assert "overload" not in [e.kind.value for e in still.events]


def test_every_charger_offline_is_no_overload_while_the_meter_shows_none() -> None:
    """Offline chargers are counted in the meter's total and at their worst case on top
    (safe, so the headroom goes negative); that is not current above the limit."""
    site = _site(2)
    cars = _sessions(["c0", "c1"])
    first = step(
        site,
        S,
        P,
        initial_state(site, S),
        ControlInputs(readings=(_reading(T0, 10.0),), sessions=cars),
        T0,
    )
    assert first.state.tracks["c0"].limit_a == 26.5
    # both cars draw their 26.5 A: the meter shows 63 A, at (not above) the limit
    offline = tuple(ChargerState(charger_id=c, t_s=T0 + 2, online=False) for c in ("c0", "c1"))
    res = step(
        site,
        S,
        P,
        first.state,
        ControlInputs(
            readings=(_reading(T0 + 2, 63.0),), charger_states=offline, acks=_acked(first, T0 + 0.2)
        ),
        T0 + 2,
    )
    assert min(res.allocation.headroom[0].headroom_a) < 0  # pessimistic accounting
    assert "overload" not in [e.kind.value for e in res.events]
    assert res.state.overloaded_nodes == frozenset()
    # a building load step that really puts the node above its limit is one
    hot = step(site, S, P, res.state, ControlInputs(readings=(_reading(T0 + 3, 70.0),)), T0 + 3)
    assert [e.subject for e in hot.events if e.kind.value == "overload"] == ["main"]
    again = step(site, S, P, hot.state, ControlInputs(readings=(_reading(T0 + 4, 70.0),)), T0 + 4)
    assert "overload" not in [e.kind.value for e in again.events]  # once per episode


def test_a_meter_reading_alone_hands_allocate_the_very_same_inputs_again() -> None:
    """While no charger reports and the sessions stand, the next cycle passes ``allocate``
    the same session and charger-state tuples (it reuses what it read from them); a report
    or new sessions make new ones."""
    site = _site()
    sessions = _sessions(["c0", "c1"])
    report = ChargerState(charger_id="c0", t_s=T0, measured_current_a=(8.0, 8.0, 8.0))
    first = step(
        site,
        S,
        P,
        initial_state(site, S),
        ControlInputs(readings=(_reading(T0, 10.0),), sessions=sessions, charger_states=(report,)),
        T0,
    )
    assert first.state.sessions is sessions
    reading_only = step(
        site, S, P, first.state, ControlInputs(readings=(_reading(T0 + 1, 30.0),)), T0 + 1
    )
    assert reading_only.state.sessions is first.state.sessions
    assert reading_only.state.charger_state_values is first.state.charger_state_values
    assert reading_only.state.charger_state_values == (report,)
    newer = replace(report, t_s=T0 + 2, measured_current_a=(9.0, 9.0, 9.0))
    reported = step(site, S, P, reading_only.state, ControlInputs(charger_states=(newer,)), T0 + 2)
    assert reported.state.charger_state_values == (newer,)
    fewer = step(site, S, P, reported.state, ControlInputs(sessions=sessions[:1]), T0 + 3)
    assert fewer.state.sessions == sessions[:1]


def test_a_full_car_is_paused_with_its_reason_and_its_current_goes_to_the_other() -> None:
    """c0's car takes nothing while its charger says SuspendedEV; after reclaim_after_s it is
    held at 0 A (the reason says why, for the dashboard) and c1 gets what is left."""
    site = _site(2)
    settings = replace(S, reclaim_after_s=5.0, probe_interval_s=600.0, min_charge_s=0.0)
    state = initial_state(site, settings)
    res = step(
        site, settings, P, state, ControlInputs(readings=(_reading(T0, 10.0),),
                                                sessions=_sessions(["c0", "c1"])), T0
    )
    limits: dict[str, float] = {}
    t = T0
    for _ in range(20):
        limits.update({c.charger_id: c.limit_a for c in res.commands if isinstance(c, SetLimit)})
        acks = tuple(
            CommandAck(charger_id=c.charger_id, t_s=t + 0.2, limit_a=c.limit_a,
                       fallback=isinstance(c, InstallFallback))
            for c in res.commands
        )
        t += 1.0
        c1 = limits.get("c1", 0.0)
        reports = (
            ChargerState(charger_id="c0", t_s=t, status=ChargerStatus.SUSPENDED_EV,
                         measured_current_a=(0.0, 0.0, 0.0), installed_limit_a=limits.get("c0")),
            ChargerState(charger_id="c1", t_s=t, status=ChargerStatus.CHARGING,
                         measured_current_a=(c1, c1, c1), installed_limit_a=c1),
        )
        res = step(site, settings, P, res.state,
                   ControlInputs(acks=acks, charger_states=reports,
                                 readings=(_reading(t, 10.0 + c1),)), t)
    assert res.allocation is not None
    by_id = {lim.charger_id: lim for lim in res.allocation.limits}
    assert by_id["c0"].limit_a == 0.0
    assert by_id["c0"].reason.kind is ReasonKind.CAR_FULL
    assert "SuspendedEV" in by_id["c0"].reason.detail
    assert by_id["c1"].limit_a == 32.0  # 63 - 10 leaves 53 A: c1 at its maximum
    assert any(e.kind.value == "reclaimed" and e.subject == "c0"
               for e in res.state.recent_events)
