"""Decrease-before-increase in the physics: random arrivals and departures on a tight site,
run through the scenario runner (real controller, real allocator, cars with reaction delays),
never put a single ampere-second above any limit."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from ampshare.scenario import evaluate, parse_scenario, run_scenario

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


@settings(max_examples=10, deadline=None)
@given(
    moves=st.lists(
        st.tuples(
            st.sampled_from("abcd"), st.floats(0.0, 40.0), st.booleans(), st.floats(1.0, 3.0)
        ),
        min_size=1,
        max_size=6,
        unique_by=lambda m: m[0],
    ),
)
def test_random_arrivals_and_departures_never_exceed_a_limit(moves) -> None:
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
    sc = parse_scenario(
        {
            "name": "random",
            "site": SITE,
            "duration_s": 60,
            "building_a": {"main": 5},
            "control": {"min_pause_s": 0},
            "events": events,
            "expect": [{"never_above_limit": {}}],
        },
        source="<hypothesis>",
    )
    result = evaluate(sc, run_scenario(sc))
    assert result.passed, result.checks
