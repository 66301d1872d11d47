"""``create_app(runtime, store, auth)``: the FastAPI application (API, live updates, metrics,
dashboard). One app per site; nothing global, so tests can run several side by side."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles

from ampshare.clock import Clock, SystemClock
from ampshare.errors import InputError, StoreError
from ampshare.store import SqlStore
from ampshare.web._metrics import metrics_text
from ampshare.web._routes import build_router
from ampshare.web._schemas import live_frame
from ampshare.web.auth import Role, TokenAuth
from ampshare.web.runtime import SiteRuntime

__all__ = ["API_VERSION", "create_app"]

API_VERSION = "1.0.0"
STATIC = Path(__file__).parent / "static"
_bearer = HTTPBearer(auto_error=False, description="a token with role read, driver or admin")


def _requirement(auth: TokenAuth, need: Role) -> Callable[..., Role]:
    def require(
        request: Request,
        cred: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Role:
        # EventSource cannot send headers, so the live stream also accepts ?token=.
        token = cred.credentials if cred else request.query_params.get("token")
        role = auth.role_of(token)
        if role is None:
            raise HTTPException(
                401,
                "missing or unknown token: send Authorization: Bearer <token>",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if role < need:
            raise HTTPException(403, f"this needs the {need.name.lower()} role")
        return role

    require.__name__ = f"require_{need.name.lower()}"
    return require


def _is_list(annotation: object) -> bool:
    """Whether a parameter's annotation takes several values (``list[str] | None`` and so on)."""
    origin = get_origin(annotation)
    if origin in (list, tuple, set, frozenset):
        return True
    return any(_is_list(a) for a in get_args(annotation))


def _query_params(dependant: Any) -> list[Any]:
    """The query parameters of a route's dependant and of its sub-dependencies."""
    out = list(dependant.query_params)
    for sub in dependant.dependencies:
        out += _query_params(sub)
    return out


def _given_once(request: Request) -> None:
    """A single-valued query parameter given more than once is refused (422), not silently
    taken at its last value: ``?kind=a&kind=b`` most likely meant a filter we do not have."""
    dependant = getattr(request.scope.get("route"), "dependant", None)
    if dependant is None:
        return
    errors = [
        {
            "type": "value_error",
            "loc": ("query", f.alias),
            "msg": f"{f.alias!r} was given {n} times; give it once",
            "input": request.query_params.getlist(f.alias),
        }
        for f in _query_params(dependant)
        if not _is_list(f.field_info.annotation)
        and (n := len(request.query_params.getlist(f.alias))) > 1
    ]
    if errors:
        raise RequestValidationError(errors)


def create_app(
    runtime: SiteRuntime,
    store: SqlStore,
    auth: TokenAuth,
    *,
    clock: Clock | None = None,
    live_poll_s: float = 0.25,
) -> FastAPI:
    """Build the app. ``live_poll_s`` is how often the live stream looks for a new state."""
    app = FastAPI(
        title="ampshare",
        version=API_VERSION,
        description="Dynamic load management of an EV charging site.",
    )
    app.state.runtime = runtime
    app.state.store = store
    app.state.clock = clock or SystemClock()
    require = {role: _requirement(auth, role) for role in Role}
    app.include_router(build_router(require), dependencies=[Depends(_given_once)])
    _add_live(app, runtime, require[Role.READ], live_poll_s)
    _add_errors(app)
    _add_dashboard(app)
    return app


def _add_live(
    app: FastAPI,
    runtime: SiteRuntime,
    read: Callable[..., Role],
    poll_s: float,
) -> None:
    @app.get("/api/v1/live", dependencies=[Depends(read)], include_in_schema=False)
    async def live(request: Request) -> StreamingResponse:
        """Server-sent events: one ``LiveFrame`` JSON per change (see ``GET /api/v1/site``)."""
        return StreamingResponse(
            _frames(request, runtime, poll_s),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store"},
        )

    @app.get("/metrics", dependencies=[Depends(read)], include_in_schema=False)
    def metrics() -> Response:
        body, ctype = metrics_text(runtime.view(), app.state.store)
        return Response(body, media_type=ctype)


async def _frames(request: Request, runtime: SiteRuntime, poll_s: float) -> AsyncIterator[str]:
    last_seq, idle_s = -1, 0.0
    while not await request.is_disconnected():
        v = runtime.view()
        if v.seq != last_seq:
            last_seq, idle_s = v.seq, 0.0
            yield f"id: {v.seq}\nevent: state\ndata: {live_frame(v).model_dump_json()}\n\n"
        elif idle_s >= 15.0:  # keeps proxies from closing a quiet stream
            idle_s = 0.0
            yield ": keep-alive\n\n"
        await asyncio.sleep(poll_s)
        idle_s += poll_s


def _add_errors(app: FastAPI) -> None:
    @app.exception_handler(InputError)
    async def bad_input(_: Request, exc: InputError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(StoreError)
    async def store_down(_: Request, exc: StoreError) -> JSONResponse:
        # The operation did not happen (the store is transactional): the client may retry.
        return JSONResponse({"detail": f"storage unavailable: {exc}"}, status_code=503)


def _add_dashboard(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/api/v1/version", tags=["meta"])
    def version() -> dict[str, str]:
        return {"api": API_VERSION, "openapi": "/openapi.json"}
