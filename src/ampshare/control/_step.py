"""The decision step: previous state + new inputs + now -> new state + commands + events.

measure (fold readings and reports into the state) -> subtract (stale meters at their worst
case, offline and non-compliant chargers at fixed worst cases, reclaim/ramp/pause caps) ->
calculate (``core.allocate``) -> distribute (decreases first, increases once safe, leases).
No I/O and no clock: the live supervisor and the simulator call the very same function.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from types import MappingProxyType

from ampshare.control._fallback import fallback_causes, fallback_limits
from ampshare.control._idle import guard_s, idle_loads, idle_targets, lapsed, settle_idle
from ampshare.control._index import SiteIndex, index_site
from ampshare.control._overload import overload_events
from ampshare.control._sequence import plan_commands
from ampshare.control._settings import ControlSettings
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
    apply_acks,
    apply_charger_state,
    apply_readings,
    expire_pending,
    measurements,
    meter_deadline_s,
    per_line_or_zero,
    update_meter_staleness,
)
from ampshare.core.allocate import allocate
from ampshare.core.allocation import (
    Allocation,
    AllocationInput,
    ChargerLimit,
    FixedLoad,
    Policy,
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
        shown = ", ".join(sorted(ids)[:5]) + (", ..." if len(ids) > 5 else "")
        out.append(
            Event(
                t_s=now_s,
                kind=EventKind.FALLBACK_ZERO,
                severity=Severity.WARNING,
                subject=ids[0] if len(ids) == 1 else site.name,
                message=f"{len(ids)} charger(s) ({shown}) fall back to 0 A without the "
                f"controller: {why}",
            )
        )
    return out


def initial_state(site: Site, settings: ControlSettings) -> ControllerState:
    """A fresh controller: nothing known yet; every meter stale until it reports, every
    charger's fallback computed and due to be installed at the first step."""
    index = index_site(site)
    del settings  # accepted for symmetry with rebuild_state; nothing depends on it yet
    return ControllerState(
        tracks=MappingProxyType(_new_tracks(site, index)),
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
        tracks=MappingProxyType(tracks),
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


def _caps(
    index: SiteIndex,
    tracks: dict[str, ChargerTrack],
    with_session: Iterable[str],
    *,
    now_s: float,
    settings: ControlSettings,
    events: list[Event],
) -> dict[str, float]:
    """Per-charger caps for the allocator: reclaim of unused current (lifted for a probe
    every ``probe_interval_s``), the minimum pause, and the ramp."""
    caps: dict[str, float] = {}
    for cid in with_session:
        t = tracks[cid]
        cap = float("inf")
        if t.cap_a is not None and t.cap_set_s is not None:
            if now_s - t.cap_set_s >= settings.probe_interval_s - 1e-9:
                events.append(
                    Event(
                        t_s=now_s,
                        kind=EventKind.PROBE,
                        severity=Severity.INFO,
                        subject=cid,
                        message=f"cap {t.cap_a:.1f} A lifted to see whether the car takes more",
                    )
                )
                tracks[cid] = t = replace(t, cap_a=None, cap_set_s=None, under_since_s=now_s)
            else:
                cap = t.cap_a if t.cap_a is not None else cap
        if t.paused_since_s is not None and now_s - t.paused_since_s < settings.min_pause_s:
            cap = 0.0
        if settings.ramp_up_a_per_s is not None and t.limit_a is not None:
            since = now_s - (t.sent_s if t.sent_s is not None else now_s)
            floor = index.chargers[cid].min_current_a
            cap = min(cap, max(floor, t.limit_a + settings.ramp_up_a_per_s * since))
        if cap != float("inf"):
            caps[cid] = cap
    return caps


def _next_wakeup(
    site: Site,
    state_tracks: Mapping[str, ChargerTrack],
    meters: Mapping[str, MeterTrack],
    with_session: set[str],
    *,
    now_s: float,
    settings: ControlSettings,
) -> float:
    wake = now_s + settings.max_period_s
    guard = guard_s(settings)
    for cid, t in state_tracks.items():
        if t.pending and t.acked_s is not None:
            wake = min(wake, t.acked_s + settings.ev_reaction_s)
        if t.paused_since_s is not None and cid in with_session:
            end = t.paused_since_s + settings.min_pause_s
            wake = min(wake, end) if end > now_s else wake
        if t.limit_a is not None and (cid in with_session or t.held_until_s > now_s):
            wake = min(wake, t.lease_until_s - settings.lease_s / 2)
        if t.held_until_s - guard > now_s:  # from then on its fallback counts again
            wake = min(wake, t.held_until_s - guard)
    for spec in site.meters:
        m = meters[spec.id]
        if not m.stale:
            wake = min(wake, meter_deadline_s(settings, spec, m))
        elif m.fresh_since_s is not None:
            wake = min(wake, m.fresh_since_s + settings.meter_recover_s)
    return max(wake, now_s)


def _fold_inputs(
    site: Site,
    index: SiteIndex,
    settings: ControlSettings,
    *,
    state: ControllerState,
    inputs: ControlInputs,
    now_s: float,
    events: list[Event],
) -> tuple[dict[str, ChargerTrack], dict[str, MeterTrack], dict[str, ChargerState]]:
    tracks = dict(state.tracks)
    meters = dict(state.meters)
    cstates = dict(state.charger_states)
    apply_readings(meters, inputs.readings)
    update_meter_staleness(site, settings, meters, now_s, events)
    apply_acks(tracks, inputs.acks, events)
    for s in inputs.charger_states:
        t = tracks.get(s.charger_id)
        if t is None:
            continue  # a charger the site does not know: the OCPP layer reports it
        cstates[s.charger_id] = s
        min_a = index.chargers[s.charger_id].min_current_a
        tracks[s.charger_id] = apply_charger_state(t, s, min_a, settings, events)
    for cid, t in tracks.items():
        if t.pending:
            tracks[cid] = expire_pending(t, now_s, settings)
    return tracks, meters, cstates


def _targets(
    alloc: Allocation,
    tracks: Mapping[str, ChargerTrack],
    fixed_ids: set[str],
    with_session: set[str],
) -> dict[str, ChargerLimit]:
    """The chargers to command now: controllable ones with a car, or with a limit to withdraw
    or an unknown one to assert (after a restart)."""
    targets: dict[str, ChargerLimit] = {}
    for lim in alloc.limits:
        t = tracks.get(lim.charger_id)
        if t is None or lim.charger_id in fixed_ids:
            continue
        if (
            lim.charger_id in with_session
            or (t.limit_a is None and t.high_a > 0)
            or (t.limit_a or 0.0) > 0
        ):
            targets[lim.charger_id] = lim
    return targets


def _fallback_commands(index: SiteIndex, tracks: dict[str, ChargerTrack]) -> list[InstallFallback]:
    """Install the fallback on every online charger that has not been sent it (first step,
    after a restart, when it comes back online: it may have rebooted)."""
    out = []
    for cid, t in tracks.items():
        if t.online and not t.fallback_sent:
            phases = len(index.lines[cid]) or 1
            out.append(InstallFallback(charger_id=cid, limit_a=t.fallback_a, phases=phases))
            tracks[cid] = replace(t, fallback_sent=True)
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
    settings: ControlSettings,
) -> AllocationInput:
    if settings.min_charge_s > policy.rotation_interval_s:
        # start/stop hysteresis: nobody is rotated out before min_charge_s
        policy = replace(policy, rotation_interval_s=settings.min_charge_s)
    return AllocationInput(
        site=site,
        now_s=now_s,
        sessions=sessions,
        charger_states=tuple(cstates.values()),
        measurements=measurements(site, meters),
        external_caps=ext,
        fixed_loads=tuple(fixed),
        caps_a=MappingProxyType(caps),
        policy=policy,
        rotation=state.rotation,
    )


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
    tracks, meters, cstates = _fold_inputs(
        site, index, settings, state=state, inputs=inputs, now_s=now_s, events=events
    )
    sessions = tuple(
        s
        for s in (state.sessions if inputs.sessions is None else inputs.sessions)
        if s.charger_id in tracks
    )
    ext = state.external_caps if inputs.external_caps is None else inputs.external_caps
    ext = tuple(c for c in ext if c.until_s is None or c.until_s > now_s)
    with_session = {s.charger_id for s in sessions}
    guard = guard_s(settings)
    for cid in with_session:
        t = tracks[cid]
        if t.online and now_s >= t.held_until_s - guard:  # the common case skips the call
            tracks[cid] = lapsed(t, now_s, settings)
    # subtract: what cannot be controlled, what idle chargers would offer an arriving car,
    # and the controller's own caps
    fixed = [
        f
        for t in tracks.values()
        if (not t.online or t.noncompliant or t.over_since_s is not None)
        and (f := _fixed_load(index, t, now_s, settings))
    ]
    uncontrolled = {f.charger_id for f in fixed}
    idle = [
        cid
        for cid, t in tracks.items()
        if t.online and cid not in with_session and cid not in uncontrolled
    ]
    for cid in idle:
        tracks[cid] = settle_idle(tracks[cid])
    fixed.extend(idle_loads(index, tracks, idle, now_s, settings))
    caps = _caps(index, tracks, sorted(with_session), now_s=now_s, settings=settings, events=events)
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
        settings=settings,
    )
    alloc = allocate(ainput)
    # distribute
    targets = _targets(alloc, tracks, uncontrolled.union(idle), with_session)
    targets.update(idle_targets(index, tracks, idle))
    headroom = {h.node_id: h.headroom_a for h in alloc.headroom}
    plan = plan_commands(
        index, tracks, targets, headroom, now_s=now_s, settings=settings, events=events
    )
    commands: list[Command] = [*plan.commands, *_fallback_commands(index, tracks)]
    over_events, overloaded = overload_events(
        alloc,
        state=state,
        measured=ainput.measurements,
        index=index,
        tracks=tracks,
        now_s=now_s,
    )
    events.extend(over_events)
    new_state = ControllerState(
        tracks=MappingProxyType(tracks),
        meters=MappingProxyType(meters),
        charger_states=MappingProxyType(cstates),
        sessions=sessions,
        external_caps=ext,
        rotation=alloc.rotation,
        recent_events=(*state.recent_events, *events)[-RECENT_EVENTS:],
        last_step_s=now_s,
        started_s=state.started_s if state.started_s is not None else now_s,
        overloaded_nodes=overloaded,
        site_index=(site, index),
    )
    wake = _next_wakeup(site, tracks, meters, with_session, now_s=now_s, settings=settings)
    return StepResult(
        state=new_state,
        commands=tuple(commands),
        events=tuple(events),
        next_wakeup_s=wake,
        allocation=alloc,
    )
