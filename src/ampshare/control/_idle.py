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
  its fallback too (``lapse``), so its share is taken from the others first (decreases first).

The fallback on connector/EVSE 0 still holds when the hold's lease runs out: a controller
that is gone leaves every charger at its fallback, which is safe on its own.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet

from ampshare.control._index import SiteIndex
from ampshare.control._settings import ControlSettings
from ampshare.control._table import TrackTable
from ampshare.core.allocation import ChargerLimit, FixedLoad, Reason, ReasonKind

__all__ = [
    "guard_s",
    "idle_limit_a",
    "idle_loads",
    "idle_targets",
    "lapse",
    "settle_idle",
]


def guard_s(settings: ControlSettings) -> float:
    """How long before an acknowledged lease could lapse it stops being relied on: long
    enough for a lost refresh to be noticed and the others' decreases to be obeyed (leases
    shorter than four EV reaction times leave less than that)."""
    # at most a quarter of the lease: a refresh goes out at half of it, so a refresh answered
    # in time keeps the lease relied on without a gap
    return min(settings.ack_timeout_s + settings.ev_reaction_s, settings.lease_s / 4)


def idle_limit_a(index: SiteIndex, charger_id: str) -> float:
    c = index.chargers[charger_id]
    return 0.0 if c.zero_pauses else c.min_current_a


def idle_loads(
    index: SiteIndex,
    table: TrackTable,
    idle: list[int],
    now_s: float,
    settings: ControlSettings,
) -> list[FixedLoad]:
    """Idle online chargers (rows ``idle``) counted at the most they may offer a car
    plugging in now (none for an offer of 0 A): an acknowledged limit if its lease is known
    in force (a decrease still "pending" only waits for a car that has left; a draw it still
    reports counts as well), else the highest of its fallback and what it may offer."""
    out = []
    guard = guard_s(settings)
    for i in idle:
        limit = table.limit_a[i]
        if limit is not None and now_s < table.held_until_s[i] - guard:
            value = max(limit, table.measured_a[i])
        else:
            value = max(table.fallback_a[i], table.high_a[i], limit or 0.0)
        if value <= 0.0:
            continue
        cid = table.ids[i]
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
    index: SiteIndex, table: TrackTable, idle: list[int]
) -> list[tuple[int, ChargerLimit]]:
    """The idle limit for every idle online charger (rows ``idle``) that could offer more
    than it (its fallback, or a limit left from a session that ended), as (row, limit)."""
    out: list[tuple[int, ChargerLimit]] = []
    for i in idle:
        cid = table.ids[i]
        low = idle_limit_a(index, cid)
        limit = table.limit_a[i]
        if max(table.fallback_a[i], table.high_a[i], limit or 0.0) <= low + 1e-9:
            continue
        detail = f"idle: held at {low:g} A so that a car plugging in waits for its share"
        lim = ChargerLimit(
            charger_id=cid,
            limit_a=low,
            phases=len(index.lines[cid]) or 1,
            reason=Reason(kind=ReasonKind.NO_SESSION, detail=detail),
        )
        out.append((i, lim))
    return out


def lapse(
    table: TrackTable, with_session: AbstractSet[str], now_s: float, settings: ControlSettings
) -> None:
    """A charger with a car and no acknowledged lease known in force may be offering its
    fallback: count it at that (with what it is seen drawing), and send it a limit afresh
    when its last lease ran out (a new session on an idle charger, or a lost refresh)."""
    guard = guard_s(settings)
    if not table.ids or min(table.held_until_s) - guard > now_s:
        return  # every lease known in force (the common case skips the loop)
    pos, online, held_until = table.pos, table.online, table.held_until_s
    high_a, limit_a = table.high_a, table.limit_a
    for cid in with_session:
        i = pos[cid]
        if not online[i] or now_s < held_until[i] - guard:
            continue
        high = max(high_a[i], table.measured_a[i], table.fallback_a[i])
        limit = None if now_s >= table.lease_until_s[i] else limit_a[i]
        if high == high_a[i] and limit == limit_a[i]:
            continue
        high_a[i] = high
        limit_a[i] = limit
        table.obj[i] = None


def settle_idle(table: TrackTable, idle: list[int]) -> None:
    """An idle charger's acknowledged decrease needs no EV reaction time: no car is left to
    obey it (a car that still draws is counted by ``idle_loads`` at its measured draw)."""
    limit_a, high_a = table.limit_a, table.high_a
    for i in idle:
        limit = limit_a[i]
        if limit is not None and high_a[i] > limit + 1e-9 and table.acked_s[i] is not None:
            high_a[i] = limit
            table.obj[i] = None
