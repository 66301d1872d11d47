"""Charging profiles as data: one ``ProfileSpec`` rendered for OCPP 1.6 or 2.0.1 (pure).

Profile ids are fixed per purpose so that each new limit *replaces* the previous profile on the
charger instead of piling up (OCPP replaces a profile with the same id, or the same purpose
and stack level). The fallback (TxDefaultProfile on connector/EVSE 0 at stack level 0) never
expires; live limits are leases: an absolute schedule whose duration ends at the lease, after
which the charger drops back to the fallback on its own. Payloads are built in wire form
(camelCase), ready for ``_lib.fast_call``; the property tests check them against the schemas.
"""

from __future__ import annotations

from dataclasses import dataclass

from ampshare.adapters.ocpp._units import format_time
from ampshare.adapters.ocpp.port import ProfilePurpose

__all__ = ["PROFILE_IDS", "ProfileSpec", "profile_v16", "profile_v201"]

PROFILE_IDS = {
    "fallback": 100,
    ProfilePurpose.TX: 101,
    ProfilePurpose.TX_DEFAULT: 102,
    ProfilePurpose.CHARGE_POINT_MAX: 103,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class ProfileSpec:
    """One SetChargingProfile: ``limit`` in ``unit`` ("A" per phase, "W" total)."""

    purpose: ProfilePurpose
    connector_id: int
    profile_id: int
    stack_level: int
    limit: float
    unit: str
    phases: int | None = None
    transaction_id: int | str | None = None
    start_s: float | None = None  # None: relative (holds for any transaction, no expiry)
    duration_s: int | None = None


def _limit_value(spec: ProfileSpec) -> float:
    # The 1.6 schema wants multipleOf 0.1; watts are sent whole.
    return float(round(spec.limit)) if spec.unit == "W" else round(spec.limit, 1)


def _schedule(spec: ProfileSpec) -> dict[str, object]:
    period: dict[str, object] = {"startPeriod": 0, "limit": _limit_value(spec)}
    if spec.phases is not None:
        period["numberPhases"] = spec.phases
    sched: dict[str, object] = {"chargingRateUnit": spec.unit,
                                "chargingSchedulePeriod": [period]}
    if spec.start_s is not None:
        sched["startSchedule"] = format_time(spec.start_s)
    if spec.duration_s is not None:
        sched["duration"] = spec.duration_s
    return sched


def _kind(spec: ProfileSpec) -> str:
    return "Relative" if spec.start_s is None else "Absolute"


def profile_v16(spec: ProfileSpec) -> dict[str, object]:
    """``csChargingProfiles`` of a 1.6 SetChargingProfile, as sent (camelCase keys)."""
    prof: dict[str, object] = {
        "chargingProfileId": spec.profile_id,
        "stackLevel": spec.stack_level,
        "chargingProfilePurpose": spec.purpose.value,
        "chargingProfileKind": _kind(spec),
        "chargingSchedule": _schedule(spec),
    }
    if spec.transaction_id is not None:
        prof["transactionId"] = int(spec.transaction_id)
    return prof


_V201_PURPOSE = {
    ProfilePurpose.TX: "TxProfile",
    ProfilePurpose.TX_DEFAULT: "TxDefaultProfile",
    ProfilePurpose.CHARGE_POINT_MAX: "ChargingStationMaxProfile",
}


def profile_v201(spec: ProfileSpec) -> dict[str, object]:
    """``chargingProfile`` of a 2.0.1 SetChargingProfile, as sent (camelCase keys)."""
    sched = _schedule(spec)
    sched["id"] = spec.profile_id
    prof: dict[str, object] = {
        "id": spec.profile_id,
        "stackLevel": spec.stack_level,
        "chargingProfilePurpose": _V201_PURPOSE[spec.purpose],
        "chargingProfileKind": _kind(spec),
        "chargingSchedule": [sched],
    }
    if spec.transaction_id is not None:
        prof["transactionId"] = str(spec.transaction_id)
    return prof
