"""Checking a run against the expectations written in the scenario file."""

from __future__ import annotations

from typing import Any

from ampshare.scenario._load import Scenario
from ampshare.scenario._model import (
    AllChargingBy,
    EventRaised,
    Expectation,
    LimitAtLeast,
    LimitAtMost,
    LimitChangesAtMost,
    NeverAbove,
    StopsAtMost,
)
from ampshare.scenario._runner import RunResult

__all__ = ["evaluate"]


def _never_above(e: NeverAbove, r: RunResult) -> dict[str, Any]:
    bad = []
    for node, lines in r.lines.items():
        if e.nodes is not None and node not in e.nodes:
            continue
        for ln, s in lines.items():
            if e.allow_excess_s == 0 and s.amp_seconds_above > 0:
                bad.append(
                    f"{node} {ln}: {s.amp_seconds_above:.2f} A·s above "
                    f"{s.limit_a:g} A (peak {s.peak_a:.1f} A)"
                )
            elif s.longest_above_s > e.allow_excess_s + 1e-9:
                bad.append(
                    f"{node} {ln}: above its limit for {s.longest_above_s:.1f} s at once "
                    f"(allowed {e.allow_excess_s:g} s)"
                )
    longest = max(
        (s.longest_above_s for lines in r.lines.values() for s in lines.values()), default=0.0
    )
    allow = (
        f" except {longest:.1f} s at most at once (up to {e.allow_excess_s:g} s allowed)"
        if longest > 0
        else ""
    )
    return {
        "check": "never_above_limit",
        "passed": not bad,
        "detail": "; ".join(bad) or f"every node line within its limit{allow}",
    }


def _limit_at(e: LimitAtMost | LimitAtLeast, r: RunResult) -> dict[str, Any]:
    """The limit the charger enforced at ``at_s`` (its lease, else its fallback)."""
    value = None
    for t, lim in r.limit_history.get(e.charger, []):
        if t <= e.at_s + 1e-9:
            value = lim
    most = isinstance(e, LimitAtMost)
    ok = value is not None and (value <= e.limit_a + 1e-9 if most else value >= e.limit_a - 1e-9)
    shown = "none" if value is None else f"{value:.1f} A"
    return {
        "check": "limit_at_most" if most else "limit_at_least",
        "passed": ok,
        "detail": f"{e.charger} at {e.at_s:g} s: limit {shown} "
        f"(expected {'<=' if most else '>='} {e.limit_a:g} A)",
    }


def _charging(e: AllChargingBy, r: RunResult) -> dict[str, Any]:
    snap = r.snapshots.get(e.at_s)
    waiting = None if snap is None else snap["not_charging"]
    ok = waiting == []
    detail = (
        "every car that wants energy is charging"
        if ok
        else f"not charging at {e.at_s:g} s: {', '.join(waiting or ['(no snapshot)'])}"
    )
    return {"check": "all_charging_by", "passed": ok, "detail": detail}


def _event(e: EventRaised, r: RunResult, start_s: float) -> dict[str, Any]:
    hits = [
        ev
        for ev in r.events
        if ev.kind.value == e.kind
        and (e.subject is None or ev.subject == e.subject)
        and ev.t_s - start_s <= e.by_s + 1e-9
    ]
    first = f"first at {hits[0].t_s - start_s:.1f} s: {hits[0].message}" if hits else "none"
    return {
        "check": "event_raised",
        "passed": bool(hits),
        "detail": f"{e.kind} {e.subject or ''} by {e.by_s:g} s: {first}",
    }


def _stops(e: StopsAtMost, r: RunResult) -> dict[str, Any]:
    chargers = e.chargers if e.chargers is not None else sorted(r.chargers)
    counts = {c: int(r.chargers[c]["stops"]) if c in r.chargers else -1 for c in chargers}
    bad = [
        f"{c}: {n}" if n >= 0 else f"{c}: no such charger"
        for c, n in counts.items()
        if n > e.stops or n < 0
    ]
    most = max(counts.values(), default=0)
    detail = f"at most {e.stops} stop(s) per car"
    detail += f"; stopped more often: {', '.join(bad)}" if bad else f" (most: {most})"
    return {"check": "stops_at_most", "passed": not bad, "detail": detail}


def _limit_changes(e: LimitChangesAtMost, r: RunResult) -> dict[str, Any]:
    history = r.limit_history.get(e.charger)
    if history is None:
        return {"check": "limit_changes_at_most", "passed": False,
                "detail": f"{e.charger}: no such charger"}
    changes, last = 0, None
    for t, lim in history:
        if last is not None and abs(lim - last) > 1e-9 and t >= e.from_s - 1e-9:
            changes += 1
        last = lim
    return {
        "check": "limit_changes_at_most",
        "passed": changes <= e.changes,
        "detail": f"{e.charger}: {changes} limit change(s) from {e.from_s:g} s "
        f"(expected <= {e.changes})",
    }


def _one(e: Expectation, r: RunResult, start_s: float) -> dict[str, Any]:
    if e.never_above_limit is not None:
        return _never_above(e.never_above_limit, r)
    if e.limit_at_most is not None:
        return _limit_at(e.limit_at_most, r)
    if e.limit_at_least is not None:
        return _limit_at(e.limit_at_least, r)
    if e.all_charging_by is not None:
        return _charging(e.all_charging_by, r)
    if e.stops_at_most is not None:
        return _stops(e.stops_at_most, r)
    if e.limit_changes_at_most is not None:
        return _limit_changes(e.limit_changes_at_most, r)
    assert e.event_raised is not None
    return _event(e.event_raised, r, start_s)


def evaluate(sc: Scenario, result: RunResult) -> RunResult:
    """Fill ``result.checks`` (one entry per expectation, in file order) and return it."""
    result.checks = [_one(e, result, sc.decl.start_s) for e in sc.decl.expect]
    return result
