"""Arrivals at idle chargers: what a car plugging in would be offered, and holding it low.

A car that plugs into an idle charger starts at whatever the charger offers *at once*: its
leased limit if one is in force, else its fallback (the site-safe static share). The fallback
is safe only when every charger is at its fallback; beside cars charging at live limits above
their own shares it is not. So no assumption about how long a car takes to start is made:

* every online idle charger whose fallback is above its idle limit (0 A, or its minimum when
  0 A does not pause it) is sent that idle limit, leased and refreshed like any other limit;
* until that hold is acknowledged, and again from ``guard_s`` before its acknowledged lease
  could run out, the charger is counted in the allocation at what it would offer a car
  (``FixedLoad``), so the others only get what is left beside it;
* a charger that gets a session while no acknowledged lease is known in force is counted at
  its fallback too (``lapsed``), so its share is taken from the others first (decreases first).

The fallback on connector/EVSE 0 still holds when the hold's lease runs out: a controller
that is gone leaves every charger at its fallback, which is safe on its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ampshare.control._index import SiteIndex
from ampshare.control._settings import ControlSettings
from ampshare.control._types import ChargerTrack, evolve
from ampshare.core.allocation import ChargerLimit, FixedLoad, Reason, ReasonKind

__all__ = [
    "guard_s",
    "idle_limit_a",
    "idle_loads",
    "idle_targets",
    "lapsed",
    "lease_known",
    "settle_idle",
]


def guard_s(settings: ControlSettings) -> float:
    """How long before an acknowledged lease could lapse it stops being relied on: long
    enough for a lost refresh to be noticed and the others' decreases to be obeyed (leases
    shorter than four EV reaction times leave less than that)."""
    # at most a quarter of the lease: a refresh goes out at half of it, so a refresh answered
    # in time keeps the lease relied on without a gap
    return min(settings.ack_timeout_s + settings.ev_reaction_s, settings.lease_s / 4)


def lease_known(t: ChargerTrack, now_s: float, settings: ControlSettings) -> bool:
    """An acknowledged lease is in force for at least ``guard_s`` more."""
    return now_s < t.held_until_s - guard_s(settings)


def idle_limit_a(index: SiteIndex, charger_id: str) -> float:
    c = index.chargers[charger_id]
    return 0.0 if c.zero_pauses else c.min_current_a


def _offer_a(t: ChargerTrack, now_s: float, settings: ControlSettings) -> float:
    """Per phase, the most the idle charger may offer a car plugging in now."""
    if t.limit_a is not None and lease_known(t, now_s, settings):
        # acknowledged: an arriving car sees this limit at once (a decrease still "pending"
        # only waits for a car that has left); a draw it still reports counts as well
        return max(t.limit_a, t.measured_a)
    return max(t.fallback_a, t.high_a, t.limit_a or 0.0)


def idle_loads(
    index: SiteIndex,
    tracks: Mapping[str, ChargerTrack],
    idle: Iterable[str],
    now_s: float,
    settings: ControlSettings,
) -> list[FixedLoad]:
    """Idle online chargers counted at their offer (none for an offer of 0 A)."""
    out = []
    for cid in idle:
        t = tracks[cid]
        value = _offer_a(t, now_s, settings)
        if value <= 0.0:
            continue
        lines = index.lines[cid]
        per_line = (
            value if 0 in lines else 0.0,
            value if 1 in lines else 0.0,
            value if 2 in lines else 0.0,
        )
        why = f"idle: counted at the {value:g} A a car plugging in would be offered"
        out.append(FixedLoad(charger_id=cid, current_a=per_line, reason=why))
    return out


def idle_targets(
    index: SiteIndex, tracks: Mapping[str, ChargerTrack], idle: Iterable[str]
) -> dict[str, ChargerLimit]:
    """The idle limit for every idle online charger that could offer more than it (its
    fallback, or a limit left from a session that ended)."""
    out: dict[str, ChargerLimit] = {}
    for cid in idle:
        t = tracks[cid]
        low = idle_limit_a(index, cid)
        if max(t.fallback_a, t.high_a, t.limit_a or 0.0) <= low + 1e-9:
            continue
        detail = f"idle: held at {low:g} A so that a car plugging in waits for its share"
        out[cid] = ChargerLimit(
            charger_id=cid,
            limit_a=low,
            phases=len(index.lines[cid]) or 1,
            reason=Reason(kind=ReasonKind.NO_SESSION, detail=detail),
        )
    return out


def lapsed(t: ChargerTrack, now_s: float, settings: ControlSettings) -> ChargerTrack:
    """A charger with a car and no acknowledged lease known in force may be offering its
    fallback: count it at that (with what it is seen drawing), and send it a limit afresh
    when its last lease ran out (a new session on an idle charger, or a lost refresh)."""
    if not t.online or lease_known(t, now_s, settings):
        return t
    high = max(t.high_a, t.measured_a, t.fallback_a)
    limit = None if now_s >= t.lease_until_s else t.limit_a
    if high == t.high_a and limit == t.limit_a:
        return t
    new: ChargerTrack = evolve(t, high_a=high, limit_a=limit)
    return new


def settle_idle(t: ChargerTrack) -> ChargerTrack:
    """An idle charger's acknowledged decrease needs no EV reaction time: no car is left to
    obey it (a car that still draws is counted by ``idle_loads`` at its measured draw)."""
    if t.pending and t.acked_s is not None and t.limit_a is not None:
        settled: ChargerTrack = evolve(t, high_a=t.limit_a)
        return settled
    return t
