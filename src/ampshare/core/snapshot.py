"""What is known about the site at one moment: meter readings, charger states, sessions.

These are the inputs of ``allocate`` and of the controller's decision step, and what the
adapters produce (a Modbus meter yields ``MeterReading``; an OCPP connection yields
``ChargerState``). All values are frozen; times are seconds since the epoch (``t_s``).
Per-line tuples are always (L1, L2, L3) in *site* line order; ``None`` means "not measured",
which the core treats pessimistically, never as zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "BatteryReading",
    "ChargerState",
    "ChargerStatus",
    "ExternalCap",
    "MeterReading",
    "Session",
]

PerLine = tuple[float | None, float | None, float | None]


@dataclass(frozen=True, slots=True, kw_only=True)
class MeterReading:
    """One sample of a meter: what flows through its node at ``t_s``.

    ``current_a`` per site line (RMS magnitude); ``power_w`` total active power (import
    positive); ``voltage_v`` per line to neutral; ``energy_wh`` the import register.
    """

    meter_id: str
    t_s: float
    current_a: PerLine | None = None
    power_w: float | None = None
    voltage_v: PerLine | None = None
    energy_wh: float | None = None
    power_per_line_w: PerLine | None = None

    def active_power_w(self) -> float | None:
        """The signed active power read (import positive): ``power_w``, else the lines'
        ``power_per_line_w`` added up; None when neither is there and finite (a current's
        magnitude cannot tell import from export)."""
        if self.power_w is not None and math.isfinite(self.power_w):
            return self.power_w
        lines = [p for p in self.power_per_line_w or () if p is not None]
        if lines and all(map(math.isfinite, lines)):
            return sum(lines)
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class BatteryReading:
    """One sample of a stationary battery: state of charge and the power it draws at ``t_s``
    (``power_w`` charge positive, discharge negative)."""

    battery_id: str
    t_s: float
    soc_pct: float
    power_w: float


class ChargerStatus(StrEnum):
    """Connector status as OCPP reports it (1.6 names, 2.0.1 mapped onto them)."""

    AVAILABLE = "Available"
    PREPARING = "Preparing"
    CHARGING = "Charging"
    SUSPENDED_EV = "SuspendedEV"
    SUSPENDED_EVSE = "SuspendedEVSE"
    FINISHING = "Finishing"
    RESERVED = "Reserved"
    UNAVAILABLE = "Unavailable"
    FAULTED = "Faulted"
    OFFLINE = "Offline"  # our own: no connection to the charger


@dataclass(frozen=True, slots=True, kw_only=True)
class ChargerState:
    """What the charger last told us.

    ``measured_current_a`` is per *site* line (the adapter applies the phase rotation);
    ``offered_current_a`` the current the charger offers the EV (pilot); ``online`` false when
    the link is down, in which case the last values are kept and ``t_s`` says how old they are.
    ``active_phases`` is how many phases the car currently draws on (1 or 3), if known.
    """

    charger_id: str
    t_s: float
    online: bool = True
    status: ChargerStatus = ChargerStatus.AVAILABLE
    measured_current_a: PerLine | None = None
    offered_current_a: float | None = None
    power_w: float | None = None
    energy_wh: float | None = None
    soc_pct: float | None = None
    active_phases: int | None = None
    installed_limit_a: float | None = None  # what the charger confirmed it applies now


@dataclass(frozen=True, slots=True, kw_only=True)
class Session:
    """A vehicle plugged into a charger, with what the driver (or manager) declared.

    ``departure_s`` and ``energy_wanted_wh`` are declarations (driver app, OCPP 2.0.1
    NotifyEVChargingNeeds, learned defaults) — never the true departure. ``priority`` is a tier,
    higher first (fleet 2 > staff 1 > visitors 0); ``weight`` scales the share within a tier.
    ``vehicle_max_current_a`` is the car's onboard limit per phase if known; ``vehicle_phases``
    how many phases the car can use (1 or 3) if known.
    """

    session_id: str
    charger_id: str
    arrival_s: float
    departure_s: float | None = None
    energy_wanted_wh: float | None = None
    energy_delivered_wh: float = 0.0
    priority: int = 0
    weight: float = 1.0
    vehicle_max_current_a: float | None = None
    vehicle_phases: int | None = None
    user_id: str | None = None

    @property
    def energy_needed_wh(self) -> float | None:
        """Energy still wanted, or None when the driver declared nothing."""
        if self.energy_wanted_wh is None:
            return None
        return max(0.0, self.energy_wanted_wh - self.energy_delivered_wh)


@dataclass(frozen=True, slots=True, kw_only=True)
class ExternalCap:
    """A limit imposed from outside (grid operator signal, OCPP NotifyChargingLimit, admin).

    Applies to ``node_id`` per line (``line_limit_a``) and/or in total power until ``until_s``
    (None: until withdrawn). The tighter of the node's own limit and the cap wins.
    """

    source: str
    node_id: str
    line_limit_a: tuple[float, float, float] | None = None
    max_power_w: float | None = None
    until_s: float | None = None
