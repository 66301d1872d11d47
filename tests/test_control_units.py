"""Units of the controller that do not need the allocator: trigger, fallback share,
sequencing, meter staleness, acknowledgements, non-compliance and reclaim."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from ampshare.config.sections import ControlSection
from ampshare.control import (
    ChargerTrack,
    CommandAck,
    ControlSettings,
    EventKind,
    MeterTrack,
    Trigger,
    fallback_limits,
    index_site,
    plan_commands,
)
from ampshare.control._sequence import clean_limit
from ampshare.control._watch import (
    apply_acks,
    apply_charger_state,
    apply_readings,
    expire_pending,
    update_meter_staleness,
)
from ampshare.core.allocation import ChargerLimit, Reason, ReasonKind
from ampshare.core.electrical import node_line_currents_a, primary_line_currents_a
from ampshare.core.site import (
    Charger,
    CircuitNode,
    Connection,
    Measurand,
    MeterSpec,
    NodeKind,
    PhaseRotation,
    PrimaryWinding,
    Site,
    TransformerPrimary,
    VoltageSystem,
)
from ampshare.core.snapshot import ChargerState, MeterReading

S = ControlSettings()


def _site(
    n: int = 3,
    limit: float = 63.0,
    *,
    meter: bool = True,
    fallback: tuple[float, float, float] | None = None,
    conn: Connection = Connection.THREE_PHASE,
) -> Site:
    nodes = (
        CircuitNode(
            id="main", kind=NodeKind.SERVICE, parent_id=None, line_limit_a=(limit, limit, limit)
        ),
    )
    rot = list(PhaseRotation)[:3]
    chargers = tuple(
        Charger(
            id=f"c{i}", node_id="main", connection=conn, max_current_a=32, phase_rotation=rot[i % 3]
        )
        for i in range(n)
    )
    meters = (
        (
            MeterSpec(
                id="m",
                node_id="main",
                measures=frozenset({Measurand.CURRENT_PER_LINE}),
                timeout_s=10.0,
                fallback_line_a=fallback,
            ),
        )
        if meter
        else ()
    )
    return Site(
        name="t", voltage=VoltageSystem.EU_230_400, nodes=nodes, chargers=chargers, meters=meters
    )


def _lim(cid: str, a: float) -> ChargerLimit:
    return ChargerLimit(
        charger_id=cid,
        limit_a=a,
        phases=3,
        reason=Reason(kind=ReasonKind.NODE_LINE, node_id="main"),
    )


# --- settings -------------------------------------------------------------------------------


def test_settings_fields_match_the_config_section() -> None:
    sec = ControlSection(deadband_a=0.5, ramp_up_a_per_s=2.0)
    s = ControlSettings(**sec.model_dump())
    assert s.deadband_a == 0.5
    assert s.ramp_up_a_per_s == 2.0
    assert set(ControlSection.model_fields) == set(ControlSettings.__dataclass_fields__)
    assert ControlSettings(**ControlSection().model_dump()) == ControlSettings()


def test_control_section_rejects_bad_values_and_unknown_keys() -> None:
    with pytest.raises(ValueError, match="max_period_s"):
        ControlSection(max_period_s=0)
    with pytest.raises(ValueError, match="lease"):
        ControlSection(lease=3)  # type: ignore[call-arg]


# --- trigger --------------------------------------------------------------------------------


def _count_runs(
    trigger: Trigger, inputs: list[float], t_end: float, dt: float = 0.01
) -> list[float]:
    runs, pending = [], sorted(inputs)
    for k in range(round(t_end / dt) + 1):
        now = k * dt
        while pending and pending[0] <= now + 1e-9:
            trigger.notify(pending.pop(0))
        if trigger.due(now):
            runs.append(now)
            trigger.ran(now)
    return runs


def test_burst_of_200_boots_is_coalesced_into_a_few_steps() -> None:
    trig = Trigger(S)
    trig.ran(0.0)
    boots = [0.4 + i * 0.005 for i in range(200)]  # 200 chargers within one second
    runs = [t for t in _count_runs(trig, boots, 1.4) if 0.4 <= t <= 1.4]
    assert 1 <= len(runs) <= math.ceil(1.0 / S.min_interval_s) + 1
    assert runs[0] == pytest.approx(0.4 + S.coalesce_s, abs=0.011)


def test_a_step_runs_at_least_every_max_period_and_at_the_asked_wakeup() -> None:
    trig = Trigger(S)
    runs = _count_runs(trig, [], 5.0)
    assert runs[0] == 0.0
    assert [round(b - a, 2) for a, b in itertools.pairwise(runs)] == [1.0] * 5
    trig = Trigger(S)
    trig.ran(0.0, next_wakeup_s=0.5)
    assert trig.next_run_s() == pytest.approx(0.5)
    trig.ran(0.5, next_wakeup_s=0.55)  # never closer than min_interval_s
    assert trig.next_run_s() == pytest.approx(0.5 + S.min_interval_s)


# --- fallback share ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "conn"), [(10, Connection.THREE_PHASE), (7, Connection.L1), (9, Connection.L1_L2)]
)
def test_all_chargers_at_their_fallback_keep_the_site_within_limits(
    n: int, conn: Connection
) -> None:
    site = _site(n, 63.0, meter=False, conn=conn)
    if conn is Connection.L1_L2:
        site = replace(site, voltage=VoltageSystem.US_120_208)
    fb = fallback_limits(site, index_site(site))
    lines = node_line_currents_a(site, fb)["main"]
    assert max(lines) <= 63.0 + 1e-9
    assert all(v >= 6.0 or v == 0 for v in fb.values())
    assert sum(fb.values()) > 0  # and it is not trivially zero


def test_fallback_of_a_metered_node_uses_its_worst_case_or_zero() -> None:
    site = _site(3, 63.0, fallback=(33.0, 33.0, 33.0))
    assert set(fallback_limits(site, index_site(site)).values()) == {10.0}
    pessimistic = _site(3, 63.0)
    assert set(fallback_limits(pessimistic, index_site(pessimistic)).values()) == {0.0}


def test_fallback_respects_a_delta_transformer_primary_exactly() -> None:
    site = _site(12, 400.0, meter=False, conn=Connection.L1)
    xf = replace(
        site.nodes[0],
        kind=NodeKind.TRANSFORMER,
        primary=TransformerPrimary(
            winding=PrimaryWinding.DELTA, winding_ratio=4.0, line_limit_a=30.0
        ),
    )
    site = replace(site, nodes=(xf,))
    fb = fallback_limits(site, index_site(site))
    assert max(primary_line_currents_a(site, fb)["main"]) <= 30.0 + 1e-9
    assert min(fb.values()) > 0


# --- sequencing -----------------------------------------------------------------------------


def _tracks(site: Site, limits: dict[str, float]) -> dict[str, ChargerTrack]:
    return {
        c.id: ChargerTrack(
            charger_id=c.id,
            limit_a=limits.get(c.id, 0.0),
            high_a=limits.get(c.id, 0.0),
            lease_until_s=1e9,
        )
        for c in site.chargers
    }


def test_decrease_goes_out_first_and_the_increase_waits_for_its_confirmation() -> None:
    site = _site(2, 32.0)
    idx = index_site(site)
    tracks = _tracks(site, {"c0": 20.0, "c1": 10.0})
    targets = {"c0": _lim("c0", 10.0), "c1": _lim("c1", 20.0)}
    headroom = {"main": (2.0, 2.0, 2.0)}  # 32 - (10 + 20)
    events: list = []
    plan = plan_commands(idx, tracks, targets, headroom, now_s=0.0, settings=S, events=events)
    assert [(c.charger_id, c.limit_a) for c in plan.commands] == [("c0", 10.0)]
    assert plan.held == ("c1",)
    assert tracks["c0"].pending
    assert tracks["c0"].high_a == 20.0
    # acknowledged but not measured: the increase still waits until the EV reaction time
    apply_acks(tracks, [CommandAck(charger_id="c0", t_s=0.2, limit_a=10.0)], events)
    tracks["c0"] = expire_pending(tracks["c0"], 1.0, S)
    plan = plan_commands(idx, tracks, targets, headroom, now_s=1.0, settings=S, events=events)
    assert plan.commands == ()
    assert plan.held == ("c1",)
    tracks["c0"] = expire_pending(tracks["c0"], 0.2 + S.ev_reaction_s, S)
    plan = plan_commands(idx, tracks, targets, headroom, now_s=5.2, settings=S, events=events)
    assert [(c.charger_id, c.limit_a) for c in plan.commands] == [("c1", 20.0)]


def test_a_measured_draw_confirms_the_decrease_early() -> None:
    site = _site(1)
    t = ChargerTrack(charger_id="c0", limit_a=10.0, high_a=20.0, acked_s=1.0)
    s = ChargerState(charger_id="c0", t_s=1.5, measured_current_a=(9.8, 9.9, 10.0))
    out = apply_charger_state(t, s, 6.0, S, [])
    assert not out.pending
    assert out.high_a == 10.0
    # within the tolerance above the new limit: counted at the draw, not at the limit
    near = ChargerState(charger_id="c0", t_s=1.5, measured_current_a=(10.2, 10.1, 10.3))
    assert apply_charger_state(t, near, 6.0, S, []).high_a == 10.3
    before_ack = ChargerState(charger_id="c0", t_s=0.5, measured_current_a=(9.0, 9.0, 9.0))
    assert apply_charger_state(replace(t, acked_s=None), before_ack, 6.0, S, []).pending
    del site


def test_a_low_draw_right_after_an_increase_confirms_nothing() -> None:
    """The car may not have followed the earlier increase yet: it could still rise to it."""
    t = ChargerTrack(charger_id="c0", limit_a=14.7, high_a=22.0, acked_s=1.0, raised_s=0.5)
    s = ChargerState(charger_id="c0", t_s=1.5, measured_current_a=(14.7, 14.7, 14.7))
    assert apply_charger_state(t, s, 6.0, S, []).high_a == 22.0
    late = S.ack_timeout_s + S.ev_reaction_s + 0.5
    s_late = ChargerState(charger_id="c0", t_s=late, measured_current_a=(14.7, 14.7, 14.7))
    assert apply_charger_state(t, s_late, 6.0, S, []).high_a == 14.7


def test_increase_that_fits_beside_the_in_flight_decrease_is_not_held() -> None:
    site = _site(3, 63.0)
    idx = index_site(site)
    tracks = _tracks(site, {"c0": 20.0, "c1": 10.0, "c2": 10.0})
    targets = {"c0": _lim("c0", 16.0), "c1": _lim("c1", 16.0), "c2": _lim("c2", 10.0)}
    plan = plan_commands(
        idx, tracks, targets, {"main": (21.0, 21.0, 21.0)}, now_s=0.0, settings=S, events=[]
    )
    assert [c.charger_id for c in plan.commands] == ["c0", "c1"]  # decrease listed first


def test_deadband_skips_small_increases_but_never_a_decrease() -> None:
    site = _site(1)
    idx = index_site(site)
    tracks = _tracks(site, {"c0": 10.0})
    big = {"main": (50.0, 50.0, 50.0)}
    up = plan_commands(idx, tracks, {"c0": _lim("c0", 10.5)}, big, now_s=0, settings=S, events=[])
    assert up.commands == ()
    down = plan_commands(idx, tracks, {"c0": _lim("c0", 9.7)}, big, now_s=0, settings=S, events=[])
    assert [c.limit_a for c in down.commands] == [9.7]


def test_leases_are_refreshed_after_half_their_time() -> None:
    site = _site(1)
    idx = index_site(site)
    tracks = {"c0": ChargerTrack(charger_id="c0", limit_a=10.0, high_a=10.0, lease_until_s=120.0)}
    tg = {"c0": _lim("c0", 10.0)}
    assert plan_commands(idx, tracks, tg, {}, now_s=59.0, settings=S, events=[]).commands == ()
    plan = plan_commands(idx, tracks, tg, {}, now_s=60.0, settings=S, events=[])
    assert [(c.limit_a, c.lease_until_s) for c in plan.commands] == [(10.0, 180.0)]


# --- meters ---------------------------------------------------------------------------------


def _meters() -> dict[str, MeterTrack]:
    return {"m": MeterTrack(meter_id="m")}


def test_meter_stale_after_timeout_and_trusted_again_only_after_recovery() -> None:
    site = _site(1)
    meters, events = _meters(), []
    apply_readings(meters, [MeterReading(meter_id="m", t_s=0.0, current_a=(10.0, 10.0, 10.0))])
    update_meter_staleness(site, S, meters, 0.0, events)
    assert not meters["m"].stale  # a meter never trusted before is trusted at once
    update_meter_staleness(site, S, meters, 10.5, events)
    assert meters["m"].stale
    assert [e.kind for e in events] == [EventKind.METER_STALE]
    for t in (11.0, 12.0, 13.0):  # it comes back, but a flapping meter is not trusted yet
        apply_readings(meters, [MeterReading(meter_id="m", t_s=t, current_a=(9.0, 9.0, 9.0))])
        update_meter_staleness(site, S, meters, t, events)
        assert meters["m"].stale
    for t in range(14, 22):
        apply_readings(meters, [MeterReading(meter_id="m", t_s=t, current_a=(9.0, 9.0, 9.0))])
        update_meter_staleness(site, S, meters, float(t), events)
    assert not meters["m"].stale
    assert events[-1].kind is EventKind.METER_RECOVERED
    assert meters["m"].max_line_a == (10.0, 10.0, 10.0)


# --- non-compliance and reclaim -------------------------------------------------------------


def _feed(t: ChargerTrack, draws: list[tuple[float, float]], events: list) -> ChargerTrack:
    for ts, a in draws:
        t = apply_charger_state(
            t,
            ChargerState(charger_id=t.charger_id, t_s=ts, measured_current_a=(a, a, a)),
            6.0,
            S,
            events,
        )
    return t


def test_charger_over_its_limit_for_n_seconds_is_noncompliant_and_recovers() -> None:
    events: list = []
    t = ChargerTrack(charger_id="c0", limit_a=10.0, high_a=10.0)
    t = _feed(t, [(float(s), 16.0) for s in range(10)], events)
    assert not t.noncompliant
    t = _feed(t, [(10.0, 16.0)], events)
    assert t.noncompliant
    assert events[-1].kind is EventKind.NONCOMPLIANT
    t = _feed(t, [(float(s), 9.0) for s in range(11, 22)], events)
    assert not t.noncompliant
    assert events[-1].kind is EventKind.COMPLIANT_AGAIN


def test_within_tolerance_or_in_flight_is_not_noncompliance() -> None:
    t = ChargerTrack(charger_id="c0", limit_a=10.0, high_a=16.0)  # decrease in flight
    assert not _feed(t, [(float(s), 16.0) for s in range(30)], []).noncompliant
    t = ChargerTrack(charger_id="c0", limit_a=10.0, high_a=10.0)
    assert not _feed(t, [(float(s), 11.9) for s in range(30)], []).noncompliant


def test_unused_current_is_reclaimed_and_the_cap_lifts_when_the_car_wants_more() -> None:
    events: list = []
    t = ChargerTrack(charger_id="c0", limit_a=16.0, high_a=16.0)
    t = _feed(t, [(float(s), 7.0) for s in range(31)], events)
    assert t.cap_a == pytest.approx(9.0)
    assert events[-1].kind is EventKind.RECLAIMED
    t = replace(t, limit_a=9.0, high_a=9.0)
    t = _feed(t, [(31.0, 8.8)], events)
    assert t.cap_a is None


def test_evolve_is_replace() -> None:
    from ampshare.control._types import evolve

    t = ChargerTrack(charger_id="c0", limit_a=3.0, online=False, cap_a=2.0)
    assert evolve(t, limit_a=5.0, high_a=7.0) == replace(t, limit_a=5.0, high_a=7.0)
    assert evolve(t) == t


@hyp_settings(max_examples=300, deadline=None)
@given(
    raw=st.floats(0.0, 80.0),
    noise=st.sampled_from([0.0, 1e-15, -1e-15, 2e-12]),
    res=st.sampled_from([0.1, 1.0, 0.5, 0.01]),
    power=st.none() | st.floats(0.0, 50_000.0),
)
def test_command_limits_are_exact_multiples_of_the_resolution(raw, noise, res, power) -> None:
    lim = ChargerLimit(
        charger_id="c0",
        limit_a=raw + noise,
        phases=3,
        reason=Reason(kind=ReasonKind.POLICY_SHARE),
        power_w=power,
    )
    out = clean_limit(lim, res)
    assert out.limit_a <= lim.limit_a + 1e-6  # never raised
    assert lim.limit_a - out.limit_a < res + 1e-6  # by less than one step
    assert out.limit_a == round(out.limit_a, 3)  # no float noise to show anyone
    assert abs(out.limit_a / res - round(out.limit_a / res)) < 1e-6
    assert repr(out.limit_a) == repr(round(out.limit_a, 3))
    if power is not None:
        assert out.power_w is not None
        assert out.power_w == round(out.power_w, 1)
        assert out.power_w <= power + 1e-6


def test_noisy_allocator_values_reach_the_charger_clean() -> None:
    lim = ChargerLimit(
        charger_id="c0",
        limit_a=8.200000000000001,
        phases=3,
        reason=Reason(kind=ReasonKind.POLICY_SHARE),
    )
    assert clean_limit(lim, 0.1).limit_a == 8.2
    assert str(clean_limit(lim, 0.1).limit_a) == "8.2"
    assert clean_limit(replace(lim, limit_a=7.6000000000000005), 0.1).limit_a == 7.6
    assert clean_limit(replace(lim, limit_a=13.99), 1.0).limit_a == 13.0
