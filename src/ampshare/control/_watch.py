"""Watching the inputs: stale meters, acknowledgements, offline and non-compliant chargers,
unused current to reclaim. Each function returns updated tracks and appends its events."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import replace

from ampshare.control._settings import ControlSettings
from ampshare.control._table import TrackTable
from ampshare.control._types import (
    ChargerTrack,
    CommandAck,
    Event,
    EventKind,
    MeterTrack,
    PerLine,
    Severity,
    evolve,
)
from ampshare.core.allocation import NodeMeasurement
from ampshare.core.site import MeterSpec, Site
from ampshare.core.snapshot import ChargerState, ChargerStatus, MeterReading

__all__ = [
    "apply_ack_rows",
    "apply_acks",
    "apply_charger_state",
    "apply_readings",
    "expire_pending",
    "expire_pending_rows",
    "measurements",
    "meter_deadline_s",
    "per_line_or_zero",
    "probe_wait_s",
    "reclaim_due_s",
    "update_meter_staleness",
]

#: A probe that finds nothing doubles the wait for the next one, up to this many times.
MAX_PROBE_BACKOFF = 3


def _max_line(values: tuple[float | None, float | None, float | None] | None) -> float | None:
    if values is None:
        return None
    known = [v for v in values if v is not None]
    return max(known) if known else None


def per_line_or_zero(
    values: tuple[float | None, float | None, float | None] | None,
) -> tuple[float, float, float]:
    """Per-line values with unknown lines as 0 (for display and fixed-load shapes only)."""
    if values is None:
        return (0.0, 0.0, 0.0)
    return (values[0] or 0.0, values[1] or 0.0, values[2] or 0.0)


def _ev(
    out: list[Event], t_s: float, *, kind: EventKind, sev: Severity, subj: str, msg: str
) -> None:
    out.append(Event(t_s=t_s, kind=kind, severity=sev, subject=subj, message=msg))


# --- meters -------------------------------------------------------------------------------


def apply_readings(meters: dict[str, MeterTrack], readings: Iterable[MeterReading]) -> None:
    """Keep the newest reading per meter and the per-line maximum seen (the historical worst
    case used once the meter goes stale)."""
    for r in readings:
        track = meters.get(r.meter_id)
        if track is None:
            continue  # a meter the site does not know: ignore rather than guess its node
        if track.last is not None and r.t_s < track.last.t_s:
            continue
        hist = track.max_line_a
        if r.current_a is not None:
            hist = tuple(max(h, v or 0.0) for h, v in zip(hist, r.current_a, strict=True))  # type: ignore[assignment]
        fresh_since = track.fresh_since_s
        if track.stale and fresh_since is None:
            fresh_since = r.t_s
        meters[r.meter_id] = replace(track, last=r, max_line_a=hist, fresh_since_s=fresh_since)


def _timeout_s(settings: ControlSettings, spec: MeterSpec) -> float:
    return settings.meter_timeout_s if settings.meter_timeout_s is not None else spec.timeout_s


def meter_deadline_s(settings: ControlSettings, spec: MeterSpec, track: MeterTrack) -> float:
    """When the meter turns stale if no new reading arrives."""
    if track.last is None:
        return float("inf")
    return track.last.t_s + _timeout_s(settings, spec)


def update_meter_staleness(
    site: Site,
    settings: ControlSettings,
    meters: dict[str, MeterTrack],
    now_s: float,
    events: list[Event],
) -> None:
    """Mark meters stale past their timeout, and trusted again only after ``meter_recover_s``
    of fresh readings (a meter not trusted before is trusted from its first reading)."""
    for spec in site.meters:
        t = meters[spec.id]
        timeout = _timeout_s(settings, spec)
        if t.last is None or now_s - t.last.t_s > timeout:
            if not t.stale and t.last is not None:
                _ev(
                    events,
                    now_s,
                    kind=EventKind.METER_STALE,
                    sev=Severity.ALERT,
                    subj=spec.id,
                    msg=f"no reading for {now_s - t.last.t_s:.1f} s (timeout {timeout:g} s): "
                    f"node {spec.node_id} counted at its worst case",
                )
            if not t.stale or t.fresh_since_s is not None:
                meters[spec.id] = replace(t, stale=True, fresh_since_s=None)
            continue
        if not t.stale:
            continue
        since = t.fresh_since_s if t.fresh_since_s is not None else t.last.t_s
        if not t.was_trusted or now_s - since >= settings.meter_recover_s - 1e-9:
            meters[spec.id] = replace(t, stale=False, fresh_since_s=None, was_trusted=True)
            if t.was_trusted:
                _ev(
                    events,
                    now_s,
                    kind=EventKind.METER_RECOVERED,
                    sev=Severity.INFO,
                    subj=spec.id,
                    msg=f"fresh readings for {now_s - since:.1f} s: trusted again",
                )


def measurements(site: Site, meters: Mapping[str, MeterTrack]) -> tuple[NodeMeasurement, ...]:
    """What the allocator sees of every metered node."""
    out = []
    for spec in site.meters:
        t = meters[spec.id]
        hist = t.max_line_a if any(v > 0 for v in t.max_line_a) else None
        worst = spec.fallback_line_a if spec.fallback_line_a is not None else hist
        last = t.last
        out.append(
            NodeMeasurement(
                node_id=spec.node_id,
                current_a=None if t.stale or last is None else last.current_a,
                power_w=None if t.stale or last is None else last.power_w,
                stale=t.stale or last is None,
                worst_case_line_a=worst,
                includes_ev_load=spec.includes_ev_load,
            )
        )
    return tuple(out)


# --- chargers -----------------------------------------------------------------------------


def _online_event(t: ChargerTrack, s: ChargerState, events: list[Event]) -> None:
    kind = EventKind.CHARGER_ONLINE if s.online else EventKind.CHARGER_OFFLINE
    sev = Severity.INFO if s.online else Severity.ALERT
    if s.online:
        msg = "back online: limits re-asserted" if t.joined else "connected: limits asserted"
    else:
        msg = (
            f"offline: counted at {max(t.high_a, t.measured_a, t.fallback_a):g} A until its "
            "lease and fallback say otherwise"
        )
    _ev(events, s.t_s, kind=kind, sev=sev, subj=t.charger_id, msg=msg)


def apply_acks(
    tracks: dict[str, ChargerTrack], acks: Iterable[CommandAck], events: list[Event]
) -> None:
    """``apply_ack_rows`` on a mapping of tracks (updated in place)."""
    table = TrackTable.of(tracks)
    apply_ack_rows(table, acks, events)
    table.write_to(tracks)


def apply_ack_rows(table: TrackTable, acks: Iterable[CommandAck], events: list[Event]) -> None:
    """Record acknowledgements of the limit currently commanded; a rejection keeps the
    charger counted at the higher value and forgets the limit, so that it is sent again.

    The lease now known to be in force (``held_until_s``) is the answered command's own lease
    when the ack carries it; else, for an answer after the latest send, that send's lease (a
    charger link answers its commands in order); else what was known before."""
    pos, limit, obj = table.pos, table.limit_a, table.obj
    for a in acks:
        i = pos.get(a.charger_id)
        if i is None:
            continue
        if a.fallback:
            table.fallback_acked[i] = a.accepted
            obj[i] = None
            continue
        known = limit[i]
        if known is None or abs(a.limit_a - known) > 1e-6:
            continue  # an answer to an older command: the newer one is still in flight
        if a.accepted:
            held = table.held_until_s[i]
            sent = table.sent_s[i]
            if a.lease_until_s is not None:
                lease = a.lease_until_s
            elif sent is not None and a.t_s >= sent:
                lease = table.lease_until_s[i]
            else:
                lease = held
            table.acked_s[i] = a.t_s
            table.held_until_s[i] = max(held, lease)
        else:
            _ev(
                events,
                a.t_s,
                kind=EventKind.COMMAND_REJECTED,
                sev=Severity.ALERT,
                subj=a.charger_id,
                msg=f"rejected limit {a.limit_a:g} A; still counted at {table.high_a[i]:g} A",
            )
            limit[i] = None
            table.acked_s[i] = None
        obj[i] = None


def _confirm(
    t: ChargerTrack, s: ChargerState, measured: float | None, settings: ControlSettings
) -> ChargerTrack:
    """A decrease is confirmed early by a report after the acknowledgement showing the draw
    at or under the new limit. A draw within ``confirm_tolerance_a`` above it still counts as
    what it is: the car is counted at that draw (not at the new limit) until the EV reaction
    time has passed, so a small decrease is never "confirmed" by the old draw; nor is any
    decrease shortly after an increase, which the car may not have followed yet."""
    if not t.pending or t.acked_s is None or s.t_s < t.acked_s or t.limit_a is None:
        return t
    if (
        t.raised_s is not None
        and s.t_s < t.raised_s + settings.ack_timeout_s + settings.ev_reaction_s
    ):
        # a car may still be about to follow an earlier increase: a low draw proves nothing
        return t
    if measured is not None and measured <= t.limit_a + settings.confirm_tolerance_a:
        high = min(t.high_a, max(t.limit_a, measured))
        return evolve(t, high_a=high) if high != t.high_a else t
    return t


def _compliance(
    t: ChargerTrack,
    s: ChargerState,
    measured: float,
    settings: ControlSettings,
    events: list[Event],
) -> ChargerTrack:
    allowed = t.high_a if t.limit_a is not None else float("inf")
    over = measured > allowed + settings.noncompliance_tolerance_a
    if over:
        since = t.over_since_s if t.over_since_s is not None else s.t_s
        t = evolve(t, over_since_s=since, compliant_since_s=None)
        if not t.noncompliant and s.t_s - since >= settings.noncompliance_s - 1e-9:
            _ev(
                events,
                s.t_s,
                kind=EventKind.NONCOMPLIANT,
                sev=Severity.ALERT,
                subj=t.charger_id,
                msg=f"draws {measured:.1f} A over its limit {allowed:g} A for "
                f"{s.t_s - since:.0f} s: counted at its draw, others lowered",
            )
            t = evolve(t, noncompliant=True)
        return t
    t = evolve(t, over_since_s=None) if t.over_since_s is not None else t
    if t.noncompliant:
        since = t.compliant_since_s if t.compliant_since_s is not None else s.t_s
        t = evolve(t, compliant_since_s=since)
        if s.t_s - since >= settings.noncompliance_s - 1e-9:
            _ev(
                events,
                s.t_s,
                kind=EventKind.COMPLIANT_AGAIN,
                sev=Severity.INFO,
                subj=t.charger_id,
                msg=f"back under its limit for {s.t_s - since:.0f} s",
            )
            t = evolve(t, noncompliant=False, compliant_since_s=None)
    return t


def _reclaim(
    t: ChargerTrack,
    s: ChargerState,
    measured: float,
    *,
    min_a: float,
    settings: ControlSettings,
    events: list[Event],
) -> ChargerTrack:
    """Cap a car that leaves current unused, and cap it lower as it tapers further (each time
    it leaves ``reclaim_below_a`` of its limit unused for ``reclaim_after_s``: a deadband, so
    the limit moves in steps, not with every report); lift the cap when it draws up to it.

    A car drawing nothing is capped only when its charger says the car itself declines the
    current (SuspendedEV: full, or its own timer): then at 0 A, which pauses it (its minimum
    would sit unused), and the probes offer it current again now and then; any draw ends the
    cap. One that has not started yet (SuspendedEVSE, just plugged in, waiting to be
    authorised) keeps its share, or it would start at the minimum and climb back in steps.

    A probe (``_caps``) lifts the cap but keeps it in ``cap_a`` (``cap_set_s`` None): a car
    that then draws up to that old cap takes more, and everything is forgotten; one that is
    capped again has missed the probe, and the next one waits twice as long."""
    margin = settings.reclaim_margin_a
    cap = t.cap_a
    if cap is not None and measured >= max(cap - margin / 2, 0.5):  # a 0 A cap: any draw
        return evolve(t, cap_a=None, cap_set_s=None, under_since_s=None, probe_misses=0)
    full = measured < 0.5 and s.status is ChargerStatus.SUSPENDED_EV
    lim = t.limit_a
    if (
        lim is None
        or lim < min_a
        or t.pending
        or (measured < 0.5 and not full)
        or measured > lim - settings.reclaim_below_a
    ):
        return evolve(t, under_since_s=None) if t.under_since_s is not None else t
    since = t.under_since_s if t.under_since_s is not None else s.t_s
    new_cap = 0.0 if full else max(min_a, measured + margin)
    if s.t_s - since < settings.reclaim_after_s - 1e-9 or new_cap >= lim - 1e-9:
        return evolve(t, under_since_s=since) if t.under_since_s != since else t
    probing = cap is not None and t.cap_set_s is None
    if full:
        msg = (
            f"the car takes none of its {lim:g} A (SuspendedEV) for {s.t_s - since:.0f} s: "
            "paused, its current goes to others; offered current again now and then"
        )
    else:
        msg = (
            f"draws {measured:.1f} A of {lim:g} A for {s.t_s - since:.0f} s: capped at "
            f"{new_cap:.1f} A, the rest goes to others"
        )
    _ev(events, s.t_s, kind=EventKind.RECLAIMED, sev=Severity.INFO, subj=t.charger_id, msg=msg)
    return evolve(
        t,
        cap_a=new_cap,
        cap_set_s=s.t_s,
        under_since_s=None,
        probe_misses=t.probe_misses + 1 if probing else t.probe_misses,
    )


def probe_wait_s(misses: int, settings: ControlSettings) -> float:
    """How long a reclaim cap holds before a probe lifts it: ``probe_interval_s``, doubled
    for each probe in a row that found nothing (up to ``2 ** MAX_PROBE_BACKOFF`` times)."""
    return settings.probe_interval_s * 2.0 ** min(misses, MAX_PROBE_BACKOFF)


def reclaim_due_s(t: ChargerTrack, settings: ControlSettings) -> float:
    """When the reclaim rule can next act on this charger without new input: its deadband
    runs out (``reclaim_after_s`` after the car began leaving current unused) or its cap's
    probe is due; inf for neither.

    A live controller runs every ``max_period_s`` and meets these by itself. One driven on a
    coarser clock (the simulator's grid) has to wake for them: otherwise a full car offered
    current by a probe holds it, unused, until the next grid step instead of 30 s."""
    due = math.inf
    if t.under_since_s is not None:
        due = t.under_since_s + settings.reclaim_after_s
    if t.cap_a is not None and t.cap_set_s is not None:
        due = min(due, t.cap_set_s + probe_wait_s(t.probe_misses, settings))
    return due


def _lower(a: PerLine, b: PerLine) -> PerLine:
    return (min(a[0], b[0]), min(a[1], b[1]), min(a[2], b[2]))


def _prior(
    t: ChargerTrack, s: ChargerState, meter_s: float
) -> tuple[PerLine | None, float | None, float]:
    """``prior_line_a``, ``prior_s`` and ``dip_seen_s`` once report ``s`` becomes the latest
    (see ``ChargerTrack``). The report it replaces becomes the prior one when it was taken at
    or before the meter reading (``meter_s``, inf without a fresh meter above the charger);
    a newer one only lowers the prior one, so that what the charger drew at the meter's time
    is not taken from reports after it. A report taken once a dip can show in it
    (``dip_seen_s``) ends the dip: the time before it keeps the dip in the prior lines."""
    prior, prior_s, dip_seen = t.prior_line_a, t.prior_s, t.dip_seen_s
    if t.report_s is None or not t.online:
        prior, prior_s = None, None  # nothing known since it came (back) online
    elif t.report_s <= meter_s:
        prior, prior_s = t.measured_line_a, t.report_s
    elif prior is not None:
        prior = _lower(prior, t.measured_line_a)
    if dip_seen != float("-inf") and s.t_s >= dip_seen:
        if prior is not None:
            prior = _lower(prior, (t.dip_a, t.dip_a, t.dip_a))
        dip_seen = float("-inf")
    return prior, prior_s, dip_seen


def apply_charger_state(
    t: ChargerTrack,
    s: ChargerState,
    min_a: float,
    settings: ControlSettings,
    events: list[Event],
    *,
    in_grace: bool = False,
    meter_s: float = float("inf"),
) -> ChargerTrack:
    """Fold one charger report into its track. ``in_grace``: the controller started less than
    ``startup_grace_s`` ago, so a charger that has not joined yet going offline (or joining)
    is no news: it is counted as pessimistically as any offline charger, without an alert.
    ``meter_s``: when the oldest fresh meter reading above the charger was taken (inf when
    none), for ``prior_line_a``."""
    if t.report_s is not None and s.t_s < t.report_s:
        return t
    prior, prior_s, dip_seen = _prior(t, s, meter_s)
    if s.online != t.online:
        if t.joined or not in_grace:
            _online_event(t, s, events)
        # back online: resend the fallback and the limit (the charger may have rebooted)
        t = evolve(
            t,
            online=s.online,
            joined=t.joined or s.online or not in_grace,
            limit_a=None if s.online else t.limit_a,
            fallback_sent=False if s.online else t.fallback_sent,
            held_until_s=float("-inf") if s.online else t.held_until_s,
        )
    elif s.online and not t.joined:
        t = evolve(t, joined=True)
    if not s.online:
        return evolve(t, report_s=s.t_s)
    measured = _max_line(s.measured_current_a)
    lines = s.measured_current_a
    t = evolve(
        t,
        report_s=s.t_s,
        measured_a=measured if measured is not None else t.measured_a,
        measured_line_a=per_line_or_zero(lines),
        prior_line_a=prior,
        prior_s=prior_s,
        dip_seen_s=dip_seen,
    )
    t = _confirm(t, s, measured, settings)
    if measured is None:
        return t
    t = _compliance(t, s, measured, settings, events)
    return _reclaim(t, s, measured, min_a=min_a, settings=settings, events=events)


def expire_pending(t: ChargerTrack, now_s: float, settings: ControlSettings) -> ChargerTrack:
    """``expire_pending_rows`` for one track."""
    table = TrackTable.of({t.charger_id: t})
    expire_pending_rows(table, now_s, settings)
    return table.row(0)


def expire_pending_rows(table: TrackTable, now_s: float, settings: ControlSettings) -> None:
    """A decrease acknowledged ``ev_reaction_s`` ago is obeyed by any conforming EV."""
    if table.high_a == table.limit_a or table.acked_s.count(None) == len(table.ids):
        return  # nothing in flight, or nothing acknowledged: nothing to expire
    limit, high, acked, obj = table.limit_a, table.high_a, table.acked_s, table.obj
    after = settings.ev_reaction_s - 1e-9
    for i, a in enumerate(acked):
        if a is not None and now_s - a >= after:
            lim = limit[i]
            if lim is not None and high[i] > lim + 1e-9:
                high[i] = lim
                obj[i] = None
