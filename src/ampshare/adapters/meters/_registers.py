"""Register maps as data: which register holds what, in which type, word order and scale.

A ``RegisterMap`` is a table of frozen ``RegisterSpec`` rows; the Modbus driver reads the
blocks the map needs and decodes them with ``decode_map``. The same table encodes values back
into registers (``encode_map``) for the simulator server, so a map is tested against itself
*and* against the register values a manufacturer documents.

Word order: ``big`` means the most significant 16-bit word comes first (Eastron, ABB,
Janitza, SunSpec); ``little`` means the least significant word first (Carlo Gavazzi).
Byte order inside a word is always big-endian, as Modbus defines it.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from ampshare.adapters.meters._values import Quantity
from ampshare.errors import DeviceProtocolError

__all__ = [
    "Block",
    "DataType",
    "RegisterMap",
    "RegisterSpec",
    "decode_map",
    "decode_value",
    "encode_map",
    "encode_value",
    "plan_blocks",
]

WordOrder = Literal["big", "little"]
Function = Literal["holding", "input"]
MAX_BLOCK_REGS = 120  # Modbus allows 125 registers per read; keep a little slack


class DataType(StrEnum):
    """Register encodings: u/i = unsigned/signed integer, f = IEEE 754 float; bits in the name."""

    U16 = "u16"
    I16 = "i16"
    U32 = "u32"
    I32 = "i32"
    U64 = "u64"
    I64 = "i64"
    F32 = "f32"
    F64 = "f64"

    @property
    def words(self) -> int:
        """Number of 16-bit registers a value occupies."""
        return int(self.value[1:]) // 16

    @property
    def _struct(self) -> str:
        return {"u16": "H", "i16": "h", "u32": "I", "i32": "i", "u64": "Q", "i64": "q",
                "f32": "f", "f64": "d"}[self.value]


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisterSpec:
    """One value of a meter.

    ``address`` is the 0-based protocol address (what goes on the wire). The decoded number is
    multiplied by ``scale`` to give ``unit`` (always the quantity's base unit: A, V, W, Wh).
    ``sf_address``, when set, names an ``i16`` register holding a power-of-ten exponent applied
    on top (SunSpec scale factors). ``not_implemented`` is the raw value a device uses for
    "not available" (SunSpec 0x8000), which yields no value rather than a wrong one.
    """

    quantity: Quantity
    address: int
    dtype: DataType
    scale: float = 1.0
    unit: str = ""
    sf_address: int | None = None
    not_implemented: int | None = None

    def __post_init__(self) -> None:
        if self.unit and self.unit != self.quantity.unit:
            raise ValueError(f"{self.quantity.value} is in {self.quantity.unit}, not {self.unit}")
        if not 0 <= self.address <= 0xFFFF - self.dtype.words + 1:
            raise ValueError(f"register address {self.address} out of range")


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisterMap:
    """A meter model's register table; ``function`` says input (FC 4) or holding (FC 3)."""

    model: str
    function: Function
    word_order: WordOrder
    registers: tuple[RegisterSpec, ...]
    description: str = ""

    def addresses(self) -> tuple[tuple[int, int], ...]:
        """Every (address, word count) the map reads, scale-factor registers included."""
        out = {(r.address, r.dtype.words) for r in self.registers}
        out |= {(r.sf_address, 1) for r in self.registers if r.sf_address is not None}
        return tuple(sorted(out))


@dataclass(frozen=True, slots=True, kw_only=True)
class Block:
    """A contiguous run of registers read with one request."""

    address: int
    count: int


def plan_blocks(spans: Iterable[tuple[int, int]], *, max_gap: int = 16) -> tuple[Block, ...]:
    """Merge (address, count) spans into few reads; gaps up to ``max_gap`` are read and ignored.

    Fewer requests matter on RS-485 at 9600 baud, where each round trip costs ~30 ms.
    """
    blocks: list[Block] = []
    for addr, count in sorted(spans):
        if blocks:
            last = blocks[-1]
            end = last.address + last.count
            new_end = max(end, addr + count)
            if addr - end <= max_gap and new_end - last.address <= MAX_BLOCK_REGS:
                blocks[-1] = Block(address=last.address, count=new_end - last.address)
                continue
        blocks.append(Block(address=addr, count=count))
    return tuple(blocks)


def _words_to_bytes(words: Sequence[int], word_order: WordOrder) -> bytes:
    ordered = words if word_order == "big" else list(reversed(words))
    return b"".join(int(w).to_bytes(2, "big") for w in ordered)


def decode_value(words: Sequence[int], dtype: DataType, word_order: WordOrder) -> float:
    """Decode one value from its registers."""
    if len(words) != dtype.words:
        raise DeviceProtocolError(f"{dtype.value} needs {dtype.words} registers, got {len(words)}")
    (value,) = struct.unpack(">" + dtype._struct, _words_to_bytes(words, word_order))
    return float(value)


def encode_value(value: float, dtype: DataType, word_order: WordOrder) -> list[int]:
    """Encode one value into registers (the inverse of ``decode_value``)."""
    raw = value if dtype in (DataType.F32, DataType.F64) else round(value)
    data = struct.pack(">" + dtype._struct, raw)
    words = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    return words if word_order == "big" else list(reversed(words))


def _raw_int(words: Sequence[int]) -> int:
    return int.from_bytes(b"".join(w.to_bytes(2, "big") for w in words), "big")


def decode_map(
    rmap: RegisterMap, registers: Mapping[int, int], *, meter_id: str = "meter"
) -> dict[Quantity, float]:
    """Decode every value of ``rmap`` from ``registers`` (address -> 16-bit word).

    Raises ``DeviceProtocolError`` when a register is missing; values a device marks as not
    implemented are left out.
    """
    out: dict[Quantity, float] = {}
    for spec in rmap.registers:
        try:
            words = [registers[spec.address + i] for i in range(spec.dtype.words)]
            sf_word = None if spec.sf_address is None else registers[spec.sf_address]
        except KeyError as exc:
            raise DeviceProtocolError(f"meter {meter_id}: register {exc} missing") from None
        if spec.not_implemented is not None and _raw_int(words) == spec.not_implemented:
            continue
        value = decode_value(words, spec.dtype, rmap.word_order) * spec.scale
        if sf_word is not None:
            if sf_word == 0x8000:  # SunSpec: scale factor not implemented
                continue
            exponent = decode_value([sf_word], DataType.I16, "big")
            if not -10 <= exponent <= 10:
                raise DeviceProtocolError(
                    f"meter {meter_id}: scale factor {exponent:g} at {spec.sf_address} is absurd"
                )
            value *= 10.0**exponent
        out[spec.quantity] = value
    return out


def _fits(raw: float, dtype: DataType) -> bool:
    if dtype in (DataType.F32, DataType.F64):
        return True
    if not math.isfinite(raw):
        return False
    bits = dtype.words * 16
    signed = dtype.value[0] == "i"
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    return bool(lo <= round(raw) <= hi)


def _group_exponent(specs: list[RegisterSpec], values: Mapping[Quantity, float],
                    min_sf: int) -> int:
    """The smallest power of ten >= ``min_sf`` at which every value of a group fits its type."""
    for sf in range(min_sf, 11):
        if all(_fits(values[s.quantity] / s.scale / 10.0**sf, s.dtype) for s in specs):
            return sf
    raise ValueError(f"values {[values[s.quantity] for s in specs]} do not fit any scale factor")


def encode_map(
    rmap: RegisterMap, values: Mapping[Quantity, float], *, min_sf: int = -2
) -> dict[int, int]:
    """Registers (address -> word) that make ``decode_map`` return ``values``.

    Quantities not in ``values`` are left out. For specs sharing a scale-factor register the
    exponent is the finest (>= ``min_sf``) at which all their values fit, as a SunSpec device
    would choose it.
    """
    regs: dict[int, int] = {}
    groups: dict[int, list[RegisterSpec]] = {}
    for spec in rmap.registers:
        if spec.sf_address is not None and spec.quantity in values:
            groups.setdefault(spec.sf_address, []).append(spec)
    exponents = {a: _group_exponent(g, values, min_sf) for a, g in groups.items()}
    for spec in rmap.registers:
        if spec.quantity not in values:
            continue
        raw = values[spec.quantity] / spec.scale
        if spec.sf_address is not None:
            sf = exponents[spec.sf_address]
            raw /= 10.0**sf
            regs[spec.sf_address] = encode_value(sf, DataType.I16, "big")[0]
        if not _fits(raw, spec.dtype):
            raise ValueError(f"{spec.quantity.value} = {values[spec.quantity]} does not fit "
                             f"{spec.dtype.value} at scale {spec.scale}")
        words = encode_value(raw, spec.dtype, rmap.word_order)
        regs.update({spec.address + i: w for i, w in enumerate(words)})
    return regs
