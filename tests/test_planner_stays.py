"""How the plan reads the drivers' declared stays: the chance a car is still there, from past
sessions that declared a stay like its own, and how far to plan a car past its declaration."""

from __future__ import annotations

import numpy as np

from ampshare.core.planner import DriverHistory, PlanInput, RecedingHorizonPlanner, plan
from ampshare.core.planner._sessions import lp_sessions
from ampshare.core.snapshot import Session
from test_planner import H, single_line_site

SLOT_S = 900.0


def _samples(declared_h: float, ratios: list[float]) -> list[tuple[float, float]]:
    return [(declared_h * H, r) for r in ratios]


def _alone(
    car: Session, *, start_s: float, n_slots: int, samples: tuple[tuple[float, float], ...]
) -> PlanInput:
    """``car`` alone on one 32 A charger, planned from ``start_s``."""
    return PlanInput(
        site=single_line_site(32.0, 1),
        start_s=start_s,
        slot_s=SLOT_S,
        n_slots=n_slots,
        sessions=(car,),
        stay_samples=samples,
    )


def test_a_car_is_judged_by_the_past_sessions_that_declared_a_stay_like_its_own() -> None:
    # Past: everyone who declared 2 h stayed twice as long; of those who declared 8 h, half
    # left at half of it. A site-wide mix would make the 2 h car look as likely to leave early.
    past = _samples(2, [2.0] * 100) + _samples(8, [0.5] * 50 + [1.0] * 50)
    short = Session(session_id="s", charger_id="c0", arrival_s=0.0, departure_s=2 * H)
    long = Session(session_id="l", charger_id="c1", arrival_s=0.0, departure_s=8 * H)
    inp = PlanInput(
        site=single_line_site(32.0, 2),
        start_s=0.0,
        slot_s=SLOT_S,
        n_slots=40,
        sessions=(short, long),
        stay_samples=tuple(past),
    )
    s, lg = lp_sessions(inp)
    assert np.all(s.stay == 1.0)  # its likes all stayed past their declaration
    mid_h = (lg.slots + 0.5) * SLOT_S / H
    assert np.all(lg.stay[mid_h < 4] == 1.0)
    assert np.all(np.isclose(lg.stay[mid_h > 4], 0.5))  # half its likes left at 4 h


def test_first_slot_counts_as_certain_the_car_is_there_now() -> None:
    past = _samples(1, list(np.linspace(0.2, 1.0, 100)))  # most leave before their declaration
    car = Session(session_id="a", charger_id="c0", arrival_s=0.0, departure_s=1 * H)
    (s,) = lp_sessions(_alone(car, start_s=0.5 * H, n_slots=8, samples=tuple(past)))
    assert s.stay[0] == 1.0
    assert s.stay[1] < 1.0


def _overdue_plan(samples: tuple[tuple[float, float], ...]) -> float:
    """Expected energy of a car declared for 1 h, still plugged in at 2 h, alone on 32 A."""
    car = Session(
        session_id="a", charger_id="c0", arrival_s=0.0, departure_s=1 * H, energy_wanted_wh=80e3
    )
    return plan(_alone(car, start_s=2 * H, n_slots=40, samples=samples)).sessions[0].expected_wh


def test_a_car_past_its_declared_departure_is_planned_as_long_as_its_likes_stayed() -> None:
    one_slot_wh = 32.0 * 230.0 * SLOT_S / H
    # Its likes (declared 1 h) stayed 3 to 6 h: the median of those still here at 2 h is 4.5 h,
    # so the plan runs 2.5 h ahead instead of one slot (the next re-plan extends it again).
    later = _overdue_plan(tuple(_samples(1, list(np.linspace(3.0, 6.0, 61)))))
    assert later > 2 * one_slot_wh
    assert later <= 32.0 * 230.0 * 2.5 + 1e-6
    # No history: one slot ahead, as before.
    assert abs(_overdue_plan(()) - one_slot_wh) < 1e-6


# --- DriverHistory: what the planner learns, in the simulator and live alike ----------------


def _car(i: int, arrival_h: float, declared_h: float | None) -> Session:
    return Session(
        session_id=f"s{i}",
        charger_id="c0",
        arrival_s=arrival_h * H,
        departure_s=None if declared_h is None else (arrival_h + declared_h) * H,
        energy_delivered_wh=1000.0 * (i + 1),
    )


def test_driver_history_learns_stays_from_the_sessions_it_sees_end() -> None:
    mpc = RecedingHorizonPlanner(site=single_line_site(32.0, 1))
    drivers = DriverHistory(every=2, min_sessions=3)
    a, b, c = _car(0, 0, 2.0), _car(1, 0, 4.0), _car(2, 0, None)
    assert not drivers.observe(0.0, (a, b, c))
    assert not drivers.observe(3 * H, (b, c))  # a leaves at 3 h: one ending, not yet two
    assert drivers.ended == [(a, 3 * H)]
    drivers.teach(mpc)
    assert mpc.defaults.dwell_s == 8 * H  # one session is too few: the defaults stay
    assert drivers.observe(5 * H, ())  # b at 5 h and c at 5 h: the second ending is due
    drivers.teach(mpc)
    # true stays 3, 5, 5 h: the median is the site's default stay (c declared nothing)
    assert mpc.defaults.dwell_s == 5 * H
    assert mpc.stay_samples == ((2 * H, 1.5), (4 * H, 1.25), (5 * H, 1.0))


def test_driver_history_keeps_only_the_latest_sessions() -> None:
    drivers = DriverHistory(keep=3)
    drivers.seed([(_car(i, i, 1.0), (i + 2) * H) for i in range(5)])
    assert [s.session_id for s, _ in drivers.ended] == ["s2", "s3", "s4"]
