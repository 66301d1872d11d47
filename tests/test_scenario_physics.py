"""Decrease-before-increase in the physics: random arrivals and departures on a tight site,
run through the scenario runner (real controller, real allocator, cars with reaction delays),
with chargers reporting at random periods and phases against the meter (or on every change),
never put a single ampere-second above any limit."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from ampshare.scenario import evaluate, load_scenario, parse_scenario, run_scenario
from ampshare.scenario._runner import _Run

ROOT = Path(__file__).resolve().parents[1]

SITE = {
    "site": "tight",
    "voltage": "230/400",
    "nodes": [{"id": "main", "limit_a": 40}, {"id": "sub", "parent": "main", "limit_a": 25}],
    "chargers": [
        {"id": "a", "node": "main", "connection": "3p", "max_a": 32},
        {"id": "b", "node": "sub", "connection": "L1", "max_a": 32},
        {"id": "c", "node": "sub", "connection": "L1", "max_a": 32, "rotation": "L2L3L1"},
        {"id": "d", "node": "sub", "connection": "3p", "max_a": 16},
    ],
    "meters": [{"id": "m", "node": "main", "timeout_s": 10, "poll_s": 1, "fallback_a": 8}],
}


#: charger report timing: period, first report (its phase against the meter's samples at
#: whole seconds), spread over the chargers, and reports on every change of draw
REPORTS = st.fixed_dictionaries(
    {
        "charger_report_s": st.sampled_from([0.7, 1.0, 1.3, 2.0, 5.0, 10.0, 30.0]),
        "charger_report_offset_s": st.sampled_from([0.0, 0.3, 0.5, 0.9]),
        "charger_report_stagger": st.booleans(),
        "charger_report_on_change": st.booleans(),
    }
)


@settings(max_examples=15, deadline=None)
@given(
    moves=st.lists(
        st.tuples(
            st.sampled_from("abcd"), st.floats(0.0, 40.0), st.booleans(), st.floats(1.0, 3.0)
        ),
        min_size=1,
        max_size=6,
        unique_by=lambda m: m[0],
    ),
    reports=REPORTS,
)
def test_random_arrivals_and_departures_never_exceed_a_limit(moves, reports) -> None:
    events = []
    for charger, at, leaves, reaction in moves:
        events.append(
            {
                "at_s": round(at, 1),
                "ev_arrives": {
                    "charger": charger,
                    "wanted_kwh": 20,
                    "max_a": 32,
                    "reaction_s": reaction,
                },
            }
        )
        if leaves:
            events.append({"at_s": round(at + 15.0, 1), "ev_leaves": charger})
    _never_above(events, reports, control={"min_pause_s": 0}, duration_s=60)


def _never_above(
    events: list[dict[str, object]],
    reports: dict[str, object],
    *,
    control: dict[str, float],
    duration_s: float,
) -> None:
    """Run ``events`` on the tight site (5 A of building load) and check no limit is passed."""
    sc = parse_scenario(
        {
            "name": "random",
            "site": SITE,
            "duration_s": duration_s,
            "building_a": {"main": 5},
            "physics": reports,
            "control": control,
            "events": events,
            "expect": [{"never_above_limit": {}}],
        },
        source="<hypothesis>",
    )
    result = evaluate(sc, run_scenario(sc))
    assert result.passed, result.checks


def _last_reports(physics: dict[str, object], duration_s: float) -> dict[str, float]:
    """Scenario time of each charger's last report in a run of the base scenario."""
    base = load_scenario(ROOT / "scenarios" / "_base.yaml")
    decl = base.decl.model_copy(
        update={
            "duration_s": duration_s,
            "physics": base.decl.physics.model_copy(update=physics),
        }
    )
    run = _Run(replace(base, decl=decl))
    run.run()
    return {cid: round(r.t_s - decl.start_s, 3) for cid, r in run.last_reports.items()}


def test_charger_reports_come_at_their_period_offset_and_phase() -> None:
    assert _last_reports({"charger_report_s": 1.3, "charger_report_offset_s": 0.4}, 5.0) == {
        "c1": 4.3,
        "c2": 4.3,
        "c3": 4.3,
    }
    staggered = {"charger_report_s": 3.0, "charger_report_stagger": True}
    assert _last_reports(staggered, 5.0) == {"c1": 3.0, "c2": 4.0, "c3": 5.0}


def test_a_charger_reporting_on_change_reports_when_its_car_starts() -> None:
    """Every 300 s, so only the first report (at 0 s, nothing drawn) and the changes: the cars
    start once their first limits reach them and they have reacted."""
    rare = {"charger_report_s": 300.0, "charger_report_on_change": True}
    starts = _last_reports(rare, 20.0)
    assert set(starts.values()) == {3.0}
    assert _last_reports({"charger_report_s": 300.0}, 20.0) == {"c1": 0.0, "c2": 0.0, "c3": 0.0}


@settings(max_examples=15, deadline=None)
@given(
    cars=st.lists(
        st.tuples(
            st.sampled_from("abcd"),
            st.floats(0.0, 30.0),  # arrives at
            st.floats(0.02, 0.4),  # kWh it wants: full within the run or not
            st.booleans(),  # an ideal battery (stops at once when full) or a tapering one
            st.one_of(st.none(), st.floats(20.0, 50.0)),  # leaves at (and a car comes back)
        ),
        min_size=2,
        max_size=4,
        unique_by=lambda c: c[0],
    ),
    reports=REPORTS,
)
def test_full_cars_paused_probed_and_replaced_never_exceed_a_limit(cars, reports) -> None:
    """Cars fill up and stop drawing (SuspendedEV), are paused at 0 A after reclaim_after_s,
    offered current again by probes every few seconds and paused again, leave and are
    replaced by a car that wants energy: the freed current moves around, never above a limit.
    Short reclaim and probe times, so that every car goes round that cycle in the run."""
    events = []
    for charger, at, kwh, basic, leaves in cars:
        ev = {"charger": charger, "wanted_kwh": round(kwh, 3), "max_a": 32, "basic": basic}
        events.append({"at_s": round(at, 1), "ev_arrives": ev})
        if leaves is not None:
            events.append({"at_s": round(at + leaves, 1), "ev_leaves": charger})
            again = {"charger": charger, "wanted_kwh": 20, "max_a": 32}
            events.append({"at_s": round(at + leaves + 2.0, 1), "ev_arrives": again})
    control = {"min_pause_s": 0, "reclaim_after_s": 3, "probe_interval_s": 8}
    _never_above(events, reports, control=control, duration_s=120)
