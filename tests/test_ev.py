"""The EV and charger physics model (ampshare.sim.ev)."""

from __future__ import annotations

import pytest

from ampshare.sim.ev import (
    EvSpec,
    ev_current_a,
    ev_follow_pilot,
    ev_plug_in,
    ev_step,
    offered_pilot_a,
)


def _run(ev, pilot_at, t0=0.0, t1=10.0, dt=0.1, volts=230.0):
    """Step the car from t0 to t1 with pilot_at(t) -> pilot; return (times, draws, ev)."""
    times, draws = [], []
    n = round((t1 - t0) / dt)
    for k in range(n):
        t = t0 + k * dt
        ev = ev_follow_pilot(ev, pilot_at(t), t)
        ev = ev_step(ev, t, dt, volts)
        times.append(t)
        draws.append(ev.draw_a)
    return times, draws, ev


def test_ev_obeys_a_new_pilot_only_after_its_reaction_delay() -> None:
    ev = ev_plug_in(EvSpec(max_current_a=32, reaction_s=2.0), stored_wh=10_000, wanted_wh=20_000)
    times, draws, _ = _run(ev, lambda t: 16.0 if t < 5 else 8.0, t1=10)
    by_t = dict(zip((round(t, 1) for t in times), draws, strict=True))
    assert by_t[1.9] == 0.0  # not yet obeyed the first pilot
    assert by_t[2.0] == 16.0
    assert by_t[6.9] == 16.0  # the decrease at 5 s is not obeyed before 7 s
    assert by_t[7.0] == 8.0


def test_quick_decrease_then_increase_is_obeyed_in_order() -> None:
    ev = ev_plug_in(EvSpec(max_current_a=32, reaction_s=1.0), stored_wh=0, wanted_wh=50_000)
    pilots = {0.0: 20.0, 3.0: 10.0, 3.5: 20.0}

    def pilot(t: float) -> float:
        return [v for k, v in pilots.items() if k <= t + 1e-9][-1]

    times, draws, _ = _run(ev, pilot, t1=6)
    by_t = dict(zip((round(t, 1) for t in times), draws, strict=True))
    assert by_t[4.0] == 10.0
    assert by_t[4.4] == 10.0
    assert by_t[4.5] == 20.0


def test_pilot_under_six_amps_pauses_and_onboard_max_caps() -> None:
    spec = EvSpec(max_current_a=16)
    assert ev_current_a(spec, 0.0, 5.9) == 0.0
    assert ev_current_a(spec, 0.0, 6.0) == 6.0
    assert ev_current_a(spec, 0.0, 32.0) == 16.0


def test_taper_lowers_the_draw_near_full_but_basic_does_not() -> None:
    spec = EvSpec(max_current_a=32, capacity_wh=50_000, taper_start_frac=0.8, taper_end_a=2.0)
    assert ev_current_a(spec, 0.5 * 50_000, 32) == 32
    mid = ev_current_a(spec, 0.9 * 50_000, 32)
    assert 2.0 < mid < 32
    assert mid == pytest.approx(17.0)
    basic = EvSpec(max_current_a=32, capacity_wh=50_000, basic=True)
    assert ev_current_a(basic, 0.99 * 50_000, 32) == 32


def test_energy_is_v_times_i_times_phases_and_stops_at_the_target() -> None:
    spec = EvSpec(max_current_a=16, phases=3, reaction_s=0.0, basic=True, capacity_wh=100_000)
    ev = ev_plug_in(spec, stored_wh=0, wanted_wh=1_000)
    _, draws, ev = _run(ev, lambda t: 16.0, t1=3600, dt=1.0)
    # 230 V x 16 A x 3 = 11.04 kW: 1 kWh takes ~326 s, then the car stops by itself
    assert ev.full
    assert ev.delivered_wh == pytest.approx(1_000)
    assert draws.count(16.0) == pytest.approx(326, abs=1)
    assert draws[-1] == 0.0


def test_wanted_energy_is_capped_by_the_battery() -> None:
    ev = ev_plug_in(EvSpec(capacity_wh=40_000), stored_wh=35_000, wanted_wh=20_000)
    assert ev.target_wh == 40_000


def test_charger_offers_limit_fallback_or_its_max_when_it_ignores_limits() -> None:
    kw = {"fallback_a": 6.0, "charger_max_a": 32.0}
    assert offered_pilot_a(limit_a=10.0, ignores_limit=False, **kw) == 10.0
    assert offered_pilot_a(limit_a=None, ignores_limit=False, **kw) == 6.0
    assert offered_pilot_a(limit_a=40.0, ignores_limit=False, **kw) == 32.0
    assert offered_pilot_a(limit_a=0.0, ignores_limit=True, **kw) == 32.0
