"""The web layer: REST API under ``/api/v1`` (OpenAPI at ``/openapi.json``), server-sent live
updates at ``/api/v1/live``, Prometheus ``/metrics``, and the dashboard at ``/``.

``create_app(runtime, store, auth)`` builds the FastAPI app around a ``SiteRuntime`` (the live
read model with its write side) and a store; ``InMemoryRuntime`` is the runtime the supervisor
feeds and the tests fill.
"""

from __future__ import annotations

from ampshare.web.app import API_VERSION, create_app
from ampshare.web.auth import Role, TokenAuth, hash_token, new_token
from ampshare.web.recorder import record_once, run_recorder, samples_of
from ampshare.web.runtime import (
    Allocator,
    BatteryStatus,
    InMemoryRuntime,
    RuntimeView,
    SiteRuntime,
)

__all__ = [
    "API_VERSION",
    "Allocator",
    "BatteryStatus",
    "InMemoryRuntime",
    "Role",
    "RuntimeView",
    "SiteRuntime",
    "TokenAuth",
    "create_app",
    "hash_token",
    "new_token",
    "record_once",
    "run_recorder",
    "samples_of",
]
