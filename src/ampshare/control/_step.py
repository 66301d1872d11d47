"""The decision step: previous state + new inputs + now -> new state + commands + events.

measure (fold readings and reports into the state) -> subtract (stale meters at their worst
case, offline and non-compliant chargers at fixed worst cases, reclaim/ramp/pause caps) ->
calculate (``core.allocate``) -> distribute (decreases first, increases once safe, leases).
No I/O and no clock: the live supervisor and the simulator call the very same function.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import replace
from types import MappingProxyType

from ampshare.control._credit import MeterTimes, credited, meter_times
from ampshare.control._fallback import fallback_causes, fallback_limits
from ampshare.control._idle import guard_s, idle_loads, idle_targets, lapse, settle_idle
from ampshare.control._index import SiteIndex, index_site
from ampshare.control._overload import overload_events
from ampshare.control._sequence import plan_rows
from ampshare.control._settings import ControlSettings
from ampshare.control._table import TrackTable, TrackView
from ampshare.control._types import (
    ChargerTrack,
    Command,
    ControlInputs,
    ControllerState,
    Event,
    EventKind,
    InstallFallback,
    MeterTrack,
    Severity,
    StepResult,
)
from ampshare.control._watch import (
    apply_ack_rows,
    apply_charger_state,
    apply_readings,
    expire_pending_rows,
    measurements,
    meter_deadline_s,
    per_line_or_zero,
    probe_wait_s,
    update_meter_staleness,
)
from ampshare.core.allocate import allocate
from ampshare.core.allocation import (
    Allocation,
    AllocationInput,
    ChargerLimit,
    ChargerLimits,
    FixedLoad,
    Policy,
    Reason,
    ReasonKind,
)
from ampshare.core.site import Site
from ampshare.core.snapshot import ChargerState, ExternalCap, MeterReading, Session

__all__ = ["initial_state", "rebuild_state", "step"]

#: Events kept in the state for the API (newest last).
RECENT_EVENTS = 500


def _new_tracks(site: Site, index: SiteIndex) -> dict[str, ChargerTrack]:
    fb = fallback_limits(site, index)
    return {c.id: ChargerTrack(charger_id=c.id, fallback_a=fb[c.id]) for c in site.chargers}


def _fallback_events(site: Site, index: SiteIndex, now_s: float) -> list[Event]:
    """A warning per cause (chargers sharing one are listed together, so a 1,000-charger
    garage with one meter lacking a worst case raises one event, not 1,000)."""
    by_cause: dict[str, list[str]] = {}
    for cid, why in fallback_causes(site, index).items():
        by_cause.setdefault(why, []).append(cid)
    out = []
    for why, ids in sorted(by_cause.items()):
        if len(ids) == 1:  # the subject names it already
            who = "falls"
        else:
            shown = ", ".join(sorted(ids)[:5]) + (", ..." if len(ids) > 5 else "")
            who = f"{len(ids)} chargers ({shown}) fall"
        out.append(
            Event(
                t_s=now_s,
                kind=EventKind.FALLBACK_ZERO,
                severity=Severity.WARNING,
                subject=ids[0] if len(ids) == 1 else site.name,
                message=f"{who} back to 0 A without the controller: {why}",
            )
        )
    return out


def initial_state(site: Site, settings: ControlSettings) -> ControllerState:
    """A fresh controller: nothing known yet; every meter stale until it reports, every
    charger's fallback computed and due to be installed at the first step."""
    index = index_site(site)
    del settings  # accepted for symmetry with rebuild_state; nothing depends on it yet
    return ControllerState(
        tracks=TrackView(TrackTable.of(_new_tracks(site, index))),
        meters=MappingProxyType({m.id: MeterTrack(meter_id=m.id) for m in site.meters}),
    )


def _restart_track(
    t: ChargerTrack, charger_max_a: float, s: ChargerState | None, installed_a: float | None
) -> ChargerTrack:
    """Unknown means pessimistic: count the charger at the most it reports it may draw, or at
    its maximum when it reports nothing."""
    if s is None:
        return replace(t, high_a=charger_max_a, online=False)
    measured = [v for v in (s.measured_current_a or ()) if v is not None]
    known = [v for v in (installed_a, s.installed_limit_a, s.offered_current_a) if v is not None]
    high = max(known + measured) if known else max([charger_max_a, *measured])
    return replace(
        t,
        high_a=high,
        online=s.online,
        joined=s.online,
        report_s=s.t_s,
        measured_a=max(measured, default=0.0),
        measured_line_a=per_line_or_zero(s.measured_current_a),
    )


def rebuild_state(
    site: Site,
    settings: ControlSettings,
    *,
    now_s: float,
    charger_states: Iterable[ChargerState],
    readings: Iterable[MeterReading] = (),
    sessions: Iterable[Session] = (),
    installed_limits_a: Mapping[str, float] | None = None,
    external_caps: Iterable[ExternalCap] = (),
) -> ControllerState:
    """The state after a controller restart, rebuilt from what chargers and meters report and
    what the store kept (sessions, installed profiles). Every limit is unknown, so the first
    step re-asserts all of them (decreases first) and re-installs every fallback."""
    base = initial_state(site, settings)
    states = {s.charger_id: s for s in charger_states}
    installed = installed_limits_a or {}
    tracks = {
        cid: _restart_track(t, site.charger(cid).max_current_a, states.get(cid), installed.get(cid))
        for cid, t in base.tracks.items()
    }
    meters = dict(base.meters)
    apply_readings(meters, readings)
    ev = Event(
        t_s=now_s,
        kind=EventKind.RESTARTED,
        severity=Severity.WARNING,
        subject=site.name,
        message=f"controller restarted: state rebuilt from {len(states)} charger "
        "report(s); limits re-asserted, fallbacks re-installed",
    )
    return replace(
        base,
        tracks=TrackView(TrackTable.of(tracks)),
        meters=MappingProxyType(meters),
        charger_states=MappingProxyType({k: v for k, v in states.items() if k in tracks}),
        sessions=tuple(sessions),
        external_caps=tuple(external_caps),
        recent_events=(ev,),
        started_s=now_s,
    )


def _fixed_load(
    index: SiteIndex, t: ChargerTrack, now_s: float, settings: ControlSettings
) -> FixedLoad | None:
    """Offline: max(last limit, last measured, fallback) until its lease (plus the reaction
    time) has run out and its fallback was acknowledged, then its fallback. Drawing over its
    limit plus tolerance: its measured draw at once (it *is* drawing that; the others are
    lowered now), while the non-compliance alert waits ``noncompliance_s`` to rule out a
    measurement glitch."""
    if not t.online:
        if now_s < t.lease_until_s + settings.ev_reaction_s or not t.fallback_acked:
            value = max(t.high_a, t.measured_a, t.fallback_a)
            why = "offline: counted at max(last limit, last measured, fallback)"
        else:
            value = t.fallback_a
            why = "offline, lease over: counted at its fallback"
    elif t.noncompliant or t.over_since_s is not None:
        value = max(t.measured_a, t.high_a)
        why = f"draws over its limit: counted at its draw {t.measured_a:.1f} A"
    else:
        return None
    lines = index.lines[t.charger_id]
    per_line = tuple(value if ln in lines else 0.0 for ln in range(3))
    return FixedLoad(charger_id=t.charger_id, current_a=per_line, reason=why)  # type: ignore[arg-type]


#: Why a car is held at 0 A by its reclaim cap (``_watch._reclaim``: SuspendedEV, no draw).
_CAR_FULL = Reason(
    kind=ReasonKind.CAR_FULL,
    detail="the car takes no current (SuspendedEV); it is offered some now and then",
)


def _caps(
    index: SiteIndex,
    table: TrackTable,
    with_session: AbstractSet[str],
    *,
    now_s: float,
    settings: ControlSettings,
    events: list[Event],
    why: dict[str, Reason],
) -> dict[str, float]:
    """Per-charger caps for the allocator: reclaim of unused current (lifted for a probe,
    ``_probe_due``), the minimum pause, and the ramp (chargers in id order). ``why`` gets the
    reason of each cap that pauses a car (shown with its limit)."""
    ramp = settings.ramp_up_a_per_s
    n = len(table.ids)
    cap_a, cap_set_s, paused = table.cap_a, table.cap_set_s, table.paused_since_s
    if (
        ramp is None
        and (cap_a.count(None) == n or cap_set_s.count(None) == n)
        and paused.count(None) == n
    ):
        return {}  # nobody capped, paused or ramping (the common case skips the loop)
    pos, limit_a = table.pos, table.limit_a
    capped = [
        cid
        for cid in with_session
        if (cap_a[i := pos[cid]] is not None and cap_set_s[i] is not None)
        or paused[i] is not None
        or (ramp is not None and limit_a[i] is not None)
    ]
    caps: dict[str, float] = {}
    for cid in sorted(capped):  # the others get no cap and raise no event
        i = pos[cid]
        cap = float("inf")
        capped_a, cap_set = cap_a[i], cap_set_s[i]
        if capped_a is not None and cap_set is not None:
            if _probe_due(table, i, capped_a, cap_set, now_s, settings, events):
                cap_set_s[i] = None  # lifted; ``cap_a`` remembers it until the probe ends
                table.under_since_s[i] = now_s
                table.obj[i] = None
            else:
                cap = capped_a
                if cap <= 0.0:
                    why[cid] = _CAR_FULL
        since_pause = paused[i]
        if since_pause is not None and now_s - since_pause < settings.min_pause_s:
            if cap > 0.0:
                why[cid] = Reason(
                    kind=ReasonKind.CONTROLLER_CAP,
                    detail=f"a pause lasts at least {settings.min_pause_s:g} s (min_pause_s)",
                )
            cap = 0.0
        limit = limit_a[i]
        if ramp is not None and limit is not None:
            sent = table.sent_s[i]
            since = now_s - (sent if sent is not None else now_s)
            floor = index.chargers[cid].min_current_a
            cap = min(cap, max(floor, limit + ramp * since))
        if cap != float("inf"):
            caps[cid] = cap
    return caps


def _probe_due(  # noqa: PLR0917 - one row's values
    table: TrackTable,
    i: int,
    cap_a: float,
    cap_set_s: float,
    now_s: float,
    settings: ControlSettings,
    events: list[Event],
) -> bool:
    """Whether the reclaim cap of row ``i`` is lifted now to see whether the car takes more:
    ``probe_interval_s`` after it was set, doubled for each probe in a row that found
    nothing. A car drawing more than ``reclaim_margin_a`` under its cap is not held by it
    (were it able to take more, it would draw up to the cap, which lifts it): lifting the cap
    would only send two limits for nothing, so the probe is skipped (and counts as found
    nothing)."""
    misses = table.probe_misses[i]
    if now_s - cap_set_s < probe_wait_s(misses, settings) - 1e-9:
        return False
    cid = table.ids[i]
    if table.measured_a[i] < cap_a - settings.reclaim_margin_a - 1e-9:
        table.cap_set_s[i] = now_s
        table.probe_misses[i] = misses + 1
        table.obj[i] = None
        return False
    events.append(
        Event(
            t_s=now_s,
            kind=EventKind.PROBE,
            severity=Severity.INFO,
            subject=cid,
            message=f"cap {cap_a:.1f} A lifted to see whether the car takes more",
        )
    )
    return True


def _next_wakeup(
    site: Site,
    table: TrackTable,
    meters: Mapping[str, MeterTrack],
    with_session: AbstractSet[str],
    *,
    now_s: float,
    settings: ControlSettings,
) -> float:
    """The earliest of: a pending decrease's confirmation (acknowledged + EV reaction time),
    the end of a minimum pause, a lease's half-life (a charger with a car, or an idle one
    whose acknowledged hold is in force), the moment an idle hold stops being relied on
    (``guard_s`` before its lease), a meter's deadline or recovery; at most ``max_period_s``
    from now."""
    wake = min(now_s + settings.max_period_s, _track_wakeup(table, with_session, now_s, settings))
    for spec in site.meters:
        m = meters[spec.id]
        if not m.stale:
            wake = min(wake, meter_deadline_s(settings, spec, m))
        elif m.fresh_since_s is not None:
            wake = min(wake, m.fresh_since_s + settings.meter_recover_s)
    return max(wake, now_s)


def _track_wakeup(
    table: TrackTable, with_session: AbstractSet[str], now_s: float, settings: ControlSettings
) -> float:
    """``_next_wakeup``'s per-charger times (inf for none). Each kind is a minimum over rows,
    taken with ``min`` over a whole column when every row qualifies (subtracting a constant
    keeps the order of floats, so the minimum is the same)."""
    n = len(table.ids)
    wake = float("inf")
    if n == 0:
        return wake
    ids, limit_a, high_a = table.ids, table.limit_a, table.high_a
    if table.acked_s.count(None) < n:  # pending and acknowledged: confirmed by then
        ev_reaction = settings.ev_reaction_s
        for acked, limit, high in zip(table.acked_s, limit_a, high_a, strict=True):
            if acked is not None and limit is not None and high > limit + 1e-9:
                wake = min(wake, acked + ev_reaction)
    if table.paused_since_s.count(None) < n:  # a minimum pause ends
        for cid, paused in zip(ids, table.paused_since_s, strict=True):
            if paused is not None and cid in with_session:
                end = paused + settings.min_pause_s
                wake = min(wake, end) if end > now_s else wake
    half_lease = settings.lease_s / 2
    held_until = table.held_until_s
    if len(with_session) == n and limit_a.count(None) == 0:  # a car and a limit everywhere
        wake = min(wake, min(table.lease_until_s) - half_lease)
    else:
        rows = zip(ids, limit_a, table.lease_until_s, held_until, strict=True)
        for cid, limit, lease, held in rows:
            if limit is not None and (cid in with_session or held > now_s):
                wake = min(wake, lease - half_lease)
    guard = guard_s(settings)
    first_lapse = min(held_until) - guard
    if first_lapse > now_s:  # every hold relied on until then: its fallback counts again
        return min(wake, first_lapse)
    for held in held_until:
        if held - guard > now_s:
            wake = min(wake, held - guard)
    return wake


def _fold_inputs(
    site: Site,
    index: SiteIndex,
    settings: ControlSettings,
    *,
    state: ControllerState,
    inputs: ControlInputs,
    now_s: float,
    events: list[Event],
) -> tuple[TrackTable, dict[str, MeterTrack], Mapping[str, ChargerState], MeterTimes]:
    table = TrackTable.of(state.tracks)
    meters = dict(state.meters)
    cstates: Mapping[str, ChargerState] = state.charger_states  # copied only when written
    apply_readings(meters, inputs.readings)
    update_meter_staleness(site, settings, meters, now_s, events)
    times = meter_times(site, index, meters, now_s, settings)
    apply_ack_rows(table, inputs.acks, events)
    started = state.started_s if state.started_s is not None else now_s
    in_grace = now_s - started < settings.startup_grace_s
    if inputs.charger_states:
        reported = dict(cstates)
        for s in inputs.charger_states:
            i = table.pos.get(s.charger_id)
            if i is None:
                continue  # a charger the site does not know: the OCPP layer reports it
            reported[s.charger_id] = s
            min_a = index.chargers[s.charger_id].min_current_a
            t = table.row(i)
            k = index.meter_set.get(s.charger_id)
            meter_s = float("inf") if k is None else times.pairable[k]
            new = apply_charger_state(
                t, s, min_a, settings, events, in_grace=in_grace, meter_s=meter_s
            )
            if new is not t:
                table.put(i, new)
        cstates = reported
    if not in_grace:
        _not_joined(table, started, now_s, events)
    expire_pending_rows(table, now_s, settings)
    return table, meters, cstates, times


def _not_joined(table: TrackTable, started_s: float, now_s: float, events: list[Event]) -> None:
    """Once the startup grace is over, a charger still offline that has not connected since
    the start raises its "offline" alert (once: it then counts as joined, so that connecting
    later resolves it). It was counted pessimistically all along."""
    joined, online = table.joined, table.online
    if all(joined) or all(online):
        return  # the common case skips the loop
    for i, (is_joined, is_online) in enumerate(zip(joined, online, strict=True)):
        if is_joined or is_online:
            continue
        worst = max(table.high_a[i], table.measured_a[i], table.fallback_a[i])
        events.append(
            Event(
                t_s=now_s,
                kind=EventKind.CHARGER_OFFLINE,
                severity=Severity.ALERT,
                subject=table.ids[i],
                message=f"not connected {now_s - started_s:.0f} s after the controller "
                f"started: counted at {worst:g} A until it connects",
            )
        )
        joined[i] = True
        table.obj[i] = None


def _uncontrolled(
    index: SiteIndex, table: TrackTable, now_s: float, settings: ControlSettings
) -> list[FixedLoad]:
    """Offline and non-compliant chargers, counted at fixed worst cases (``_fixed_load``)."""
    if (
        all(table.online)
        and not any(table.noncompliant)
        and table.over_since_s.count(None) == len(table.ids)
    ):
        return []  # the common case skips the loop
    rows = zip(table.online, table.noncompliant, table.over_since_s, strict=True)
    return [
        f
        for i, (online, noncompliant, over_since) in enumerate(rows)
        if (not online or noncompliant or over_since is not None)
        and (f := _fixed_load(index, table.row(i), now_s, settings))
    ]


def _idle_rows(
    table: TrackTable, with_session: AbstractSet[str], uncontrolled: set[str]
) -> list[int]:
    """Online chargers without a car that the controller commands (rows)."""
    if len(with_session) == len(table.ids):
        return []  # a car at every charger (``with_session`` only names known chargers)
    return [
        i
        for i, (cid, online) in enumerate(zip(table.ids, table.online, strict=True))
        if online and cid not in with_session and cid not in uncontrolled
    ]


def _forget_reclaim(table: TrackTable, idle: list[int]) -> None:
    """A charger whose car left starts the next car without the old car's reclaim cap."""
    cap_a, misses = table.cap_a, table.probe_misses
    for i in idle:
        if cap_a[i] is not None or misses[i] or table.under_since_s[i] is not None:
            cap_a[i] = table.cap_set_s[i] = table.under_since_s[i] = None
            misses[i] = 0
            table.obj[i] = None


def _targets(
    alloc: Allocation,
    table: TrackTable,
    skip: set[str],
    with_session: AbstractSet[str],
    idle: list[tuple[int, ChargerLimit]],
) -> tuple[list[int], ChargerLimits]:
    """The chargers to command now, as rows and their limits (columns): controllable ones
    with a car, or with a limit to withdraw or an unknown one to assert (after a restart),
    then the ``idle`` targets. The allocation's own columns when that is every charger in
    table order (a car at each, nothing to skip: the common case of a busy site)."""
    pos, limit_a, high_a = table.pos, table.limit_a, table.high_a
    got = alloc.limits
    ids = got.charger_ids
    if not idle and not skip and len(with_session) == len(ids) and tuple(ids) == table.ids:
        # a car at every charger, the table in the site's order, nothing to skip: all of
        # them, as they are (``with_session`` only names known chargers)
        return list(range(len(ids))), got
    rows: list[int] = []
    picked: list[int] = []
    for k, cid in enumerate(ids):
        i = pos.get(cid)
        if i is None or cid in skip:
            continue
        if (
            cid in with_session
            or (limit_a[i] is None and high_a[i] > 0)
            or (limit_a[i] or 0.0) > 0
        ):
            rows.append(i)
            picked.append(k)
    if not idle and len(picked) == len(ids) and rows == picked:
        return rows, got
    watts = got.power_w
    power_w = None if watts is None else [watts[k] for k in picked]
    out_ids = [ids[k] for k in picked]
    out_a = [got.limit_a[k] for k in picked]
    out_phases = [got.phases[k] for k in picked]
    out_reasons = [got.reasons[k] for k in picked]
    for i, lim in idle:
        rows.append(i)
        out_ids.append(lim.charger_id)
        out_a.append(lim.limit_a)
        out_phases.append(lim.phases)
        out_reasons.append(lim.reason)
        if power_w is not None:
            power_w.append(lim.power_w)
    return rows, ChargerLimits(out_ids, out_a, out_phases, out_reasons, power_w)


def _fallback_commands(index: SiteIndex, table: TrackTable) -> list[InstallFallback]:
    """Install the fallback on every online charger that has not been sent it (first step,
    after a restart, when it comes back online: it may have rebooted)."""
    out: list[InstallFallback] = []
    sent = table.fallback_sent
    if all(sent):
        return out
    for i, (cid, online) in enumerate(zip(table.ids, table.online, strict=True)):
        if online and not sent[i]:
            phases = len(index.lines[cid]) or 1
            out.append(InstallFallback(charger_id=cid, limit_a=table.fallback_a[i], phases=phases))
            sent[i] = True
            table.obj[i] = None
    return out


def _allocation_input(
    site: Site,
    policy: Policy,
    state: ControllerState,
    *,
    now_s: float,
    sessions: tuple[Session, ...],
    cstates: Mapping[str, ChargerState],
    meters: Mapping[str, MeterTrack],
    ext: tuple[ExternalCap, ...],
    fixed: list[FixedLoad],
    caps: dict[str, float],
    cap_why: dict[str, Reason],
    settings: ControlSettings,
    table: TrackTable,
    index: SiteIndex,
    times: MeterTimes,
) -> AllocationInput:
    if settings.min_charge_s > policy.rotation_interval_s:
        # start/stop hysteresis: nobody is rotated out before min_charge_s
        policy = replace(policy, rotation_interval_s=settings.min_charge_s)
    return AllocationInput(
        site=site,
        now_s=now_s,
        sessions=sessions,
        charger_states=credited(_state_values(state, cstates), table, index, times),
        measurements=measurements(site, meters),
        external_caps=ext,
        fixed_loads=tuple(fixed),
        caps_a=MappingProxyType(caps),
        cap_reasons=MappingProxyType(cap_why),
        policy=policy,
        rotation=state.rotation,
    )


def _known_sessions(sessions: tuple[Session, ...], pos: Mapping[str, int]) -> tuple[Session, ...]:
    """The sessions of chargers the site has; the very same tuple when that is all of them,
    so that ``allocate`` reuses what it read from it last cycle (``core._compiled.last_read``)."""
    if all(s.charger_id in pos for s in sessions):
        return tuple(sessions)  # a tuple is returned as it is
    return tuple([s for s in sessions if s.charger_id in pos])


def _state_values(
    state: ControllerState, cstates: Mapping[str, ChargerState]
) -> tuple[ChargerState, ...]:
    """The charger states as ``allocate`` takes them: the previous step's tuple while no
    charger reported (a cycle triggered by a meter reading), so ``allocate`` need not read
    them again."""
    if cstates is state.charger_states and state.charger_state_values is not None:
        return state.charger_state_values
    return tuple(cstates.values())


def step(  # noqa: PLR0917 - the documented public signature
    site: Site,
    settings: ControlSettings,
    policy: Policy,
    state: ControllerState,
    inputs: ControlInputs,
    now_s: float,
) -> StepResult:
    """One control cycle at ``now_s`` (see the module docstring)."""
    index = index_site(site, state.site_index)
    events = _fallback_events(site, index, now_s) if state.last_step_s is None else []
    # measure
    table, meters, cstates, times = _fold_inputs(
        site, index, settings, state=state, inputs=inputs, now_s=now_s, events=events
    )
    pos = table.pos
    if inputs.sessions is None and state.site_index is not None and state.site_index[0] is site:
        sessions = state.sessions  # already this site's, checked when they came in
    else:
        sessions = _known_sessions(
            state.sessions if inputs.sessions is None else inputs.sessions, pos
        )
    ext = state.external_caps if inputs.external_caps is None else inputs.external_caps
    ext = tuple(c for c in ext if c.until_s is None or c.until_s > now_s)
    if sessions is state.sessions and state.session_chargers is not None:
        with_session: AbstractSet[str] = state.session_chargers
    else:
        with_session = frozenset([s.charger_id for s in sessions])
    lapse(table, with_session, now_s, settings)
    # subtract: what cannot be controlled, what idle chargers would offer an arriving car,
    # and the controller's own caps
    fixed = _uncontrolled(index, table, now_s, settings)
    uncontrolled = {f.charger_id for f in fixed}
    idle = _idle_rows(table, with_session, uncontrolled)
    settle_idle(table, idle)
    _forget_reclaim(table, idle)
    fixed.extend(idle_loads(index, table, idle, now_s, settings))
    cap_why: dict[str, Reason] = {}
    caps = _caps(
        index, table, with_session, now_s=now_s, settings=settings, events=events, why=cap_why
    )
    # calculate
    ainput = _allocation_input(
        site,
        policy,
        state,
        now_s=now_s,
        sessions=sessions,
        cstates=cstates,
        meters=meters,
        ext=ext,
        fixed=fixed,
        caps=caps,
        cap_why=cap_why,
        settings=settings,
        table=table,
        index=index,
        times=times,
    )
    alloc = allocate(ainput)
    # distribute
    skip = uncontrolled.union([table.ids[i] for i in idle])
    rows, limits = _targets(alloc, table, skip, with_session, idle_targets(index, table, idle))
    plan = plan_rows(
        index, table, rows, limits, alloc.headroom, now_s=now_s, settings=settings, events=events
    )
    commands: list[Command] = [*plan.commands, *_fallback_commands(index, table)]
    over_events, overloaded, over_rating = overload_events(
        alloc,
        state=state,
        measured=ainput.measurements,
        index=index,
        table=table,
        fixed=fixed,
        now_s=now_s,
        site=site,
    )
    events.extend(over_events)
    new_state = ControllerState(
        tracks=TrackView(table),  # the table is not written after this
        meters=MappingProxyType(meters),
        charger_states=(
            cstates if cstates is state.charger_states else MappingProxyType(cstates)
        ),
        sessions=sessions,
        session_chargers=frozenset(with_session),
        charger_state_values=_state_values(state, cstates),
        external_caps=ext,
        rotation=alloc.rotation,
        recent_events=(*state.recent_events, *events)[-RECENT_EVENTS:],
        last_step_s=now_s,
        started_s=state.started_s if state.started_s is not None else now_s,
        overloaded_nodes=overloaded,
        over_rating_nodes=over_rating,
        site_index=(site, index),
    )
    wake = _next_wakeup(site, table, meters, with_session, now_s=now_s, settings=settings)
    return StepResult(
        state=new_state,
        commands=tuple(commands),
        events=tuple(events),
        next_wakeup_s=wake,
        allocation=alloc,
    )
