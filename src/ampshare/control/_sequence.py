"""Turning the allocation into commands, safely: decrease before increase, deadband, leases.

The invariant (promise 1, "while limits change"): at every moment, for every node and line,
the sum over chargers of what each may draw — ``high_a``, the higher of its old and new limit
while a decrease is unconfirmed, its new limit once an increase is sent — stays within what the
allocation left for EVs there. Decreases go out at once. An increase is sent only when the
decreases still in flight below every node above the charger fit in the headroom the
allocation left at that node and line; otherwise it waits for the next step, by which time the
decreases are confirmed (measured, or the EV reaction time has passed).

Magnitudes add (|a + b| <= |a| + |b|), so checking the in-flight excess arithmetically against
the allocator's exact phasor headroom is conservative. Besides each line, the excess summed
over the chargers below a node must fit ``NodeHeadrooms.any_a``: what the node's other
columns (a transformer primary line, power, the sum of lines) can still take, measured in
amperes of any charger below it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, fields

from ampshare.control._index import SiteIndex
from ampshare.control._settings import ControlSettings
from ampshare.control._table import TrackTable
from ampshare.control._types import (
    ChargerTrack,
    Event,
    EventKind,
    SetLimit,
    Severity,
    new_set_limit,
)
from ampshare.core.allocation import (
    ChargerLimit,
    ChargerLimits,
    NodeHeadrooms,
    Reason,
    ReasonKind,
)

__all__ = ["Plan", "clean_limit", "plan_commands", "plan_rows"]

PerLine = tuple[float, float, float]
EPS = 1e-6


@dataclass(frozen=True, slots=True)
class Plan:
    """Commands in sending order (decreases, then increases, then lease refreshes) and the
    chargers whose increase waits for a decrease to be confirmed."""

    commands: tuple[SetLimit, ...]
    held: tuple[str, ...]


class _Send:
    """Sends limits for one plan: ``send(rows, ks, values, highs, events)`` sends
    ``values[j]`` to row ``rows[j]`` (the allocated limit ``targets.limit_a[ks[j]]`` floored,
    see ``clean_limit``, or 0 A for a hold) with that target's reason and phases, and writes
    the row: ``highs[j]`` is what the charger may draw until the change is confirmed. A pause
    or a resume is also an event (``events``; None for holds, which are not pause decisions).
    Reason texts are cached by reason object (chargers share them)."""

    __slots__ = ("lease", "now_s", "table", "targets", "texts")

    def __init__(
        self,
        table: TrackTable,
        targets: ChargerLimits,
        now_s: float,
        lease: float,
        texts: dict[int, str],
    ):
        self.table = table
        self.targets = targets
        self.now_s = now_s
        self.lease = lease
        self.texts = texts

    def __call__(
        self,
        rows: list[int],
        ks: list[int],
        values: list[float],
        highs: list[float],
        events: list[Event] | None,
    ) -> list[SetLimit]:
        tb, now_s, lease, texts = self.table, self.now_s, self.lease, self.texts
        ids, limit_a, high_a, phases = tb.ids, tb.limit_a, tb.high_a, tb.phases
        paused_since, charging_since = tb.paused_since_s, tb.charging_since_s
        raised_s, reasons, sent_s = tb.raised_s, tb.reason, tb.sent_s
        acked_s, lease_until_s, obj = tb.acked_s, tb.lease_until_s, tb.obj
        why, how, watts = self.targets.reasons, self.targets.phases, self.targets.power_w
        no_session = ReasonKind.NO_SESSION
        out: list[SetLimit] = []
        last_reason: object = None
        text = ""
        for i, k, limit, high in zip(rows, ks, values, highs, strict=True):
            old = limit_a[i]
            reason = why[k]
            if events is not None and (limit <= 0) != ((old or 0.0) <= 0):
                # only then can it (un)pause
                ev = _pause_event(ids[i], old, reason, limit, now_s, paused_since[i] is not None)
                if ev is not None:
                    events.append(ev)
            if reason is not last_reason:  # neighbours mostly share one reason object
                last_reason = reason
                known_text = texts.get(id(reason))
                if known_text is None:
                    known_text = texts[id(reason)] = reason.text
                text = known_text
            power = None if watts is None else _floor_power_or_none(watts[k])
            # SetLimit(charger_id=..., limit_a=..., phases=..., lease_until_s=..., reason=...,
            # power_w=...) through its slots' setters (see ``_types.new_set_limit``)
            cmd = _new(SetLimit)
            _set_charger_id(cmd, ids[i])
            _set_limit_a(cmd, limit)
            _set_phases(cmd, n_phases := how[k])
            _set_lease_until_s(cmd, lease)
            _set_reason(cmd, text)
            _set_power_w(cmd, power)
            out.append(cmd)
            if reason.kind is no_session:
                # no car: an idle hold is not a pause decision, so no minimum pause follows it
                paused_since[i] = charging_since[i] = None
            elif limit <= 0 and (old is None or old > 0):
                paused_since[i], charging_since[i] = now_s, None
            elif limit > 0 and (old is None or old <= 0):
                paused_since[i], charging_since[i] = None, now_s
            if limit > (old or 0.0):
                raised_s[i] = now_s
                if old is not None:
                    _note_dip(tb, i, old, now_s)
            limit_a[i] = limit
            high_a[i] = high if high > limit else limit
            phases[i] = n_phases
            reasons[i] = text
            sent_s[i] = now_s
            acked_s[i] = None
            lease_until_s[i] = lease
            obj[i] = None
        return out


if tuple(f.name for f in fields(SetLimit)) != (  # pragma: no cover - caught at import
    "charger_id",
    "limit_a",
    "phases",
    "lease_until_s",
    "reason",
    "power_w",
):
    raise RuntimeError("_Send must set every SetLimit field")
_new = object.__new__
_set_charger_id = SetLimit.__dict__["charger_id"].__set__
_set_limit_a = SetLimit.__dict__["limit_a"].__set__
_set_phases = SetLimit.__dict__["phases"].__set__
_set_lease_until_s = SetLimit.__dict__["lease_until_s"].__set__
_set_reason = SetLimit.__dict__["reason"].__set__
_set_power_w = SetLimit.__dict__["power_w"].__set__


def _note_dip(tb: TrackTable, i: int, old: float, now_s: float) -> None:
    """Row ``i`` is raised from ``old``: until a report taken from now on shows the car, it
    may have drawn no more than ``old`` when a meter read (``ChargerTrack.dip_a``), however
    much its older reports say (a decrease confirmed by the EV reaction time leaves no report
    of the lower draw). A car under a meter is only raised once its own decrease is confirmed
    (``_raise``), so it sat at ``old`` or under until now and follows nothing lower after.
    Called before the row is overwritten."""
    if tb.dip_seen_s[i] != float("-inf"):  # an earlier dip not yet shown: keep both
        tb.dip_a[i] = min(tb.dip_a[i], old)
    else:
        tb.dip_a[i] = old
    tb.dip_seen_s[i] = now_s


def _hold(send: _Send, i: int, k: int) -> SetLimit:
    """A charger offering its fallback (new session, lease over) whose increase must wait:
    hold it at 0 A rather than let its car start at the fallback beside in-flight decreases.
    A hold is not a pause decision, so no minimum pause applies to it."""
    table = send.table
    paused = table.paused_since_s[i]
    (cmd,) = send([i], [k], [0.0], [table.high_a[i]], None)
    table.paused_since_s[i] = paused
    return cmd


def _refresh(table: TrackTable, i: int, now_s: float, lease: float) -> SetLimit:
    """The same limit again, with a new lease."""
    limit = table.limit_a[i]
    assert limit is not None
    cmd: SetLimit = new_set_limit(
        table.ids[i], limit, table.phases[i], lease, table.reason[i], None
    )
    table.lease_until_s[i] = lease
    table.sent_s[i] = now_s
    table.obj[i] = None
    return cmd


def _goal(floors: dict[float, dict[float, float]], limit_a: float, resolution_a: float) -> float:
    """``limit_a`` floored to the charger's resolution (``clean_limit``), remembered in
    ``floors`` per (resolution, limit): with ``equal`` most cars share a handful of values,
    and ``round(x, 3)`` is slow. (``plan_rows`` looks the cache up inline first.)"""
    if type(resolution_a) is not float:  # an int resolution gives int results: not cached
        return _floor_limit(limit_a, resolution_a)
    by_limit = floors.setdefault(resolution_a, {})
    goal = by_limit.get(limit_a)
    if goal is None:
        goal = by_limit[limit_a] = _floor_limit(limit_a, resolution_a)
    return goal


#: ``_excess``'s key for the excess summed over chargers (not per line) at a node.
_ANY = -1


def _excess(index: SiteIndex, table: TrackTable) -> dict[tuple[str, int], float]:
    """In-flight excess (what chargers may draw above their new limits until their decreases
    are confirmed) per (node, line), and per (node, ``_ANY``) summed over the chargers."""
    out: dict[tuple[str, int], float] = defaultdict(float)
    high_a = table.high_a
    for i, limit in enumerate(table.limit_a):
        if limit is None or not high_a[i] > limit + 1e-9:
            continue
        extra = high_a[i] - limit
        cid = table.ids[i]
        for nid in index.ancestors[cid]:
            out[(nid, _ANY)] += extra
            for ln in index.lines[cid]:
                out[(nid, ln)] += extra
    return out


def _fits(  # noqa: PLR0917 - the increase's row and what it must fit in
    index: SiteIndex,
    table: TrackTable,
    i: int,
    excess: Mapping[tuple[str, int], float],
    headroom: Mapping[str, PerLine],
    any_room: Mapping[str, float],
) -> bool:
    """The charger's own in-flight excess does not count: its new limit replaces it."""
    limit, high = table.limit_a[i], table.high_a[i]
    own = high - limit if limit is not None and high > limit + 1e-9 else 0.0
    cid = table.ids[i]
    for nid in index.ancestors[cid]:
        room = headroom.get(nid, (0.0, 0.0, 0.0))
        for ln in index.lines[cid]:
            e = excess.get((nid, ln), 0.0) - own
            if e > EPS and e > room[ln] + EPS:
                return False
        e = excess.get((nid, _ANY), 0.0) - own
        if e > EPS and e > any_room.get(nid, math.inf) + EPS:
            return False
    return True


def _floor_limit(limit_a: float, resolution_a: float) -> float:
    res = resolution_a if resolution_a > 0 else 0.001
    return round(math.floor(limit_a / res + 1e-6) * res, 3)


def _floor_power(power_w: float) -> float:
    return round(math.floor(power_w * 10 + 1e-6) / 10, 1)


def _floor_power_or_none(power_w: float | None) -> float | None:
    return None if power_w is None else _floor_power(power_w)


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


def _due_again(table: TrackTable, i: int, now_s: float, settings: ControlSettings) -> bool:
    """The current limit must be sent again: its lease is half over, or the charger never
    acknowledged it (lost on the way; until it is, it stays counted at the higher value)."""
    if table.limit_a[i] is None:
        return False
    if now_s >= table.lease_until_s[i] - settings.lease_s / 2:
        return True
    sent = table.sent_s[i]
    return table.acked_s[i] is None and now_s - (sent or now_s) >= settings.ack_timeout_s


def _pause_event(  # noqa: PLR0917 - the row's values, passed on by _Send
    charger_id: str,
    old: float | None,
    reason: Reason,
    limit: float,
    now_s: float,
    was_paused: bool,
) -> Event | None:
    """A pause of a car that was charging, or a resume of a car this controller paused
    (``was_paused``: a pause decision, not an idle hold nor a limit unknown since a restart,
    a reconnect or a lapsed lease — re-asserting a limit is no resume)."""
    if reason.kind is ReasonKind.NO_SESSION:
        return None
    if limit <= 0 < (old or 0.0):
        return Event(
            t_s=now_s,
            kind=EventKind.PAUSED,
            severity=Severity.INFO,
            subject=charger_id,
            message=f"paused: {reason.text}",
        )
    if was_paused and limit > 0 >= (old if old is not None else 0.0):
        return Event(
            t_s=now_s,
            kind=EventKind.RESUMED,
            severity=Severity.INFO,
            subject=charger_id,
            message=f"charging at {limit:g} A: {reason.text}",
        )
    return None


def _raise(  # noqa: PLR0917 - plan_rows's own lists, passed on
    index: SiteIndex,
    send: _Send,
    increases: list[tuple[int, int, float]],
    headroom: NodeHeadrooms | Mapping[str, PerLine],
    down: list[SetLimit],
    refresh: list[int],
    settings: ControlSettings,
    events: list[Event],
) -> tuple[list[SetLimit], list[str]]:
    """Send the increases that fit beside the decreases still in flight (after this plan's
    decreases); the others wait (returned as held), an unknown limit held at 0 A (appended
    to ``down``), an unacknowledged one due again (appended to ``refresh``). A charger under
    a meter whose own decrease is unconfirmed waits too, until it is confirmed."""
    table = send.table
    excess = _excess(index, table) if increases else {}
    rooms = headroom.left_by_node() if isinstance(headroom, NodeHeadrooms) else headroom
    any_rooms: Mapping[str, float] = {}
    if increases and isinstance(headroom, NodeHeadrooms):
        any_rooms = headroom.any_by_node()
    rows: list[int] = []
    ks: list[int] = []
    values: list[float] = []
    highs: list[float] = []
    held: list[str] = []
    metered = index.meter_set
    for i, k, goal in increases:
        high = table.high_a[i]
        known = table.limit_a[i]
        if known is not None and high > known + EPS and table.ids[i] in metered:
            # its own decrease is unconfirmed: its car may still follow the lower pilot, and
            # raised back now it would dip at a time no report shows, which a meter reading
            # could see while its reports say more (``_note_dip``, ``control._credit``)
            held.append(table.ids[i])
            if _due_again(table, i, send.now_s, settings):
                refresh.append(i)
            continue
        if goal > high + EPS and not _fits(index, table, i, excess, rooms, any_rooms):
            held.append(table.ids[i])
            if table.limit_a[i] is None:
                down.append(_hold(send, i, k))
            elif _due_again(table, i, send.now_s, settings):  # its own unacknowledged command
                refresh.append(i)  # blocks others
            continue
        rows.append(i)
        ks.append(k)
        values.append(goal)
        highs.append(high if high > goal else goal)
    return send(rows, ks, values, highs, events), held


def plan_commands(
    index: SiteIndex,
    tracks: dict[str, ChargerTrack],
    targets: Mapping[str, ChargerLimit],
    headroom: NodeHeadrooms | Mapping[str, PerLine],
    *,
    now_s: float,
    settings: ControlSettings,
    events: list[Event],
) -> Plan:
    """``plan_rows`` on a mapping of tracks (updated in place) and targets by charger id."""
    table = TrackTable.of(tracks)
    rows = [table.pos[cid] for cid in targets]
    plan = plan_rows(
        index,
        table,
        rows,
        ChargerLimits.of(targets.values()),
        headroom,
        now_s=now_s,
        settings=settings,
        events=events,
    )
    table.write_to(tracks)
    return plan


def plan_rows(
    index: SiteIndex,
    table: TrackTable,
    rows: list[int],
    targets: ChargerLimits,
    headroom: NodeHeadrooms | Mapping[str, PerLine],
    *,
    now_s: float,
    settings: ControlSettings,
    events: list[Event],
) -> Plan:
    """Compare each controllable charger's target (``targets``' k-th for row ``rows[k]``) with
    what it was told; update ``table`` in place and return the commands. The targets are
    only chargers the controller may command now (online, compliant, with a session or a
    limit to withdraw).

    Every decision reads only its own row, so each kind of command is decided first and sent
    (written) after, in the same order. Commands to send are kept as parallel lists of
    (row, target index, value, high), not a tuple each: at 1,000 chargers those tuples
    alone set off garbage collections."""
    down_rows: list[int] = []
    down_ks: list[int] = []
    down_values: list[float] = []
    down_highs: list[float] = []
    increases: list[tuple[int, int, float]] = []
    refresh: list[int] = []
    lease = now_s + settings.lease_s
    texts: dict[int, str] = {}
    limit_a, high_a = table.limit_a, table.high_a
    deadband = settings.deadband_a - EPS
    chargers, ids = index.chargers, table.ids
    floors: dict[float, dict[float, float]] = {}  # see _goal
    for k, (i, raw_a) in enumerate(zip(rows, targets.limit_a, strict=True)):
        res = chargers[ids[i]].resolution_a
        if type(res) is float and (by_limit := floors.get(res)) is not None:
            goal = by_limit.get(raw_a)
            if goal is None:
                goal = by_limit[raw_a] = _floor_limit(raw_a, res)
        else:
            goal = _goal(floors, raw_a, res)
        known = limit_a[i]
        high = high_a[i]
        base = known if known is not None else high
        if goal < base - EPS or (known is None and goal <= base + EPS):
            down_rows.append(i)
            down_ks.append(k)
            down_values.append(goal)
            down_highs.append(high if high > base else base)
        elif goal > base + EPS and (goal - base >= deadband or base <= 0 or goal <= high + EPS):
            increases.append((i, k, goal))
        elif _due_again(table, i, now_s, settings):
            refresh.append(i)
    send = _Send(table, targets, now_s, lease, texts)
    down = send(down_rows, down_ks, down_values, down_highs, events)
    up, held = _raise(index, send, increases, headroom, down, refresh, settings, events)
    again = [_refresh(table, i, now_s, lease) for i in refresh]
    return Plan(commands=(*down, *up, *again), held=tuple(held))
