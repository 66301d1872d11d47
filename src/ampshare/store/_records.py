"""What the store keeps, as frozen values (units in the names, times in s since the epoch)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from ampshare.core.snapshot import Session

__all__ = [
    "ChargerRecord",
    "EventRecord",
    "InstalledProfile",
    "SeriesPoint",
    "SessionRecord",
    "Severity",
]


def _empty() -> Mapping[str, object]:
    return MappingProxyType({})


class Severity(StrEnum):
    """``info`` is a plain event; ``warning`` and ``critical`` are alerts until resolved."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(frozen=True, slots=True, kw_only=True)
class ChargerRecord:
    """The last known facts about a charger (survives restarts; live values live in the runtime)."""

    charger_id: str
    protocol: str = ""
    status: str = "Unknown"
    last_seen_s: float | None = None
    vendor: str = ""
    model: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionRecord:
    """A session as stored: the core ``Session`` plus bookkeeping.

    ``ended_s`` is None while the car is plugged in. ``edited_by`` names who last changed the
    declared inputs (``driver``, ``manager``, ``ocpp``) and ``edited_s`` when.
    """

    session: Session
    ended_s: float | None = None
    edited_by: str | None = None
    edited_s: float | None = None

    @property
    def active(self) -> bool:
        return self.ended_s is None


@dataclass(frozen=True, slots=True, kw_only=True)
class EventRecord:
    """Something that happened, with why. ``event_id`` is assigned by the store (0 before).

    ``subject`` is the charger, node or meter id it is about; ``reason`` the machine-readable
    cause (for limits the ``Reason.text``); alerts (severity above ``info``) stay open until
    ``resolved_s`` is set.
    """

    t_s: float
    kind: str
    message: str
    severity: Severity = Severity.INFO
    subject: str | None = None
    reason: str = ""
    data: Mapping[str, object] = field(default_factory=_empty)
    event_id: int = 0
    resolved_s: float | None = None

    @property
    def is_alert(self) -> bool:
        return self.severity is not Severity.INFO


@dataclass(frozen=True, slots=True, kw_only=True)
class InstalledProfile:
    """A charging profile a charger confirmed, so that a restart knows what each one holds.

    ``purpose`` is ``tx`` (the live limit, a lease until ``lease_until_s``) or ``fallback``
    (TxDefaultProfile on connector/EVSE 0, no lease).
    """

    charger_id: str
    purpose: str
    limit_a: float
    installed_s: float
    evse_id: int = 0
    phases: int = 3
    lease_until_s: float | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class SeriesPoint:
    """One value of a time series at ``t_s``, or a bucket of ``n`` samples starting at ``t_s``.

    ``series`` names the quantity, e.g. ``node:main:L1:total_a``. ``min_value``/``max_value``
    equal ``value`` for a raw sample.
    """

    series: str
    t_s: float
    value: float
    min_value: float | None = None
    max_value: float | None = None
    n: int = 1
