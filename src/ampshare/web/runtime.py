"""``SiteRuntime``: the live read model the API and dashboard show, and its write side.

The supervisor (``ampshare.app``) and the controller feed an ``InMemoryRuntime`` with what
they learn (charger states, meter readings, sessions, each new allocation); the web layer only
reads ``view()`` (one consistent, frozen snapshot) and writes through ``edit_session``,
``set_policy`` and ``set_cap``, which the controller picks up on its next cycle. Every write is
persisted to the store first, so a change the API confirmed survives a crash.

When an ``allocator`` is given (normally ``ampshare.core.allocate.allocate``) the runtime
re-runs it after every change, so that an edited departure changes the limits at once; a
deployment whose controller computes limits itself passes ``allocator=None`` and pushes each
``Allocation`` with ``set_allocation``. A supervisor running the planner pushes each new plan
with ``set_plan`` (``GET /api/v1/plan``: expected energy by departure, "will not be ready").
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Protocol

from ampshare.clock import Clock
from ampshare.control import Event as ControlEvent
from ampshare.core.allocation import (
    Allocation,
    AllocationInput,
    ChargerLimit,
    NodeHeadroom,
    NodeMeasurement,
    Policy,
    PolicyName,
    RotationState,
)
from ampshare.core.site import Site
from ampshare.core.snapshot import ChargerState, ExternalCap, MeterReading, Session
from ampshare.errors import AmpshareError, InputError
from ampshare.store import (
    EDITABLE_SESSION_FIELDS,
    EventRecord,
    InstalledProfile,
    SessionRecord,
    Severity,
    SqlStore,
)

if TYPE_CHECKING:  # the planner pulls in scipy; the web layer only reads its results
    from ampshare.core.planner import Plan

__all__ = ["Allocator", "BatteryStatus", "InMemoryRuntime", "RuntimeView", "SiteRuntime"]

Allocator = Callable[[AllocationInput], Allocation]
_SEVERITY = {"info": Severity.INFO, "warning": Severity.WARNING, "alert": Severity.CRITICAL}
_RESOLVES = {  # recovery event kind -> the alert kind it closes
    "meter_recovered": "meter_stale",
    "charger_online": "charger_offline",
    "compliant_again": "noncompliant",
}
_LIMIT_EVENT_STEP_A = 1.0  # smaller moves are routine sharing, not worth an event row


@dataclass(frozen=True, slots=True, kw_only=True)
class BatteryStatus:
    """The stationary battery as the dashboard shows it: its last reading (None: not read
    freshly), the power it is asked for and why, and what the controller adds to the root's
    readings for it (``credit_w``, taken off the site import shown)."""

    battery_id: str
    soc_pct: float | None
    power_w: float | None
    command_w: float
    reason: str
    credit_w: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class RuntimeView:
    """Everything the site looks like now. ``seq`` grows with every change (live updates send
    a new frame only when it moved); ``leases_until_s`` maps charger id to when its limit
    lease runs out."""

    seq: int
    now_s: float
    site: Site
    policy: Policy
    sessions: tuple[Session, ...]
    limits: tuple[ChargerLimit, ...] = ()
    headroom: tuple[NodeHeadroom, ...] = ()
    charger_states: Mapping[str, ChargerState] = field(default_factory=dict)
    meter_readings: Mapping[str, MeterReading] = field(default_factory=dict)
    external_caps: tuple[ExternalCap, ...] = ()
    leases_until_s: Mapping[str, float] = field(default_factory=dict)
    allocated_s: float | None = None
    allocator_error: str | None = None
    plan: Plan | None = None  # the planner's latest plan (None: no planner, or not run yet)
    held_peak_kw: float | None = None  # the site import that plan's peak holds live, if any
    planner_on: bool = False  # a planner runs beside this runtime (policy ``planned`` works)
    battery: BatteryStatus | None = None  # the site file's ``battery:``, as last driven
    pv_kw: float | None = None  # what the PV meters measure now (None: none, or not fresh)
    # Chargers the controller found drawing over their limit (until "compliant again").
    noncompliant: frozenset[str] = frozenset()
    # Indexes built once per view, so that listing thousands of chargers stays linear.
    _limit_by: Mapping[str, ChargerLimit] = field(default_factory=dict, repr=False)
    _session_by: Mapping[str, Session] = field(default_factory=dict, repr=False)

    def limit(self, charger_id: str) -> ChargerLimit | None:
        if self._limit_by or not self.limits:
            return self._limit_by.get(charger_id)
        return next((lim for lim in self.limits if lim.charger_id == charger_id), None)

    def session_at(self, charger_id: str) -> Session | None:
        if self._session_by or not self.sessions:
            return self._session_by.get(charger_id)
        return next((s for s in self.sessions if s.charger_id == charger_id), None)


class SiteRuntime(Protocol):
    """What the web layer needs: a snapshot to read and three ways to steer."""

    def view(self) -> RuntimeView: ...

    def edit_session(
        self, session_id: str, changes: Mapping[str, float | int | None], *, by: str
    ) -> Session: ...

    def set_policy(self, policy: Policy, *, by: str) -> None: ...

    def set_cap(self, cap: ExternalCap, *, by: str) -> None: ...

    def clear_cap(self, source: str, node_id: str, *, by: str) -> None: ...


class InMemoryRuntime:
    """The runtime kept in memory, persisted through ``store`` (thread-safe)."""

    def __init__(
        self,
        site: Site,
        clock: Clock,
        store: SqlStore,
        *,
        allocator: Allocator | None = None,
        lease_s: float = 120.0,
    ) -> None:
        self._site = site
        self._clock = clock
        self._store = store
        self._allocator = allocator
        self._lease_s = lease_s
        self._lock = threading.RLock()
        self._seq = 0
        self._policy = Policy()
        self._sessions: dict[str, Session] = {}
        self._states: dict[str, ChargerState] = {}
        self._readings: dict[str, MeterReading] = {}
        self._caps: dict[tuple[str, str], ExternalCap] = {}
        self._allocation: Allocation | None = None
        self._allocated_s: float | None = None
        self._allocator_error: str | None = None
        self._leases: dict[str, float] = {}
        self._plan: Plan | None = None
        self._held_peak_kw: float | None = None
        self._planner_on = False
        self._battery: BatteryStatus | None = None
        self._pv_kw: float | None = None
        self._noncompliant: set[str] = set()

    # -- reading ----------------------------------------------------------------------------
    def view(self) -> RuntimeView:
        with self._lock:
            a = self._allocation
            limits = a.limits if a else ()
            return RuntimeView(
                seq=self._seq,
                now_s=self._clock.now_s(),
                site=self._site,
                policy=self._policy,
                sessions=tuple(sorted(self._sessions.values(), key=lambda s: s.charger_id)),
                limits=tuple(a.limits) if a else (),
                headroom=tuple(a.headroom) if a else (),
                charger_states=MappingProxyType(dict(self._states)),
                meter_readings=MappingProxyType(dict(self._readings)),
                external_caps=tuple(self._caps.values()),
                leases_until_s=MappingProxyType(dict(self._leases)),
                allocated_s=self._allocated_s,
                allocator_error=self._allocator_error,
                plan=self._plan,
                held_peak_kw=self._held_peak_kw,
                planner_on=self._planner_on,
                battery=self._battery,
                pv_kw=self._pv_kw,
                noncompliant=frozenset(self._noncompliant),
                _limit_by={lim.charger_id: lim for lim in limits},
                _session_by={s.charger_id: s for s in self._sessions.values()},
            )

    @property
    def store(self) -> SqlStore:
        return self._store

    # -- restart ----------------------------------------------------------------------------
    def restore(self) -> int:
        """Reload plugged-in sessions, policy and admin caps from the store, then re-assert
        every limit (recompute and record it as installed). Returns the sessions restored."""
        records = self._store.sessions(active=True, limit=100_000)
        with self._lock:
            for rec in records:
                if rec.session.charger_id in {c.id for c in self._site.chargers}:
                    self._sessions[rec.session.session_id] = rec.session
            self._policy = _policy_from(self._store.get_setting("policy")) or self._policy
            for cap in _caps_from(self._store.get_setting("caps")):
                self._caps[(cap.source, cap.node_id)] = cap
            self._noncompliant |= {
                a.subject
                for a in self._store.events(
                    kind="noncompliant", alerts_only=True, open_only=True, limit=1000
                )
                if a.subject
            }
            self._changed()
        self._event(
            "restart",
            f"restored {len(records)} sessions; limits re-asserted",
            data={"sessions": len(records)},
        )
        self.reassert_limits()
        return len(records)

    def reassert_limits(self) -> tuple[InstalledProfile, ...]:
        """Record the current limit of every charger as installed with a fresh lease (what a
        restarted controller sends again before trusting anything it held before)."""
        now = self._clock.now_s()
        with self._lock:
            limits = self._allocation.limits if self._allocation else ()
            for lim in limits:
                self._leases[lim.charger_id] = now + self._lease_s
        out = tuple(
            InstalledProfile(
                charger_id=lim.charger_id,
                purpose="tx",
                limit_a=lim.limit_a,
                phases=lim.phases,
                installed_s=now,
                lease_until_s=now + self._lease_s,
                reason=lim.reason.text,
            )
            for lim in limits
        )
        for p in out:
            self._store.save_profile(p)
        return out

    # -- feeding (supervisor, adapters, controller) ----------------------------------------
    def update_charger(self, state: ChargerState) -> None:
        with self._lock:
            self._states[state.charger_id] = state
            self._changed()

    def update_meter(self, reading: MeterReading) -> None:
        with self._lock:
            self._readings[reading.meter_id] = reading
            self._changed()

    def update(
        self,
        *,
        charger_states: Sequence[ChargerState] = (),
        meter_readings: Sequence[MeterReading] = (),
        energy_wh: Mapping[str, float] | None = None,
    ) -> None:
        """Take one cycle's news at once (one re-allocation instead of one per item);
        ``energy_wh`` maps session id to energy delivered so far."""
        with self._lock:
            known = {sid: wh for sid, wh in (energy_wh or {}).items() if sid in self._sessions}
        # Stored before it is shown: the API never reports energy a crash could take back.
        self._store.record_energies(known)
        with self._lock:
            for st in charger_states:
                self._states[st.charger_id] = st
            for r in meter_readings:
                self._readings[r.meter_id] = r
            for sid, wh in (energy_wh or {}).items():
                if sid in self._sessions:
                    self._sessions[sid] = replace(self._sessions[sid], energy_delivered_wh=wh)
            self._changed()

    def start_session(self, session: Session) -> None:
        """A car plugged in (persisted before it becomes visible).

        A session the store already holds (its charger named the same transaction again,
        e.g. after a restart or a reconnect) is *resumed*: what drivers and managers set, the
        arrival and the energy delivered are kept, not overwritten by the charger's view."""
        if session.charger_id not in {c.id for c in self._site.chargers}:
            raise InputError(f"session {session.session_id}: unknown charger {session.charger_id}")
        old = self._store.session(session.session_id)
        if old is not None and old.session.charger_id == session.charger_id:
            session = _resumed(session, old.session)
            self._store.save_session(
                SessionRecord(session=session, edited_by=old.edited_by, edited_s=old.edited_s)
            )
            kind, what = "session_resumed", f"car on {session.charger_id} again: session resumed"
        else:
            self._store.save_session(SessionRecord(session=session))
            kind, what = "session_started", f"car plugged into {session.charger_id}"
        self._event(
            kind, what, subject=session.charger_id, data={"session_id": session.session_id}
        )
        with self._lock:
            self._sessions[session.session_id] = session
            self._changed()

    def update_energy(self, session_id: str, energy_delivered_wh: float) -> None:
        with self._lock:
            s = self._sessions.get(session_id)
            if s is None:
                return
        self._store.record_energy(session_id, energy_delivered_wh)
        with self._lock:
            if session_id in self._sessions:
                self._sessions[session_id] = replace(
                    self._sessions[session_id], energy_delivered_wh=energy_delivered_wh
                )
                self._seq += 1  # energy alone does not change limits; no re-allocation needed

    def end_session(self, session_id: str) -> None:
        with self._lock:
            s = self._sessions.get(session_id)
        if s is None:
            return
        self._store.record_energy(session_id, s.energy_delivered_wh)
        self._store.end_session(session_id, self._clock.now_s())
        with self._lock:
            self._sessions.pop(session_id, None)
        self._event(
            "session_ended",
            f"car left {s.charger_id} with {s.energy_delivered_wh / 1000:.1f} kWh",
            subject=s.charger_id,
            data={"session_id": session_id},
        )
        with self._lock:
            self._changed()

    def record_control_events(self, events: Sequence[ControlEvent]) -> None:
        """Store the controller's events (``StepResult.events``) as events and alerts. A
        recovery (meter back, charger online, compliant again) resolves the alert it ends."""
        for ev in events:
            self._track_compliance(ev)
            self._store.add_event(
                EventRecord(
                    t_s=ev.t_s,
                    kind=ev.kind.value,
                    severity=_SEVERITY[ev.severity.value],
                    subject=ev.subject,
                    message=f"{ev.subject}: {ev.message}",
                    reason=ev.message,
                )
            )
            ends = _RESOLVES.get(ev.kind.value)
            if ends is None:
                continue
            for alert in self._store.events(
                kind=ends, alerts_only=True, open_only=True, limit=1000
            ):
                if alert.subject == ev.subject:
                    self._store.resolve_alert(alert.event_id, ev.t_s)
        if events:
            with self._lock:
                self._seq += 1

    def _track_compliance(self, ev: ControlEvent) -> None:
        with self._lock:
            if ev.kind.value == "noncompliant":
                self._noncompliant.add(ev.subject)
            elif ev.kind.value == "compliant_again":
                self._noncompliant.discard(ev.subject)

    def set_allocation(self, allocation: Allocation) -> None:
        """Take an allocation computed elsewhere (the controller)."""
        with self._lock:
            self._install(allocation)

    def set_planner_on(self, on: bool) -> None:
        """Whether a planner runs beside this runtime: ``PUT /policy`` refuses ``planned``
        without one (the cars would share like ``equal`` while the site says "planned")."""
        with self._lock:
            self._planner_on = on
            self._seq += 1  # the dashboard offers "planned" from the next frame

    def set_assets(self, *, battery: BatteryStatus | None, pv_kw: float | None) -> None:
        """The battery and PV as last seen (shown with the site; a new frame goes out when
        what is shown changes, not for every watt)."""
        with self._lock:
            before = (_rounded(self._battery), _kw(self._pv_kw))
            self._battery, self._pv_kw = battery, pv_kw
            if before != (_rounded(battery), _kw(pv_kw)):
                self._seq += 1

    def set_plan(self, plan: Plan, *, held_peak_kw: float | None = None) -> None:
        """Take the planner's newest plan (what ``GET /api/v1/plan`` shows) and the site import
        its demand peak holds live (None: none held)."""
        with self._lock:
            self._plan = plan
            self._held_peak_kw = held_peak_kw
            self._seq += 1

    def recompute(self) -> None:
        """Re-run the allocator on the current state (no-op without an allocator)."""
        with self._lock:
            self._changed()

    # -- steering (API) ---------------------------------------------------------------------
    def edit_session(
        self, session_id: str, changes: Mapping[str, float | int | None], *, by: str
    ) -> Session:
        with self._lock:
            old = self._sessions.get(session_id)
            if old is None:
                raise InputError(f"no active session {session_id!r}")
            # Only real changes are stored and logged, so the event says what was decided.
            changes = {k: v for k, v in changes.items() if getattr(old, k, object()) != v}
            if not changes:
                return old
        rec = self._store.edit_session(session_id, changes, by=by, t_s=self._clock.now_s())
        what = ", ".join(_describe(k, v) for k, v in changes.items())
        self._event(
            "session_edited",
            f"{by} set {what}",
            subject=rec.session.charger_id,
            data={"session_id": session_id, "by": by, **dict(changes)},
        )
        with self._lock:
            old = self._sessions[session_id]
            new = replace(old, **{k: getattr(rec.session, k) for k in EDITABLE_SESSION_FIELDS})
            self._sessions[session_id] = new
            self._changed()
            return new

    def set_policy(self, policy: Policy, *, by: str) -> None:
        self._store.put_setting("policy", _policy_to(policy))
        self._event("policy_changed", f"{by} set policy {policy.name.value}", data={"by": by})
        with self._lock:
            self._policy = policy
            self._changed()

    def set_cap(self, cap: ExternalCap, *, by: str) -> None:
        if cap.node_id not in {n.id for n in self._site.nodes}:
            raise InputError(f"cap: unknown node {cap.node_id!r}")
        with self._lock:
            caps = {**self._caps, (cap.source, cap.node_id): cap}
        self._store.put_setting("caps", [_cap_to(c) for c in caps.values()])
        self._event(
            "limit_changed",
            f"{by} capped {cap.node_id}",
            subject=cap.node_id,
            severity=Severity.WARNING,
            data={"by": by, **_cap_to(cap)},
        )
        with self._lock:
            self._caps = caps
            self._changed()

    def clear_cap(self, source: str, node_id: str, *, by: str) -> None:
        with self._lock:
            if (source, node_id) not in self._caps:
                raise InputError(f"no cap from {source!r} on {node_id!r}")
            caps = {k: v for k, v in self._caps.items() if k != (source, node_id)}
        self._store.put_setting("caps", [_cap_to(c) for c in caps.values()])
        self._event(
            "limit_changed",
            f"{by} removed cap on {node_id}",
            subject=node_id,
            data={"by": by, "source": source},
        )
        with self._lock:
            self._caps = caps
            self._changed()

    # -- internals --------------------------------------------------------------------------
    def _changed(self) -> None:
        self._seq += 1
        if self._allocator is None:
            return
        now = self._clock.now_s()
        try:
            allocation = self._allocator(self._input(now))
        except AmpshareError as exc:
            # the allocator refused this input (e.g. a policy setting it cannot use): the
            # dashboard says why and keeps the last allocation, rather than showing zeros
            self._allocator_error = str(exc) or type(exc).__name__
            return
        self._allocator_error = None
        self._install(allocation)

    def _install(self, allocation: Allocation) -> None:
        previous = (
            {lim.charger_id: lim for lim in self._allocation.limits} if (self._allocation) else {}
        )
        self._allocation = allocation
        self._allocated_s = now = self._clock.now_s()
        self._seq += 1
        # Each limit the runtime hands out is a lease: the controller re-sends it before expiry,
        # and a charger that hears nothing falls back to its safe default profile.
        self._leases = {lim.charger_id: now + self._lease_s for lim in allocation.limits}
        for lim in allocation.limits:
            old = previous.get(lim.charger_id)
            if (
                old is None
                or abs(old.limit_a - lim.limit_a) >= _LIMIT_EVENT_STEP_A
                or (old.reason.kind is not lim.reason.kind)
            ):
                self._event(
                    "charger_limit",
                    f"{lim.charger_id} limited to {lim.limit_a:.1f} A",
                    subject=lim.charger_id,
                    reason=lim.reason.text,
                    data={"limit_a": lim.limit_a, "phases": lim.phases},
                )

    def _input(self, now: float) -> AllocationInput:
        return AllocationInput(
            site=self._site,
            now_s=now,
            sessions=tuple(self._sessions.values()),
            charger_states=tuple(self._states.values()),
            measurements=self._measurements(now),
            external_caps=tuple(
                c for c in self._caps.values() if c.until_s is None or c.until_s > now
            ),
            policy=self._policy,
            rotation=self._allocation.rotation if self._allocation else RotationState(),
        )

    def _measurements(self, now: float) -> tuple[NodeMeasurement, ...]:
        out = []
        for m in self._site.meters:
            r = self._readings.get(m.id)
            stale = r is None or now - r.t_s > m.timeout_s
            out.append(
                NodeMeasurement(
                    node_id=m.node_id,
                    current_a=None if r is None else r.current_a,
                    power_w=None if r is None else r.power_w,
                    stale=stale,
                    worst_case_line_a=m.fallback_line_a,
                    includes_ev_load=m.includes_ev_load,
                )
            )
        return tuple(out)

    def _event(
        self,
        kind: str,
        message: str,
        *,
        subject: str | None = None,
        reason: str = "",
        severity: Severity = Severity.INFO,
        data: Mapping[str, object] | None = None,
    ) -> None:
        self._store.add_event(
            EventRecord(
                t_s=self._clock.now_s(),
                kind=kind,
                message=message,
                subject=subject,
                reason=reason,
                severity=severity,
                data=dict(data or {}),
            )
        )


def _resumed(new: Session, stored: Session) -> Session:
    """``new`` (the charger's view) with what the store kept: declared inputs where the store
    has them, the earlier arrival, the larger energy delivered."""
    kept = {k: getattr(stored, k) for k in EDITABLE_SESSION_FIELDS
            if getattr(stored, k) is not None}
    return replace(
        new,
        **kept,
        arrival_s=min(new.arrival_s, stored.arrival_s),
        energy_delivered_wh=max(new.energy_delivered_wh, stored.energy_delivered_wh),
    )


def _describe(field_name: str, value: float | int | None) -> str:
    """An edit as a person reads it in the event list (the data keeps the raw values)."""
    if value is None:
        return f"cleared {field_name.removesuffix('_s').removesuffix('_wh').replace('_', ' ')}"
    if field_name == "departure_s":
        at = datetime.fromtimestamp(float(value), tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
        return f"departure {at}"
    if field_name == "energy_wanted_wh":
        return f"energy wanted {float(value) / 1000:.1f} kWh"
    return f"{field_name.replace('_', ' ')} {value}"


def _policy_to(p: Policy) -> dict[str, object]:
    return {
        "name": p.name.value,
        "rotation_interval_s": p.rotation_interval_s,
        "deadline_mode": p.deadline_mode,
    }


def _policy_from(raw: object) -> Policy | None:
    if not isinstance(raw, dict):
        return None
    return Policy(
        name=PolicyName(raw["name"]),
        rotation_interval_s=float(raw["rotation_interval_s"]),
        deadline_mode=str(raw["deadline_mode"]),
    )


def _cap_to(c: ExternalCap) -> dict[str, object]:
    return {
        "source": c.source,
        "node_id": c.node_id,
        "line_limit_a": list(c.line_limit_a) if c.line_limit_a else None,
        "max_power_w": c.max_power_w,
        "until_s": c.until_s,
    }


def _caps_from(raw: object) -> Sequence[ExternalCap]:
    if not isinstance(raw, list):
        return ()
    return [
        ExternalCap(
            source=r["source"],
            node_id=r["node_id"],
            line_limit_a=tuple(r["line_limit_a"]) if r["line_limit_a"] else None,
            max_power_w=r["max_power_w"],
            until_s=r["until_s"],
        )
        for r in raw
    ]


def _kw(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


def _rounded(b: BatteryStatus | None) -> tuple[object, ...] | None:
    """What the dashboard shows of a battery: kW and % to one decimal, the reason."""
    if b is None:
        return None
    kw = None if b.power_w is None else round(b.power_w / 1000, 1)
    soc = None if b.soc_pct is None else round(b.soc_pct, 1)
    return (kw, soc, round(b.command_w / 1000, 1), b.reason)
