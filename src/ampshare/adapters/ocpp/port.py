"""The ``ChargerLink`` port: what the controller world sees of the chargers.

The controller reads a ``LinkSnapshot`` (charger states, sessions, per-charger hard caps)
and sends limit commands; it never sees OCPP. ``CentralSystem`` (real chargers over OCPP) and
``FakeChargerLink`` (tests, simulator) both implement it; ``check_charger_link`` in
``ampshare.adapters.ocpp.conformance`` runs the same checks against either.

Commands are taken structurally: a live limit is any object with ``charger_id``, ``limit_a``,
``phases``, ``power_w`` and ``lease_until_s`` (``LimitCommand``), a fallback any object with
``charger_id``, ``limit_a`` and ``phases`` (``FallbackCommand``), so ``ampshare.control``'s
``SetLimit``/``InstallFallback`` plug in as they are. ``SetLimit`` and ``InstallFallback``
below mirror them for callers without the control layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Protocol, runtime_checkable

from ampshare.core.snapshot import ChargerState, Session

__all__ = [
    "ChargerLink",
    "CommandOutcome",
    "FallbackCommand",
    "InstallFallback",
    "LimitCommand",
    "LinkSnapshot",
    "OutcomeStatus",
    "ProfilePurpose",
    "SetLimit",
]


class FallbackCommand(Protocol):
    """Anything that says "this is the charger's safe default": per-phase amperes, phases."""

    @property
    def charger_id(self) -> str: ...
    @property
    def limit_a(self) -> float: ...
    @property
    def phases(self) -> int: ...


class LimitCommand(Protocol):
    """Anything that says "limit this charger": per-phase amperes, phases, optional watts."""

    @property
    def charger_id(self) -> str: ...
    @property
    def limit_a(self) -> float: ...
    @property
    def phases(self) -> int: ...
    @property
    def power_w(self) -> float | None: ...
    @property
    def lease_until_s(self) -> float | None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class SetLimit:
    """A live limit: ``limit_a`` per phase on ``phases`` phases until ``lease_until_s``
    (seconds since the epoch; after it the charger falls back to its fallback profile)."""

    charger_id: str
    limit_a: float
    phases: int = 3
    power_w: float | None = None
    lease_until_s: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class InstallFallback:
    """The safe default a charger holds when ampshare is gone (TxDefaultProfile, EVSE 0)."""

    charger_id: str
    limit_a: float
    phases: int = 3
    power_w: float | None = None
    lease_until_s: float | None = None  # always None: a fallback never expires


class OutcomeStatus(StrEnum):
    ACCEPTED = "accepted"  # the charger confirmed it applies the limit
    REJECTED = "rejected"  # the charger refused every profile purpose we tried
    OFFLINE = "offline"  # no connection; remembered and sent on reconnect, fallback holds
    SUPERSEDED = "superseded"  # a newer command for the same charger replaced this one
    FAILED = "failed"  # timeout or CallError


class ProfilePurpose(StrEnum):
    TX = "TxProfile"
    TX_DEFAULT = "TxDefaultProfile"
    CHARGE_POINT_MAX = "ChargePointMaxProfile"


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandOutcome:
    """What became of one command: ``sent_limit`` in ``unit`` ("A" per phase or "W" total)
    after rounding to what the charger accepts, through ``purpose``."""

    charger_id: str
    status: OutcomeStatus
    t_s: float
    sent_limit: float | None = None
    unit: str = "A"
    purpose: ProfilePurpose | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status is OutcomeStatus.ACCEPTED


def _no_caps() -> Mapping[str, float]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkSnapshot:
    """Everything the chargers told us, as of ``t_s``.

    ``hard_caps_a`` maps charger id to a per-phase current cap imposed by the charger or a
    third party (OCPP 2.0.1 NotifyChargingLimit); the controller must stay under it.
    """

    t_s: float
    states: tuple[ChargerState, ...] = ()
    sessions: tuple[Session, ...] = ()
    hard_caps_a: Mapping[str, float] = field(default_factory=_no_caps)

    def state(self, charger_id: str) -> ChargerState | None:
        return next((s for s in self.states if s.charger_id == charger_id), None)

    def session(self, charger_id: str) -> Session | None:
        return next((s for s in self.sessions if s.charger_id == charger_id), None)


@runtime_checkable
class ChargerLink(Protocol):
    """The controller's connection to its chargers (OCPP, fake, simulator)."""

    def snapshot(self) -> LinkSnapshot:
        """Latest known states, sessions and caps (never blocks)."""
        ...

    async def wait_changed(self, timeout_s: float) -> bool:
        """Wait until something in the snapshot changed; False on timeout."""
        ...

    async def set_limit(self, cmd: LimitCommand) -> CommandOutcome:
        """Send a live, leased limit; returns once the charger confirmed or refused it."""
        ...

    async def install_fallback(self, cmd: FallbackCommand) -> CommandOutcome:
        """Install the safe default that holds when ampshare is gone."""
        ...
