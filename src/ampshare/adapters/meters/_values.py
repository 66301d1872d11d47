"""Quantities a meter reports and how raw values become a checked ``MeterReading``.

Every driver (Modbus, MQTT, P1) ends with a mapping ``Quantity -> float`` in base units
(A, V, W, Wh); ``reading_from_values`` turns it into a ``MeterReading`` and refuses values no
real meter produces (NaN, infinity, absurd magnitudes), because passing them on would let the
controller believe in headroom that is not there.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from enum import StrEnum

from ampshare.core.snapshot import MeterReading
from ampshare.errors import DeviceProtocolError

__all__ = ["LIMITS", "Quantity", "reading_from_values"]


class Quantity(StrEnum):
    """What one register, topic or OBIS line measures; the unit is fixed per quantity."""

    CURRENT_L1 = "current_l1"
    CURRENT_L2 = "current_l2"
    CURRENT_L3 = "current_l3"
    VOLTAGE_L1 = "voltage_l1"
    VOLTAGE_L2 = "voltage_l2"
    VOLTAGE_L3 = "voltage_l3"
    POWER = "power"
    POWER_L1 = "power_l1"
    POWER_L2 = "power_l2"
    POWER_L3 = "power_l3"
    ENERGY_IMPORT = "energy_import"

    @property
    def unit(self) -> str:
        """Base unit of this quantity after scaling: A, V, W or Wh."""
        return {"c": "A", "v": "V", "p": "W", "e": "Wh"}[self.value[0]]


# Plausibility bounds per base unit. A reading outside them is a decoding error (wrong map,
# wrong word order, a meter returning 0xFFFF filler), never a real building: the largest
# low-voltage services are a few thousand amperes.
LIMITS: Mapping[str, tuple[float, float]] = {
    "A": (-10_000.0, 10_000.0),
    "V": (0.0, 1_000.0),
    "W": (-20e6, 20e6),
    "Wh": (0.0, 1e13),
}

_CURRENTS = (Quantity.CURRENT_L1, Quantity.CURRENT_L2, Quantity.CURRENT_L3)
_VOLTAGES = (Quantity.VOLTAGE_L1, Quantity.VOLTAGE_L2, Quantity.VOLTAGE_L3)
_POWERS = (Quantity.POWER_L1, Quantity.POWER_L2, Quantity.POWER_L3)


def check_value(meter_id: str, quantity: Quantity, value: float) -> float:
    """Return ``value`` if plausible for ``quantity``; raise ``DeviceProtocolError`` otherwise."""
    lo, hi = LIMITS[quantity.unit]
    if not math.isfinite(value) or not lo <= value <= hi:
        raise DeviceProtocolError(
            f"meter {meter_id}: {quantity.value} = {value!r} {quantity.unit} is not plausible "
            f"(expected {lo:g}..{hi:g}); check the register map, word order and scale"
        )
    return value


def _per_line(
    values: Mapping[Quantity, float], names: tuple[Quantity, Quantity, Quantity], *, magnitude: bool
) -> tuple[float | None, float | None, float | None] | None:
    got = [values.get(q) for q in names]
    if all(v is None for v in got):
        return None
    # Some meters sign the current with the power direction; the core wants RMS magnitude.
    if magnitude:
        got = [None if v is None else abs(v) for v in got]
    return (got[0], got[1], got[2])


def reading_from_values(
    meter_id: str, t_s: float, values: Mapping[Quantity, float]
) -> MeterReading:
    """Build a ``MeterReading`` from base-unit values, checking each one.

    Raises ``DeviceProtocolError`` when a value is not plausible or nothing was measured.
    """
    if not values:
        raise DeviceProtocolError(f"meter {meter_id}: the answer held no usable value")
    for q, v in values.items():
        check_value(meter_id, q, v)
    return MeterReading(
        meter_id=meter_id,
        t_s=t_s,
        current_a=_per_line(values, _CURRENTS, magnitude=True),
        voltage_v=_per_line(values, _VOLTAGES, magnitude=False),
        power_per_line_w=_per_line(values, _POWERS, magnitude=False),
        power_w=values.get(Quantity.POWER),
        energy_wh=values.get(Quantity.ENERGY_IMPORT),
    )
