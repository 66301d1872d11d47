"""Turning the allocation into commands, safely: decrease before increase, deadband, leases.

The invariant (promise 1, "while limits change"): at every moment, for every node and line,
the sum over chargers of what each may draw — ``high_a``, the higher of its old and new limit
while a decrease is unconfirmed, its new limit once an increase is sent — stays within what the
allocation left for EVs there. Decreases go out at once. An increase is sent only when the
decreases still in flight below every node above the charger fit in the headroom the
allocation left at that node and line; otherwise it waits for the next step, by which time the
decreases are confirmed (measured, or the EV reaction time has passed).

Magnitudes add (|a + b| <= |a| + |b|), so checking the in-flight excess arithmetically against
the allocator's exact phasor headroom is conservative.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, replace

from ampshare.control._index import SiteIndex
from ampshare.control._settings import ControlSettings
from ampshare.control._types import (
    ChargerTrack,
    Event,
    EventKind,
    SetLimit,
    Severity,
    make_setter,
)
from ampshare.core.allocation import ChargerLimit, ReasonKind

__all__ = ["Plan", "clean_limit", "plan_commands"]

PerLine = tuple[float, float, float]
EPS = 1e-6


@dataclass(frozen=True, slots=True)
class Plan:
    """Commands in sending order (decreases, then increases, then lease refreshes) and the
    chargers whose increase waits for a decrease to be confirmed."""

    commands: tuple[SetLimit, ...]
    held: tuple[str, ...]


_SENT = make_setter(
    "limit_a",
    "high_a",
    "phases",
    "reason",
    "sent_s",
    "raised_s",
    "acked_s",
    "lease_until_s",
    "paused_since_s",
    "charging_since_s",
)


def _send(  # noqa: PLR0917 - the hot path: one call per command, no keyword parsing
    t: ChargerTrack,
    lim: ChargerLimit,
    limit: float,
    now_s: float,
    lease: float,
    high_a: float,
    texts: dict[int, str],
) -> tuple[ChargerTrack, SetLimit]:
    """Send ``limit`` (``lim`` cleaned, see ``clean_limit``) with ``lim``'s reason; ``texts``
    caches reason texts by object for this plan (chargers share reason objects)."""
    reason = lim.reason
    text = texts.get(id(reason))
    if text is None:
        text = texts[id(reason)] = reason.text
    power = lim.power_w
    if power is not None:
        power = _floor_power(power)
    cmd = SetLimit(
        charger_id=t.charger_id,
        limit_a=limit,
        phases=lim.phases,
        lease_until_s=lease,
        reason=text,
        power_w=power,
    )
    paused = t.paused_since_s
    charging = t.charging_since_s
    old = t.limit_a
    if reason.kind is ReasonKind.NO_SESSION:
        # no car: an idle hold is not a pause decision, so no minimum pause follows it
        paused, charging = None, None
    elif limit <= 0 and (old is None or old > 0):
        paused, charging = now_s, None
    elif limit > 0 and (old is None or old <= 0):
        paused, charging = None, now_s
    new: ChargerTrack = _SENT(
        t,
        limit,
        high_a if high_a > limit else limit,
        lim.phases,
        text,
        now_s,
        now_s if limit > (old or 0.0) else t.raised_s,
        None,
        lease,
        paused,
        charging,
    )
    return new, cmd


def _excess(index: SiteIndex, tracks: Mapping[str, ChargerTrack]) -> dict[tuple[str, int], float]:
    out: dict[tuple[str, int], float] = defaultdict(float)
    for cid, t in tracks.items():
        if not t.pending:
            continue
        assert t.limit_a is not None
        extra = t.high_a - t.limit_a
        for nid in index.ancestors[cid]:
            for ln in index.lines[cid]:
                out[(nid, ln)] += extra
    return out


def _fits(
    index: SiteIndex,
    t: ChargerTrack,
    excess: Mapping[tuple[str, int], float],
    headroom: Mapping[str, PerLine],
) -> bool:
    """The charger's own in-flight excess does not count: its new limit replaces it."""
    own = t.high_a - t.limit_a if t.pending and t.limit_a is not None else 0.0
    cid = t.charger_id
    for nid in index.ancestors[cid]:
        room = headroom.get(nid, (0.0, 0.0, 0.0))
        for ln in index.lines[cid]:
            e = excess.get((nid, ln), 0.0) - own
            if e > EPS and e > room[ln] + EPS:
                return False
    return True


def _floor_limit(limit_a: float, resolution_a: float) -> float:
    res = resolution_a if resolution_a > 0 else 0.001
    return round(math.floor(limit_a / res + 1e-6) * res, 3)


def _floor_power(power_w: float) -> float:
    return round(math.floor(power_w * 10 + 1e-6) / 10, 1)


def clean_limit(lim: ChargerLimit, resolution_a: float) -> ChargerLimit:
    """The limit floored to the charger's resolution and written without float noise
    (8.200000000000001 -> 8.2): it is what the API, the logs and OCPP show, and flooring
    never raises a limit. Watts likewise to 0.1 W. (``plan_commands`` applies the same
    rounding without building the new ``ChargerLimit``.)"""
    value = _floor_limit(lim.limit_a, resolution_a)
    power = None if lim.power_w is None else _floor_power(lim.power_w)
    if value == lim.limit_a and power == lim.power_w:
        return lim
    return ChargerLimit(
        charger_id=lim.charger_id,
        limit_a=value,
        phases=lim.phases,
        reason=lim.reason,
        power_w=power,
    )


def _due_again(t: ChargerTrack, now_s: float, settings: ControlSettings) -> bool:
    """The current limit must be sent again: its lease is half over, or the charger never
    acknowledged it (lost on the way; until it is, it stays counted at the higher value)."""
    if t.limit_a is None:
        return False
    if now_s >= t.lease_until_s - settings.lease_s / 2:
        return True
    return t.acked_s is None and now_s - (t.sent_s or now_s) >= settings.ack_timeout_s


def _pause_event(t: ChargerTrack, lim: ChargerLimit, limit: float, now_s: float) -> Event | None:
    if lim.reason.kind is ReasonKind.NO_SESSION:
        return None
    if limit <= 0 < (t.limit_a or 0.0):
        return Event(
            t_s=now_s,
            kind=EventKind.PAUSED,
            severity=Severity.INFO,
            subject=t.charger_id,
            message=f"paused: {lim.reason.text}",
        )
    if limit > 0 >= (t.limit_a if t.limit_a is not None else 0.0):
        return Event(
            t_s=now_s,
            kind=EventKind.RESUMED,
            severity=Severity.INFO,
            subject=t.charger_id,
            message=f"charging at {limit:g} A: {lim.reason.text}",
        )
    return None


def _change(  # noqa: PLR0917 - the hot path, see _send
    t: ChargerTrack,
    lim: ChargerLimit,
    limit: float,
    now_s: float,
    lease: float,
    high_a: float,
    texts: dict[int, str],
    events: list[Event],
) -> tuple[ChargerTrack, SetLimit]:
    """Send ``limit``; a pause or a resume is also an event."""
    if (limit <= 0) != ((t.limit_a or 0.0) <= 0):  # only then can it pause or resume
        ev = _pause_event(t, lim, limit, now_s)
        if ev is not None:
            events.append(ev)
    return _send(t, lim, limit, now_s, lease, high_a, texts)


def _hold(
    t: ChargerTrack, lim: ChargerLimit, now_s: float, lease: float, texts: dict[int, str]
) -> tuple[ChargerTrack, SetLimit]:
    """A charger offering its fallback (new session, lease over) whose increase must wait:
    hold it at 0 A rather than let its car start at the fallback beside in-flight decreases.
    A hold is not a pause decision, so no minimum pause applies to it."""
    held, cmd = _send(t, lim, 0.0, now_s, lease, t.high_a, texts)
    return replace(held, paused_since_s=t.paused_since_s), cmd


def _refresh(
    t: ChargerTrack, now_s: float, settings: ControlSettings
) -> tuple[ChargerTrack, SetLimit]:
    """The same limit again, with a new lease."""
    assert t.limit_a is not None
    lease = now_s + settings.lease_s
    cmd = SetLimit(
        charger_id=t.charger_id,
        limit_a=t.limit_a,
        phases=t.phases,
        lease_until_s=lease,
        reason=t.reason,
    )
    return replace(t, lease_until_s=lease, sent_s=now_s), cmd


def plan_commands(
    index: SiteIndex,
    tracks: dict[str, ChargerTrack],
    targets: Mapping[str, ChargerLimit],
    headroom: Mapping[str, PerLine],
    *,
    now_s: float,
    settings: ControlSettings,
    events: list[Event],
) -> Plan:
    """Compare each controllable charger's target with what it was told; update ``tracks`` in
    place and return the commands. ``targets`` holds only chargers the controller may command
    now (online, compliant, with a session or a limit to withdraw)."""
    down: list[SetLimit] = []
    increases: list[tuple[ChargerLimit, float]] = []
    refresh: list[str] = []
    lease = now_s + settings.lease_s
    texts: dict[int, str] = {}
    chargers = index.chargers
    deadband = settings.deadband_a - EPS
    for cid, raw in targets.items():
        t = tracks[cid]
        goal = _floor_limit(raw.limit_a, chargers[cid].resolution_a)
        known = t.limit_a
        base = known if known is not None else t.high_a
        if goal < base - EPS or (known is None and goal <= base + EPS):
            high = t.high_a if t.high_a > base else base
            tracks[cid], cmd = _change(t, raw, goal, now_s, lease, high, texts, events)
            down.append(cmd)
        elif goal > base + EPS and (goal - base >= deadband or base <= 0 or goal <= t.high_a + EPS):
            increases.append((raw, goal))
        elif _due_again(t, now_s, settings):
            refresh.append(cid)
    excess = _excess(index, tracks) if increases else {}
    up: list[SetLimit] = []
    held: list[str] = []
    for lim, goal in increases:
        cid = lim.charger_id
        t = tracks[cid]
        if goal > t.high_a + EPS and not _fits(index, t, excess, headroom):
            held.append(cid)
            if t.limit_a is None:
                tracks[cid], cmd = _hold(t, lim, now_s, lease, texts)
                down.append(cmd)
            elif _due_again(t, now_s, settings):  # its own unacknowledged command blocks others
                refresh.append(cid)
            continue
        high = t.high_a if t.high_a > goal else goal
        tracks[cid], cmd = _change(t, lim, goal, now_s, lease, high, texts, events)
        up.append(cmd)
    again = []
    for cid in refresh:
        tracks[cid], cmd = _refresh(tracks[cid], now_s, settings)
        again.append(cmd)
    return Plan(commands=(*down, *up, *again), held=tuple(held))
