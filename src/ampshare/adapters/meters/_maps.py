"""Register maps of the meters installers put in panels, written from the manufacturers' tables.

Addresses are 0-based protocol addresses. Each map carries a confidence note: where the table
was written from memory of the published documentation rather than checked against a device,
it says so, and a site can always override a map with its own (``model: custom``).

* Eastron SDM630 (Modbus protocol v1.x/v2): input registers, float32, high word first.
  Phase voltages 0x00-0x04, currents 0x06-0x0A, phase powers 0x0C-0x10, total power 0x34,
  import energy 0x48 (kWh). Well known and widely used; high confidence.
* Eastron SDM72D-M (v2): the same addresses for the values it has. The v1 SDM72D (without
  "-M v2") only has totals; its per-line registers then answer with an exception, which the
  driver reports as a protocol error. Medium confidence for the per-line registers.
* Carlo Gavazzi EM24 and EM340: INT32 with the least significant word first, V x10,
  A x1000, W x10, kWh x10; V L-N at 0x00, A at 0x0C, W per line at 0x12, W sys at 0x28,
  kWh(+) total at 0x34. Both answer FC 3 and FC 4. High confidence for V/A/W; the energy
  register is that of current EM24-DIN / EM24 E1 and EM340 firmware (EM24 units of ~2012 and
  earlier have an older table with kWh(+) elsewhere: override with ``model: custom``).
* ABB B23/B24: holding registers, big-endian words; voltages 0x5B00 (u32, 0.1 V), currents
  0x5B0C (u32, 0.01 A), total power 0x5B14 and per line 0x5B16.. (i32, 0.01 W), import energy
  0x5000 (u64, 0.01 kWh). Medium-high confidence (from ABB's "B-series Modbus" manual).
* Janitza UMG 604: holding registers, float32 big-endian, the "frequently used values" block
  at 19000 (U L-N 19000.., I 19012.., P per line 19020.., P sum 19026, real energy L1..L3
  consumed 19068 in Wh; 19060 is the net counter and 19062/64/66 are the consumed energy of
  L1/L2/L3 alone). High confidence: the same list as the UMG 104/96RM family.
* SunSpec 201-204: see ``_sunspec.py`` (discovered, not fixed addresses).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from ampshare.adapters.meters._registers import DataType, RegisterMap, RegisterSpec
from ampshare.adapters.meters._values import Quantity

__all__ = ["BUILTIN_MAPS"]

Q = Quantity
_LINES = ((Q.CURRENT_L1, Q.VOLTAGE_L1, Q.POWER_L1), (Q.CURRENT_L2, Q.VOLTAGE_L2, Q.POWER_L2),
          (Q.CURRENT_L3, Q.VOLTAGE_L3, Q.POWER_L3))


def _per_line(
    quantity_index: int, first: int, step: int, dtype: DataType, scale: float
) -> tuple[RegisterSpec, ...]:
    """Three specs (L1, L2, L3) at ``first``, ``first+step``, ``first+2*step``."""
    return tuple(
        RegisterSpec(quantity=line[quantity_index], address=first + i * step, dtype=dtype,
                     scale=scale, unit=line[quantity_index].unit)
        for i, line in enumerate(_LINES)
    )


_I, _V, _P = 0, 1, 2


def _eastron(model: str, description: str) -> RegisterMap:
    f = DataType.F32
    return RegisterMap(
        model=model, function="input", word_order="big", description=description,
        registers=(
            *_per_line(_V, 0x00, 2, f, 1.0),
            *_per_line(_I, 0x06, 2, f, 1.0),
            *_per_line(_P, 0x0C, 2, f, 1.0),
            RegisterSpec(quantity=Q.POWER, address=0x34, dtype=f, unit="W"),
            RegisterSpec(quantity=Q.ENERGY_IMPORT, address=0x48, dtype=f, scale=1000.0,
                         unit="Wh"),
        ),
    )


def _gavazzi(model: str, description: str) -> RegisterMap:
    i32 = DataType.I32
    return RegisterMap(
        model=model, function="input", word_order="little", description=description,
        registers=(
            *_per_line(_V, 0x00, 2, i32, 0.1),
            *_per_line(_I, 0x0C, 2, i32, 0.001),
            *_per_line(_P, 0x12, 2, i32, 0.1),
            RegisterSpec(quantity=Q.POWER, address=0x28, dtype=i32, scale=0.1, unit="W"),
            RegisterSpec(quantity=Q.ENERGY_IMPORT, address=0x34, dtype=i32, scale=100.0,
                         unit="Wh"),
        ),
    )


def _abb(model: str, description: str) -> RegisterMap:
    return RegisterMap(
        model=model, function="holding", word_order="big", description=description,
        registers=(
            *_per_line(_V, 0x5B00, 2, DataType.U32, 0.1),
            *_per_line(_I, 0x5B0C, 2, DataType.U32, 0.01),
            RegisterSpec(quantity=Q.POWER, address=0x5B14, dtype=DataType.I32, scale=0.01,
                         unit="W"),
            *_per_line(_P, 0x5B16, 2, DataType.I32, 0.01),
            RegisterSpec(quantity=Q.ENERGY_IMPORT, address=0x5000, dtype=DataType.U64,
                         scale=10.0, unit="Wh"),
        ),
    )


def _janitza() -> RegisterMap:
    f = DataType.F32
    return RegisterMap(
        model="umg604", function="holding", word_order="big",
        description="Janitza UMG 604 (frequently-used-values block at 19000)",
        registers=(
            *_per_line(_V, 19000, 2, f, 1.0),
            *_per_line(_I, 19012, 2, f, 1.0),
            *_per_line(_P, 19020, 2, f, 1.0),
            RegisterSpec(quantity=Q.POWER, address=19026, dtype=f, unit="W"),
            RegisterSpec(quantity=Q.ENERGY_IMPORT, address=19068, dtype=f, unit="Wh"),
        ),
    )


BUILTIN_MAPS: Mapping[str, RegisterMap] = MappingProxyType({
    "sdm630": _eastron("sdm630", "Eastron SDM630 three-phase meter"),
    "sdm72d-m": _eastron("sdm72d-m", "Eastron SDM72D-M v2 three-phase meter"),
    "em24": _gavazzi("em24", "Carlo Gavazzi EM24-DIN"),
    "em340": _gavazzi("em340", "Carlo Gavazzi EM340"),
    "b23": _abb("b23", "ABB B23 three-phase meter"),
    "b24": _abb("b24", "ABB B24 three-phase meter"),
    "umg604": _janitza(),
})
"""Fixed-address maps by model name (``sunspec`` is discovered at run time instead)."""
