"""Arrivals at idle chargers with no start-up delay (promise 1 while limits change): a car
that plugs in draws at once whatever its charger offers. Over random arrivals, departures and
charger outages on a tight two-level site, with cars already charging at high limits, not a
single ampere-second goes above any limit; and the capacity is still used."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from ampshare.scenario import evaluate, parse_scenario, run_file, run_scenario

ROOT = Path(__file__).resolve().parents[1]

SITE = {
    "site": "arrivals",
    "voltage": "230/400",
    "nodes": [{"id": "main", "limit_a": 50}, {"id": "sub", "parent": "main", "limit_a": 32}],
    "chargers": [
        {"id": "a", "node": "main", "connection": "3p", "max_a": 32},
        {"id": "b", "node": "main", "connection": "3p", "max_a": 32},
        {"id": "c", "node": "sub", "connection": "L1", "max_a": 32},
        {"id": "d", "node": "sub", "connection": "L1", "max_a": 32, "rotation": "L2L3L1"},
        {"id": "e", "node": "sub", "connection": "3p", "max_a": 16},
    ],
    # a realistic worst case: every charger's fallback is above 0 A
    "meters": [{"id": "m", "node": "main", "timeout_s": 10, "poll_s": 1, "fallback_a": 8}],
}

MOVE = st.tuples(
    st.sampled_from("cde"),  # a and b charge from the start
    st.floats(0.0, 50.0),  # arrival time
    st.booleans(),  # leaves 12 s later
    st.booleans(),  # its charger drops offline before the arrival and returns with the car
)


def _events(moves: list[tuple[str, float, bool, bool]]) -> list[dict[str, object]]:
    events: list[dict[str, object]] = []
    for charger, raw_at, leaves, outage in moves:
        at = round(raw_at, 1)
        arrive = {"charger": charger, "wanted_kwh": 20, "max_a": 32, "reaction_s": 0}
        if outage and at >= 3.0:
            events.append({"at_s": round(at - 3.0, 1), "charger_offline": charger})
            events.append({"at_s": at, "charger_online": charger})
        events.append({"at_s": at, "ev_arrives": arrive})
        if leaves:
            events.append({"at_s": round(at + 12.0, 1), "ev_leaves": charger})
    return events


@settings(max_examples=12, deadline=None)
@given(moves=st.lists(MOVE, min_size=1, max_size=3, unique_by=lambda m: m[0]))
def test_immediate_arrivals_never_put_an_ampere_second_above_a_limit(moves) -> None:
    sc = parse_scenario(
        {
            "name": "random arrivals, no start-up delay",
            "site": SITE,
            "duration_s": 70,
            "building_a": {"main": 6},
            "control": {"min_pause_s": 0, "lease_s": 40},
            "evs": [
                {"charger": "a", "wanted_kwh": 40, "max_a": 32},
                {"charger": "b", "wanted_kwh": 40, "max_a": 32},
            ],
            "events": _events(moves),
            "expect": [{"never_above_limit": {}}],
        },
        source="<hypothesis>",
    )
    result = evaluate(sc, run_scenario(sc))
    for node, lines in result.lines.items():
        for line, stats in lines.items():
            assert stats.amp_seconds_above == 0, (node, line, stats)


def test_arrival_scenario_is_safe_and_uses_the_capacity() -> None:
    result = run_file(ROOT / "scenarios" / "arrival-at-fallback.yaml")
    assert result.passed, [c for c in result.checks if not c["passed"]]
    stats = result.lines["main"]["L1"]
    assert stats.amp_seconds_above == 0
    assert stats.peak_a > 62.0  # charging cars were at high limits when the others arrived
