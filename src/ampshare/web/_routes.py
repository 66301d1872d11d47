"""The ``/api/v1`` routes. Reads come from the runtime (live) and the store (history);
writes go through the runtime, which persists them before answering."""

from collections.abc import Callable, Mapping
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi import Path as FPath
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel

from ampshare.core.allocation import Policy, PolicyName
from ampshare.core.snapshot import ExternalCap
from ampshare.errors import InputError
from ampshare.store import SqlStore
from ampshare.web._export import sessions_csv
from ampshare.web._schemas import (
    CapIn,
    ChargerOut,
    EventOut,
    HistoryOut,
    MeterOut,
    PlanOut,
    PolicyIn,
    SessionEdit,
    SessionOut,
    SiteOut,
    charger_out,
    event_out,
    meter_out,
    plan_out,
    point_out,
    readiness_index,
    session_out,
    site_out,
)
from ampshare.web.auth import Role
from ampshare.web.runtime import SiteRuntime

__all__ = ["MAX_HISTORY_POINTS", "build_router"]

MAX_HISTORY_POINTS = 20_000


class ErrorOut(BaseModel):
    detail: str


def _doc(*codes: int) -> dict[int | str, dict[str, Any]]:
    text = {
        400: "Bad input",
        401: "Missing or unknown token",
        403: "Role too low",
        404: "No such item",
        409: "Not possible on this site as it runs",
        503: "Storage unavailable; nothing was changed",
    }
    return {c: {"model": ErrorOut, "description": text[c]} for c in codes}


def _field_error(loc: tuple[str, ...], msg: str) -> RequestValidationError:
    """A 422 shaped like pydantic's own, naming the field, for checks across fields."""
    return RequestValidationError([{"type": "value_error", "loc": loc, "msg": msg, "input": None}])


def _runtime(request: Request) -> SiteRuntime:
    rt: SiteRuntime = request.app.state.runtime
    return rt


def _store(request: Request) -> SqlStore:
    st: SqlStore = request.app.state.store
    return st


Runtime = Annotated[SiteRuntime, Depends(_runtime)]
Store = Annotated[SqlStore, Depends(_store)]


def _reject_unknown_query(request: Request) -> None:
    """``extra="forbid"`` for query strings: ``?activ=true`` is a typo to report, not ignore."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    # The OpenAPI document is the contract (and is cached by FastAPI after the first call).
    op = request.app.openapi()["paths"].get(route.path, {}).get(request.method.lower(), {})
    known = {p["name"] for p in op.get("parameters", ()) if p.get("in") == "query"} | {"token"}
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise RequestValidationError(
            [
                {
                    "type": "extra_forbidden",
                    "loc": ("query", name),
                    "msg": "unknown parameter",
                    "input": request.query_params.get(name),
                }
                for name in unknown
            ]
        )


# A year of a 100-charger garage at three sessions a day is about 110,000 rows.
_EXPORT_LIMIT = 200_000


def build_router(require: Mapping[Role, Callable[..., Role]]) -> APIRouter:
    """``require`` maps each role to the FastAPI dependency that enforces it."""
    r = APIRouter(
        prefix="/api/v1",
        responses=_doc(400, 401, 403, 503),
        dependencies=[Depends(_reject_unknown_query)],
    )
    read = [Depends(require[Role.READ])]
    admin = [Depends(require[Role.ADMIN])]
    reader = require[Role.READ]

    @r.get("/whoami", tags=["meta"])
    def whoami(role: Annotated[Role, Depends(reader)]) -> dict[str, str]:
        """The role of the token sent (read, driver or admin)."""
        return {"role": role.name.lower()}

    _reads(r, read)
    _sessions(r, read, require[Role.DRIVER])
    _admin(r, read, admin)
    return r


def _reads(r: APIRouter, read: list[Any]) -> None:
    @r.get("/site", dependencies=read, tags=["live"])
    def get_site(rt: Runtime) -> SiteOut:
        """The site tree with limit, building load, EV load and headroom per node and line."""
        return site_out(rt.view())

    @r.get("/chargers", dependencies=read, tags=["live"])
    def list_chargers(rt: Runtime) -> list[ChargerOut]:
        v = rt.view()
        index = readiness_index(v)
        return [charger_out(v, c.id, c, index) for c in v.site.chargers]

    @r.get("/chargers/{charger_id}", dependencies=read, tags=["live"], responses=_doc(404))
    def get_charger(charger_id: str, rt: Runtime) -> ChargerOut:
        v = rt.view()
        if charger_id not in {c.id for c in v.site.chargers}:
            raise HTTPException(404, f"no charger {charger_id!r}")
        return charger_out(v, charger_id)

    @r.get("/meters", dependencies=read, tags=["live"])
    def list_meters(rt: Runtime) -> list[MeterOut]:
        v = rt.view()
        return [meter_out(v, m.id) for m in v.site.meters]

    @r.get("/plan", dependencies=read, tags=["live"], responses=_doc(404))
    def get_plan(rt: Runtime) -> PlanOut:
        """The planner's latest plan: each plugged-in car's expected energy by its departure
        and whether it will not be ready. 404 while no planner runs (``planner.enabled``)."""
        p = rt.view().plan
        if p is None:
            raise HTTPException(404, "no plan: the planner is not enabled or has not run yet")
        return plan_out(p)

    @r.get("/events", dependencies=read, tags=["history"])
    def list_events(  # noqa: PLR0917 - FastAPI query parameters
        st: Store,
        since_s: Annotated[float | None, Query(ge=0, allow_inf_nan=False)] = None,
        until_s: Annotated[float | None, Query(ge=0, allow_inf_nan=False)] = None,
        kind: Annotated[str | None, Query(max_length=100)] = None,
        alerts_only: bool = False,
        open_only: bool = False,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        exclude_kind: Annotated[list[str] | None, Query(max_length=20)] = None,
    ) -> list[EventOut]:
        """Events and alerts with their reasons, newest first. ``exclude_kind`` (repeatable)
        leaves routine kinds out, e.g. ``charger_limit`` (every limit change of 1 A or more)."""
        evs = st.events(
            since_s=since_s,
            until_s=until_s,
            kind=kind,
            alerts_only=alerts_only,
            open_only=open_only,
            limit=limit,
            exclude_kinds=tuple(exclude_kind or ()),
        )
        return [event_out(e) for e in evs]

    @r.get("/history/series", dependencies=read, tags=["history"])
    def list_series(st: Store) -> list[str]:
        return list(st.series_names())

    @r.get("/history", dependencies=read, tags=["history"])
    def get_history(
        st: Store,
        series: Annotated[str, Query(min_length=1, max_length=300)],
        start_s: Annotated[float, Query(ge=0, allow_inf_nan=False)],
        end_s: Annotated[float, Query(ge=0, allow_inf_nan=False)],
        resolution_s: Annotated[float, Query(ge=1, le=86400 * 31, allow_inf_nan=False)] = 60.0,
    ) -> HistoryOut:
        """A series (``node:<id>:L1:other_a`` …) over [start_s, end_s) at ``resolution_s``."""
        if end_s <= start_s:
            raise _field_error(("query", "end_s"), "end_s must be after start_s")
        if (end_s - start_s) / resolution_s > MAX_HISTORY_POINTS:
            raise _field_error(
                ("query", "resolution_s"),
                f"more than {MAX_HISTORY_POINTS} points: raise resolution_s",
            )
        pts = st.history(series, start_s, end_s, resolution_s)
        return HistoryOut(
            series=series,
            start_s=start_s,
            end_s=end_s,
            resolution_s=resolution_s,
            points=[point_out(p) for p in pts],
        )


def _sessions(r: APIRouter, read: list[Any], driver: Callable[..., Role]) -> None:
    @r.get("/sessions", dependencies=read, tags=["sessions"])
    def list_sessions(
        rt: Runtime,
        st: Store,
        active: bool | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[SessionOut]:
        """Sessions, newest first; plugged-in ones carry live energy from the runtime."""
        live = {s.session_id: s for s in rt.view().sessions}
        out = []
        for rec in st.sessions(active=active, limit=limit):
            s = live.get(rec.session.session_id, rec.session)
            out.append(session_out(s, rec, active=rec.active))
        return out

    @r.get("/sessions/{session_id}", dependencies=read, tags=["sessions"], responses=_doc(404))
    def get_session(session_id: str, rt: Runtime, st: Store) -> SessionOut:
        rec = st.session(session_id)
        if rec is None:
            raise HTTPException(404, f"no session {session_id!r}")
        live = {s.session_id: s for s in rt.view().sessions}
        return session_out(live.get(session_id, rec.session), rec, active=rec.active)

    @r.patch("/sessions/{session_id}", tags=["sessions"], responses=_doc(404))
    def edit_session(
        session_id: str,
        body: SessionEdit,
        rt: Runtime,
        st: Store,
        role: Annotated[Role, Depends(driver)],
    ) -> SessionOut:
        """Set departure, energy wanted or priority. Drivers may set the first two; priority
        is the manager's (admin). Omitted fields stay as they are; ``null`` clears one."""
        changes = {k: getattr(body, k) for k in body.model_fields_set}
        if not changes:
            raise _field_error(("body",), "give departure_s, energy_wanted_wh and/or priority")
        if "priority" in changes and role < Role.ADMIN:
            raise HTTPException(403, "only an admin (the site manager) may set priority")
        by = "manager" if role >= Role.ADMIN else "driver"
        try:
            s = rt.edit_session(session_id, changes, by=by)
        except InputError as exc:
            raise HTTPException(404, str(exc)) from exc
        rec = st.session(session_id)
        return session_out(s, rec, active=True)


def _admin(r: APIRouter, read: list[Any], admin: list[Any]) -> None:
    @r.get(
        "/sessions.csv",
        dependencies=admin,
        tags=["admin"],
        response_class=Response,
        responses={200: {"content": {"text/csv": {}}, "description": "one row per session"}},
    )
    def export_sessions(
        rt: Runtime,
        st: Store,
        since_s: Annotated[float | None, Query(allow_inf_nan=False)] = None,
        until_s: Annotated[float | None, Query(allow_inf_nan=False)] = None,
        tz: Annotated[
            str, Query(max_length=64, pattern=r"^[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+){0,2}$")
        ] = "UTC",
    ) -> Response:
        """Sessions that arrived in ``[since_s, until_s)`` as CSV, for billing: charger, user,
        arrival and end (in ``tz``, an IANA zone), hours plugged in, kWh delivered. Admin
        only: it names users."""
        try:
            zone = ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise _field_error(
                ("query", "tz"), f"unknown time zone {tz!r}; use an IANA name such as Europe/Oslo"
            ) from None
        if since_s is not None and until_s is not None and until_s <= since_s:
            raise _field_error(("query", "until_s"), "until_s must be after since_s")
        view = rt.view()
        rows = st.sessions(since_s=since_s, until_s=until_s, limit=_EXPORT_LIMIT)
        text = sessions_csv(
            rows,
            view.site,
            live={s.session_id: s for s in view.sessions},
            now_s=view.now_s,
            tz=zone,
        )
        return Response(
            text,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="ampshare-sessions.csv"'},
        )

    @r.get("/policy", dependencies=read, tags=["admin"])
    def get_policy(rt: Runtime) -> PolicyIn:
        p = rt.view().policy
        return PolicyIn(
            name=p.name, rotation_interval_s=p.rotation_interval_s, deadline_mode=p.deadline_mode
        )

    @r.put("/policy", dependencies=admin, tags=["admin"], responses=_doc(409))
    def put_policy(body: PolicyIn, rt: Runtime) -> PolicyIn:
        """Set the sharing policy. ``planned`` needs the planner to be running (409 if not)."""
        if body.name is PolicyName.PLANNED and not rt.view().planner_on:
            raise HTTPException(
                409,
                "policy 'planned' follows the planner, which is not running on this site: set "
                "planner: {enabled: true} (or policy: {name: planned}) in the site file and "
                "restart `ampshare run`",
            )
        rt.set_policy(
            Policy(
                name=body.name,
                rotation_interval_s=body.rotation_interval_s,
                deadline_mode=body.deadline_mode,
            ),
            by="admin",
        )
        return body

    @r.get("/caps", dependencies=admin, tags=["admin"])
    def list_caps(rt: Runtime) -> list[CapIn]:
        return [
            CapIn(
                node_id=c.node_id,
                source=c.source,
                line_limit_a=c.line_limit_a,
                max_power_w=c.max_power_w,
                until_s=c.until_s,
            )
            for c in rt.view().external_caps
        ]

    @r.put("/caps", dependencies=admin, tags=["admin"], responses=_doc(404))
    def put_cap(body: CapIn, rt: Runtime) -> CapIn:
        """Limit a node (e.g. a grid operator's request); the tighter of cap and node wins."""
        if body.line_limit_a is None and body.max_power_w is None:
            raise _field_error(("body", "line_limit_a"), "give line_limit_a and/or max_power_w")
        try:
            rt.set_cap(
                ExternalCap(
                    source=body.source,
                    node_id=body.node_id,
                    line_limit_a=body.line_limit_a,
                    max_power_w=body.max_power_w,
                    until_s=body.until_s,
                ),
                by="admin",
            )
        except InputError as exc:
            raise HTTPException(404, str(exc)) from exc
        return body

    @r.delete(
        "/caps/{source}/{node_id}",
        dependencies=admin,
        tags=["admin"],
        status_code=204,
        responses=_doc(404),
    )
    def delete_cap(source: str, node_id: str, rt: Runtime) -> None:
        try:
            rt.clear_cap(source, node_id, by="admin")
        except InputError as exc:
            raise HTTPException(404, str(exc)) from exc

    @r.post("/alerts/{event_id}/resolve", dependencies=admin, tags=["admin"], responses=_doc(404))
    def resolve_alert(
        event_id: Annotated[int, FPath(ge=1, le=2**63 - 1)], st: Store, request: Request
    ) -> EventOut:
        try:
            return event_out(st.resolve_alert(event_id, request.app.state.clock.now_s()))
        except InputError as exc:
            raise HTTPException(404, str(exc)) from exc
