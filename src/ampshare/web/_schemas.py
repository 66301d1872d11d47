"""API shapes (pydantic, ``extra="forbid"`` on input) and their construction from the runtime.

Times are seconds since the epoch (``*_s``), currents amperes per line in (L1, L2, L3) order,
``None`` where a value is unknown (never 0 in its place).
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

from pydantic import BaseModel, ConfigDict, Field

from ampshare.core.allocation import (
    ChargerLimit,
    NodeHeadroom,
    PolicyName,
    ReasonKind,
    site_import_kw,
)
from ampshare.core.site import Charger
from ampshare.core.snapshot import ChargerState, ChargerStatus, Session
from ampshare.store import EventRecord, SeriesPoint, SessionRecord
from ampshare.web._readiness import Readiness, ReadinessIndex, readiness, readiness_index
from ampshare.web.runtime import RuntimeView

if TYPE_CHECKING:  # the planner pulls in scipy; the web layer only reads its results
    from ampshare.core.planner import Plan

__all__ = [
    "Activity",
    "CapIn",
    "ChargerOut",
    "EventOut",
    "HistoryOut",
    "LiveFrame",
    "MeterOut",
    "NodeOut",
    "PlanOut",
    "PolicyIn",
    "Readiness",
    "ReadinessIndex",
    "SessionEdit",
    "SessionOut",
    "SessionPlanOut",
    "SiteOut",
    "activity",
    "charger_out",
    "live_frame",
    "meter_out",
    "plan_out",
    "readiness",
    "readiness_index",
    "session_out",
    "site_out",
]

# Limits and headroom use None for "no limit on this line" (JSON has no infinity).
Lines = tuple[float | None, float | None, float | None]
OptLines = tuple[float | None, float | None, float | None]
# Numbers in request bodies are strict: ``true`` is not 1 and ``"5"`` is not 5 (a client that
# sends either has a bug worth a 422 that names the field, not a silent coercion).
Amps = Annotated[float, Field(ge=0, le=100_000, allow_inf_nan=False, strict=True)]


def _fin(t: tuple[float, float, float]) -> Lines:
    return (_f(t[0]), _f(t[1]), _f(t[2]))


def _f(x: float) -> float | None:
    return x if math.isfinite(x) else None


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SessionEdit(_In):
    """A driver's or manager's declared inputs; omitted fields stay, ``null`` clears one."""

    departure_s: float | None = Field(
        default=None,
        ge=0,
        le=1e10,
        allow_inf_nan=False,
        strict=True,
        description="planned departure [s]",
    )
    energy_wanted_wh: float | None = Field(
        default=None, ge=0, le=1_000_000, allow_inf_nan=False, strict=True
    )
    priority: int | None = Field(
        default=None, ge=0, le=10, strict=True, description="tier, higher first"
    )


class PolicyIn(_In):
    name: PolicyName
    rotation_interval_s: float = Field(
        default=900.0, gt=0, le=86400, allow_inf_nan=False, strict=True
    )
    deadline_mode: str = Field(default="edf", pattern="^(edf|llf)$")


class CapIn(_In):
    """An admin limit on a node, per line and/or in total power, until ``until_s``."""

    node_id: str = Field(min_length=1, max_length=200)
    source: str = Field(default="admin", min_length=1, max_length=100)
    line_limit_a: tuple[Amps, Amps, Amps] | None = None
    max_power_w: float | None = Field(
        default=None, ge=0, le=1e9, allow_inf_nan=False, strict=True
    )
    until_s: float | None = Field(default=None, ge=0, allow_inf_nan=False, strict=True)


class HeadroomOut(BaseModel):
    limit_a: Lines
    other_load_a: Lines
    ev_load_a: Lines
    headroom_a: Lines
    measured: bool
    stale: bool


class NodeOut(BaseModel):
    id: str
    name: str
    kind: str
    parent_id: str | None
    line_limit_a: Lines
    margin_a: float
    headroom: HeadroomOut | None


class BatteryOut(BaseModel):
    """The stationary battery (site file ``battery:``) as last driven."""

    battery_id: str
    soc_pct: float | None = Field(description="state of charge; None: not read freshly")
    power_w: float | None = Field(description="charge positive; None: not read freshly")
    command_w: float = Field(description="the power it is asked for (charge positive)")
    reason: str = Field(description="why that power, in words")


class SiteOut(BaseModel):
    name: str
    voltage: str
    now_s: float
    policy: str
    allocated_s: float | None
    allocator_error: str | None
    nodes: list[NodeOut]
    held_peak_kw: float | None = Field(
        default=None,
        description="planned with a demand charge: site import the plan's peak holds live",
    )
    planner_on: bool = Field(
        default=False, description="a planner runs: policy 'planned' may be chosen"
    )
    import_kw: float | None = Field(
        default=None,
        description="site import now as the controller counts it: the root meter's non-EV "
        "load plus the current allocated to the chargers, less a battery's discharge the "
        "controller counts back as load (None: the root is not metered freshly)",
    )
    battery: BatteryOut | None = Field(default=None, description="None: no battery: section")
    pv_kw: float | None = Field(
        default=None, description="the PV meters' output now (None: none, or not fresh)"
    )


class SessionOut(BaseModel):
    session_id: str
    charger_id: str
    arrival_s: float
    departure_s: float | None
    energy_wanted_wh: float | None
    energy_delivered_wh: float
    priority: int
    active: bool
    ended_s: float | None = None
    edited_by: str | None = None
    user_id: str | None = Field(default=None, description="the driver, when the charger said")


class SessionPlanOut(BaseModel):
    """What the plan promises one plugged-in car by its (declared or assumed) departure."""

    session_id: str
    charger_id: str
    departure_s: float
    requested_wh: float | None
    expected_wh: float = Field(description="energy delivered so far + planned by departure")
    departure_in_horizon: bool
    will_not_be_ready: bool = Field(description="expected short of the request (> 1 %, 50 Wh)")


class PlanOut(BaseModel):
    """The planner's latest plan. ``status`` other than ``optimal`` (late or failed solve):
    the controller follows the ``deadline`` policy until the next plan."""

    status: str
    made_s: float
    end_s: float
    slot_s: float
    peak_kw: float
    sessions: list[SessionPlanOut]
    not_ready: list[str] = Field(description="ids of the sessions that will not be ready")


class Activity(StrEnum):
    """What a charger is doing, in one word a person can act on (derived from the charger's
    OCPP status, its limit and what it draws: a car held at 0 A is ``paused`` even while a
    charger still says ``Charging``)."""

    CHARGING = "charging"
    PAUSED = "paused"  # held below the car's minimum (0 A) by its limit
    CAR_NOT_DRAWING = "car_not_drawing"  # offered current, the car takes none (full?)
    STARTING = "starting"  # a car and a limit, no current yet (car or charger still waking)
    NO_CAR = "no_car"
    FAULTED = "faulted"
    OFFLINE = "offline"
    UNKNOWN = "unknown"  # nothing reported yet


class ChargerOut(BaseModel):
    id: str
    name: str
    node_id: str
    protocol: str
    connection: str
    min_current_a: float
    max_current_a: float
    status: str = Field(description="the charger's own (OCPP) status, Offline, or Unknown")
    activity: Activity
    online: bool
    limit_a: float | None
    phases: int | None
    reason: str | None
    reason_kind: str | None
    reason_node_id: str | None = Field(description="the circuit node that bound the limit")
    reason_line: str | None = Field(description="the line (L1, L2, L3) that bound it")
    reason_detail: str | None = Field(
        default=None, description="more on the reason, where there is more (e.g. why paused)"
    )
    measured_current_a: OptLines | None
    offered_current_a: float | None
    power_w: float | None
    soc_pct: float | None
    lease_until_s: float | None
    last_seen_s: float | None = Field(
        description="online: the last report; offline: since when it is offline"
    )
    noncompliant: bool = Field(
        default=False,
        description="drawing more than its limit (plus tolerance) for a while, until the "
        "controller finds it compliant again",
    )
    will_not_be_ready: bool | None = Field(
        default=None,
        description="the car will not get the energy wanted by its departure (more than 1 %, "
        "50 Wh short); None without a session, goal or departure. See readiness_from",
    )
    readiness_from: Readiness | None = Field(
        default=None,
        description="plan: the planner's plan says so; estimate (without a plan): at the "
        "current limit x phases x line-to-neutral voltage until the departure, for a car "
        "paused to take turns at its average share of the circuit that paused it",
    )
    session: SessionOut | None


class MeterOut(BaseModel):
    id: str
    node_id: str
    t_s: float | None
    age_s: float | None
    stale: bool
    timeout_s: float
    current_a: OptLines | None
    power_w: float | None
    voltage_v: OptLines | None
    energy_wh: float | None


class EventOut(BaseModel):
    event_id: int
    t_s: float
    kind: str
    severity: str
    subject: str | None
    message: str
    reason: str
    data: dict[str, object]
    resolved_s: float | None


class PointOut(BaseModel):
    t_s: float
    value: float
    min_value: float | None
    max_value: float | None
    n: int


class HistoryOut(BaseModel):
    series: str
    start_s: float
    end_s: float
    resolution_s: float
    points: list[PointOut]


class LiveFrame(BaseModel):
    seq: int
    site: SiteOut
    chargers: list[ChargerOut]
    meters: list[MeterOut]


def _headroom(h: NodeHeadroom | None) -> HeadroomOut | None:
    if h is None:
        return None
    return HeadroomOut(
        limit_a=_fin(h.limit_a),
        other_load_a=_fin(h.other_load_a),
        ev_load_a=_fin(h.ev_load_a),
        headroom_a=_fin(h.headroom_a),
        measured=h.measured,
        stale=h.stale,
    )


def site_out(v: RuntimeView) -> SiteOut:
    rooms = {h.node_id: h for h in v.headroom}
    nodes = [
        NodeOut(
            id=n.id,
            name=n.name or n.id,
            kind=n.kind.value,
            parent_id=n.parent_id,
            line_limit_a=_fin(n.line_limit_a),
            margin_a=n.margin_a,
            headroom=_headroom(rooms.get(n.id)),
        )
        for n in v.site.nodes
    ]
    return SiteOut(
        name=v.site.name,
        voltage=v.site.voltage.value,
        now_s=v.now_s,
        policy=v.policy.name.value,
        allocated_s=v.allocated_s,
        allocator_error=v.allocator_error,
        nodes=nodes,
        held_peak_kw=v.held_peak_kw if v.policy.name is PolicyName.PLANNED else None,
        import_kw=_import_kw(v),
        planner_on=v.planner_on,
        battery=None
        if v.battery is None
        else BatteryOut(
            battery_id=v.battery.battery_id,
            soc_pct=v.battery.soc_pct,
            power_w=v.battery.power_w,
            command_w=v.battery.command_w,
            reason=v.battery.reason,
        ),
        pv_kw=v.pv_kw,
    )


def _import_kw(v: RuntimeView) -> float | None:
    kw = site_import_kw(v.site, v.headroom)
    if kw is None or v.battery is None:
        return kw
    return kw - v.battery.credit_w / 1000.0


def session_out(s: Session, rec: SessionRecord | None = None, *, active: bool = True) -> SessionOut:
    return SessionOut(
        session_id=s.session_id,
        charger_id=s.charger_id,
        arrival_s=s.arrival_s,
        departure_s=s.departure_s,
        energy_wanted_wh=s.energy_wanted_wh,
        energy_delivered_wh=s.energy_delivered_wh,
        priority=s.priority,
        active=active,
        ended_s=rec.ended_s if rec else None,
        edited_by=rec.edited_by if rec else None,
        user_id=s.user_id,
    )


def plan_out(p: Plan) -> PlanOut:
    return PlanOut(
        status=p.status.value,
        made_s=p.start_s,
        end_s=p.end_s,
        slot_s=p.slot_s,
        peak_kw=round(p.peak_kw, 3),
        sessions=[
            SessionPlanOut(
                session_id=sp.session_id,
                charger_id=sp.charger_id,
                departure_s=sp.departure_s,
                requested_wh=sp.requested_wh,
                expected_wh=round(sp.expected_wh, 1),
                departure_in_horizon=sp.departure_in_horizon,
                will_not_be_ready=sp.will_not_be_ready,
            )
            for sp in p.sessions
        ],
        not_ready=[sp.session_id for sp in p.warnings],
    )


_DRAWING_A = 0.5  # more than this on any line is a car charging


def activity(c: Charger, st: ChargerState | None, lim: ChargerLimit | None,
             sess: Session | None) -> Activity:
    """One word for what ``c`` is doing (see ``Activity``)."""
    if st is None:
        return Activity.UNKNOWN
    if not st.online:
        return Activity.OFFLINE
    if st.status is ChargerStatus.FAULTED:
        return Activity.FAULTED
    drawing = max((x or 0.0 for x in st.measured_current_a or ()), default=0.0) > _DRAWING_A
    if sess is None:
        return Activity.CHARGING if drawing else Activity.NO_CAR
    if lim is not None and lim.reason.kind is ReasonKind.CAR_FULL and not drawing:
        return Activity.CAR_NOT_DRAWING  # paused because the car takes nothing: not waiting
    if lim is not None and lim.limit_a < c.min_current_a - 1e-9:
        return Activity.PAUSED
    if drawing:
        return Activity.CHARGING
    if st.status is ChargerStatus.SUSPENDED_EV:
        return Activity.CAR_NOT_DRAWING
    return Activity.STARTING


def charger_out(
    v: RuntimeView,
    charger_id: str,
    c: Charger | None = None,
    index: ReadinessIndex | None = None,
) -> ChargerOut:
    """One charger as the API shows it; ``index`` from ``readiness_index`` (built if omitted)."""
    c = c or v.site.charger(charger_id)
    st = v.charger_states.get(charger_id)
    lim = v.limit(charger_id)
    sess = v.session_at(charger_id)
    status = "Unknown" if st is None else ("Offline" if not st.online else st.status.value)
    late, late_from = readiness(v, lim, sess, index or readiness_index(v))
    return ChargerOut(
        id=c.id,
        name=c.name or c.id,
        node_id=c.node_id,
        protocol=c.protocol,
        connection=c.connection.value,
        min_current_a=c.min_current_a,
        max_current_a=c.max_current_a,
        status=status,
        activity=activity(c, st, lim, sess),
        online=bool(st and st.online),
        limit_a=lim.limit_a if lim else None,
        phases=lim.phases if lim else None,
        reason=lim.reason.text if lim else None,
        reason_kind=lim.reason.kind.value if lim else None,
        reason_node_id=lim.reason.node_id if lim else None,
        reason_line=lim.reason.line.value if lim and lim.reason.line else None,
        reason_detail=(lim.reason.detail or None) if lim else None,
        measured_current_a=st.measured_current_a if st else None,
        offered_current_a=st.offered_current_a if st else None,
        power_w=st.power_w if st else None,
        soc_pct=st.soc_pct if st else None,
        lease_until_s=v.leases_until_s.get(charger_id),
        last_seen_s=st.t_s if st else None,
        noncompliant=charger_id in v.noncompliant,
        will_not_be_ready=late,
        readiness_from=late_from,
        session=session_out(sess) if sess else None,
    )


def meter_out(v: RuntimeView, meter_id: str) -> MeterOut:
    m = next(m for m in v.site.meters if m.id == meter_id)
    r = v.meter_readings.get(meter_id)
    age = None if r is None else max(0.0, v.now_s - r.t_s)
    return MeterOut(
        id=m.id,
        node_id=m.node_id,
        t_s=r.t_s if r else None,
        age_s=age,
        stale=age is None or age > m.timeout_s,
        timeout_s=m.timeout_s,
        current_a=r.current_a if r else None,
        power_w=r.power_w if r else None,
        voltage_v=r.voltage_v if r else None,
        energy_wh=r.energy_wh if r else None,
    )


def event_out(e: EventRecord) -> EventOut:
    return EventOut(
        event_id=e.event_id,
        t_s=e.t_s,
        kind=e.kind,
        severity=e.severity.value,
        subject=e.subject,
        message=e.message,
        reason=e.reason,
        data=dict(e.data),
        resolved_s=e.resolved_s,
    )


def point_out(p: SeriesPoint) -> PointOut:
    return PointOut(t_s=p.t_s, value=p.value, min_value=p.min_value, max_value=p.max_value, n=p.n)


def live_frame(v: RuntimeView) -> LiveFrame:
    index = readiness_index(v)
    return LiveFrame(
        seq=v.seq,
        site=site_out(v),
        chargers=[charger_out(v, c.id, c, index) for c in v.site.chargers],
        meters=[meter_out(v, m.id) for m in v.site.meters],
    )
