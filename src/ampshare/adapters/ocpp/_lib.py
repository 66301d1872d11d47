"""Typed facades over the untyped ``ocpp`` library, and its errors translated to ours.

Library facts this module encodes (verified against ocpp 2.1): ``call(..., suppress=False)``
is the only way a CallError reaches the caller (otherwise it silently becomes None); an
``@on`` handler must never await a call (it deadlocks until the response timeout, because the
response arrives through the very loop that is running the handler).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any, TypeVar, cast

from ocpp.exceptions import OCPPError
from ocpp.messages import CallError, unpack
from ocpp.routing import after as _after
from ocpp.routing import on as _on
from websockets.exceptions import ConnectionClosed

from ampshare.errors import DeviceProtocolError, DeviceUnavailable

__all__ = ["after", "call", "checked_status", "fast_call", "on", "parse_frame"]

F = TypeVar("F", bound=Callable[..., Any])


def on(action: str) -> Callable[[F], F]:
    """``ocpp.routing.on`` with a type: the handler must answer without awaiting a call."""
    return cast(Callable[[F], F], _on(action))


def after(action: str) -> Callable[[F], F]:
    """``ocpp.routing.after``: runs as a task once the response has been sent."""
    return cast(Callable[[F], F], _after(action))


async def call(cp: Any, payload: object, *, prevalidated: bool = False) -> Any:
    """Send one CALL and return its result; library and socket errors become ours.

    ``prevalidated``: the request was built from a typed spec whose output the tests check
    against the OCPP schema, so the library's (costly, thread-hopping) schema validation is
    skipped for it; its answer is then only trusted as far as the caller checks it.
    Raises ``DeviceProtocolError`` (with the OCPP error code first in the message) for a
    CallError or an answer of the wrong shape, ``DeviceUnavailable`` for a timeout or a
    closed connection.
    """
    try:
        return await cp.call(payload, suppress=False, skip_schema_validation=prevalidated)
    except OCPPError as e:
        raise DeviceProtocolError(f"{e.code}: {e.description}") from e
    except TypeError as e:  # unvalidated answer missing a field or carrying a strange one
        raise DeviceProtocolError(f"{cp.id}: malformed {type(payload).__name__} answer") from e
    except TimeoutError as e:
        raise DeviceUnavailable(f"{cp.id}: no answer to {type(payload).__name__}") from e
    except ConnectionClosed as e:
        raise DeviceUnavailable(f"{cp.id}: connection closed") from e


def parse_frame(raw: object) -> tuple[Any, str | None]:
    """``(message, None)`` for an OCPP-J frame, ``(None, why)`` for anything else."""
    try:
        return unpack(raw), None
    except OCPPError as e:
        cause = e.details.get("cause") if isinstance(e.details, dict) else None
        return None, f"{e.code}: {cause or e.description}"


def checked_status(cp_id: str, status: object, allowed: tuple[str, ...]) -> str:
    """A ``status`` from an answer that skipped schema validation, checked by hand."""
    if status not in allowed:
        raise DeviceProtocolError(f"{cp_id}: status {status!r} is not one of {allowed}")
    return str(status)


async def fast_call(cp: Any, action: str, payload: dict[str, Any]) -> dict[str, Any]:
    """One CALL of a payload we built and schema-checked in tests, on the library's own call
    lock and response queue, without its per-call dataclass and case conversions.

    The central system's hot path (a new limit to thousands of chargers) spends most of its
    CPU there. Relies on ``ocpp`` 2.1 internals (``_call_lock``, ``_get_specific_response``,
    ``_send``); the loopback tests exercise it on every run. Returns the answer's payload
    (camelCase keys); errors as in ``call``.
    """
    unique_id = str(uuid.uuid4())
    frame = json.dumps([2, unique_id, action, payload], separators=(",", ":"))
    try:
        async with cp._call_lock:
            await cp._send(frame)
            response = await cp._get_specific_response(unique_id, cp._response_timeout)
    except TimeoutError as e:
        raise DeviceUnavailable(f"{cp.id}: no answer to {action}") from e
    except ConnectionClosed as e:
        raise DeviceUnavailable(f"{cp.id}: connection closed") from e
    if isinstance(response, CallError):
        raise DeviceProtocolError(f"{response.error_code}: {response.error_description}")
    if not isinstance(response.payload, dict):
        raise DeviceProtocolError(f"{cp.id}: {action} answer is not an object")
    return response.payload
