"""SunSpec meter models 201-204, found by walking the device's model chain.

A SunSpec device starts with the marker "SunS" (0x5375 0x6E53) at one of the well-known base
addresses, followed by models as (ID, length, data...) until ID 0xFFFF. Meter models are
201 (single phase), 202 (split phase), 203 (three-phase wye) and 204 (three-phase delta), all
with the same integer-plus-scale-factor layout (offsets from the model's ID register below).

The offsets come from the SunSpec Information Model tables for models 20x as remembered
(A=2, AphA..C=3..5, A_SF=6, PhVphA..C=8..10, V_SF=15, W=18, WphA..C=19..21, W_SF=22,
TotWhImp=46 as acc32, TotWh_SF=54); they match the model 203 layout used by open-source
projects (pysunspec2, evcc), but were not checked against a physical meter here. The sign of W
in SunSpec meters is import-positive as we read the spec; a meter mounted the other way shows
negative power, which the controller's current-based path does not depend on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from ampshare.adapters.meters._registers import DataType, RegisterMap, RegisterSpec
from ampshare.adapters.meters._values import Quantity
from ampshare.errors import DeviceProtocolError

__all__ = ["SUNSPEC_BASES", "SUNSPEC_MARKER", "discover_sunspec", "sunspec_map"]

SUNSPEC_MARKER = (0x5375, 0x6E53)  # "SunS"
SUNSPEC_BASES = (40000, 0, 50000)
METER_MODELS = (201, 202, 203, 204)
MODEL_LENGTH = 105
END_ID = 0xFFFF
_MAX_MODELS = 64  # a real chain has a handful; stop a looping or corrupt chain

Q = Quantity
_I16_NA = 0x8000
_CURRENTS = (Q.CURRENT_L1, Q.CURRENT_L2, Q.CURRENT_L3)
_VOLTAGES = (Q.VOLTAGE_L1, Q.VOLTAGE_L2, Q.VOLTAGE_L3)
_POWERS = (Q.POWER_L1, Q.POWER_L2, Q.POWER_L3)

ReadRegisters = Callable[[int, int], Awaitable[Sequence[int]]]


def _i16(q: Quantity, addr: int, sf: int) -> RegisterSpec:
    return RegisterSpec(quantity=q, address=addr, dtype=DataType.I16, sf_address=sf,
                        not_implemented=_I16_NA, unit=q.unit)


def sunspec_map(model_start: int, model_id: int) -> RegisterMap:
    """The register map of meter model ``model_id`` whose ID register is at ``model_start``."""
    if model_id not in METER_MODELS:
        raise ValueError(f"SunSpec model {model_id} is not a meter model (201-204)")
    lines = {201: 1, 202: 2, 203: 3, 204: 3}[model_id]
    s = model_start
    specs: list[RegisterSpec] = [_i16(_CURRENTS[i], s + 3 + i, s + 6) for i in range(lines)]
    if model_id != 204:  # a delta meter has no neutral, so no line-to-neutral voltages
        specs += [_i16(_VOLTAGES[i], s + 8 + i, s + 15) for i in range(lines)]
    specs.append(_i16(Q.POWER, s + 18, s + 22))
    specs += [_i16(_POWERS[i], s + 19 + i, s + 22) for i in range(lines)]
    specs.append(RegisterSpec(quantity=Q.ENERGY_IMPORT, address=s + 46, dtype=DataType.U32,
                              sf_address=s + 54, unit="Wh"))
    return RegisterMap(model=f"sunspec-{model_id}", function="holding", word_order="big",
                       registers=tuple(specs), description=f"SunSpec meter model {model_id}")


async def discover_sunspec(
    read: ReadRegisters, bases: Sequence[int] = SUNSPEC_BASES
) -> RegisterMap:
    """Find the first meter model on a SunSpec device via ``read(address, count)``.

    ``read`` raises ``DeviceProtocolError`` for an exception reply (an address the device does
    not have) and ``DeviceUnavailable`` when it gets no answer; the latter propagates.
    """
    for base in bases:
        try:
            marker = tuple(await read(base, 2))
        except DeviceProtocolError:
            continue
        if marker == SUNSPEC_MARKER:
            return await _walk(read, base + 2)
    raise DeviceProtocolError(
        f"no SunSpec marker 'SunS' at any of {list(bases)}; is this a SunSpec device?"
    )


async def _walk(read: ReadRegisters, addr: int) -> RegisterMap:
    for _ in range(_MAX_MODELS):
        model_id, length = (await read(addr, 2))[:2]
        if model_id == END_ID:
            break
        if model_id in METER_MODELS:
            return sunspec_map(addr, model_id)
        addr += 2 + length
    raise DeviceProtocolError("SunSpec device has no meter model (201-204)")
