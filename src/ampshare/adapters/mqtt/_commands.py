"""Session commands arriving on MQTT: departure, energy wanted and priority of a charger's session.

Drivers know chargers, not session ids, so a command names the charger; the app applies it to
the session currently on that charger with ``apply_command``. Topics::

    <prefix>/charger/<id>/set/departure    ISO 8601 with offset ("2026-11-22T17:30+01:00")
                                           or seconds since the epoch; "" or "none" clears it
    <prefix>/charger/<id>/set/energy_kwh   kWh wanted in total this session; "" clears it
    <prefix>/charger/<id>/set/priority     integer tier, 0..9
    <prefix>/charger/<id>/set              JSON with any of the three keys above

A bad command raises ``InputError`` naming the topic and what would be valid; it never
changes anything.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from ampshare.core.snapshot import Session
from ampshare.errors import InputError

__all__ = ["CommandField", "SessionCommand", "apply_command", "parse_command"]

CommandField = Literal["departure", "energy_kwh", "priority"]
FIELDS: tuple[CommandField, ...] = ("departure", "energy_kwh", "priority")
MAX_ENERGY_KWH = 1000.0
MAX_PRIORITY = 9


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionCommand:
    """Set (or clear, ``value=None``) one field of the session on ``charger_id``.

    ``value`` is in the session's units: departure [s since epoch], energy [Wh], priority [tier].
    """

    charger_id: str
    field: CommandField
    value: float | None
    received_s: float


def _clears(text: str) -> bool:
    return text.strip().lower() in ("", "none", "null", "unknown")


def _departure(text: str, now_s: float, where: str) -> float | None:
    if _clears(text):
        return None
    try:
        t_s = float(text)
    except ValueError:
        try:
            when = datetime.fromisoformat(text.strip())
        except ValueError:
            raise InputError(f"{where}: {text!r} is not a time; send ISO 8601 with an offset "
                             "(2026-11-22T17:30+01:00) or seconds since the epoch") from None
        if when.tzinfo is None:
            raise InputError(
                f"{where}: {text!r} has no UTC offset; add one (+01:00 or Z)") from None
        t_s = when.timestamp()
    if not math.isfinite(t_s) or t_s <= now_s:
        raise InputError(f"{where}: departure {text!r} is not in the future")
    return t_s


def _number(text: str, where: str, lo: float, hi: float) -> float | None:
    if _clears(text):
        return None
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{where}: {text!r} is not a number") from None
    if not (math.isfinite(value) and lo <= value <= hi):
        raise InputError(f"{where}: {value:g} is outside {lo:g}..{hi:g}")
    return value


def _one(charger_id: str, field: str, text: str, now_s: float, where: str) -> SessionCommand:
    value: float | None
    name: CommandField
    if field == "departure":
        name = "departure"
        value = _departure(text, now_s, where)
    elif field == "energy_kwh":
        name = "energy_kwh"
        kwh = _number(text, where, 0.0, MAX_ENERGY_KWH)
        value = None if kwh is None else kwh * 1000.0
    elif field == "priority":
        name = "priority"
        value = _number(text, where, 0, MAX_PRIORITY)
        if value is not None and value != int(value):
            raise InputError(f"{where}: priority must be a whole number, not {value:g}")
    else:
        raise InputError(f"{where}: unknown field {field!r}; one of {', '.join(FIELDS)}")
    return SessionCommand(charger_id=charger_id, field=name, value=value, received_s=now_s)


def parse_command(prefix: str, topic: str, payload: bytes | str, now_s: float
                  ) -> list[SessionCommand]:
    """The commands in one message; raises ``InputError`` (and changes nothing) if any is bad."""
    text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
    base = f"{prefix}/charger/"
    if not topic.startswith(base):
        raise InputError(f"{topic}: not a command topic (expected {base}<charger>/set/...)")
    parts = topic[len(base):].split("/")
    if len(parts) == 3 and parts[1] == "set":
        return [_one(parts[0], parts[2], text, now_s, topic)]
    if len(parts) == 2 and parts[1] == "set":
        try:
            doc = json.loads(text)
        except (ValueError, RecursionError):
            raise InputError(f"{topic}: payload is not JSON") from None
        if not isinstance(doc, dict) or not doc:
            raise InputError(f"{topic}: send a JSON object with any of {', '.join(FIELDS)}")
        return [_one(parts[0], str(k), "" if v is None else str(v), now_s, f"{topic}.{k}")
                for k, v in doc.items()]
    raise InputError(f"{topic}: expected {base}<charger>/set/<field> or {base}<charger>/set")


def apply_command(session: Session, command: SessionCommand) -> Session:
    """``session`` with ``command`` applied (a new value; the old one is untouched)."""
    if command.field == "departure":
        return replace(session, departure_s=command.value)
    if command.field == "energy_kwh":
        return replace(session, energy_wanted_wh=command.value)
    return replace(session, priority=int(command.value or 0))
