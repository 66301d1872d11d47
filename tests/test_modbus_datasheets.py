"""Each built-in register map read from a meter built from its manufacturer's register list.

The tables below restate the published register lists (address, encoding, word order, unit,
function code) on their own, without ampshare's maps or encoder: every meter is a pymodbus
server that holds *only* the documented block, *only* under the documented function code(s),
with the words packed here with ``struct``. A wrong address, scale, word order, type or
function code in ``BUILTIN_MAPS`` makes the driver read a wrong value or get an exception.

Sources: Eastron "SDM630 Modbus protocol" and "SDM72D-M v2 protocol" (input registers,
IEEE 754 float, high word first); Carlo Gavazzi "EM24-DIN / EM24 E1" and "EM330/EM340"
communication protocols (INT32 least significant word first, FC 03 and 04 alike); ABB
"B-series Modbus" (holding, big-endian, 0xFFFF... = invalid); Janitza UMG 604 Modbus address
list, "frequently required readings" (holding, float, high word first); SunSpec Information
Model tables for model 203 (point offsets, int16 with scale factors, acc32 energy).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import pytest
from pymodbus.framer import FramerType
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType as SimType
from pymodbus.simulator import SimData, SimDevice

from ampshare.adapters.meters import BUILTIN_MAPS, ModbusMeter, ModbusTarget, Quantity
from ampshare.clock import VirtualClock
from ampshare.core.snapshot import MeterReading
from ampshare.errors import DeviceProtocolError

Q = Quantity

# What the meter measures, in base units (A, V, W, Wh).
TRUTH: Mapping[Quantity, float] = {
    Q.VOLTAGE_L1: 231.5, Q.VOLTAGE_L2: 229.5, Q.VOLTAGE_L3: 230.5,
    Q.CURRENT_L1: 18.25, Q.CURRENT_L2: 7.5, Q.CURRENT_L3: 0.75,
    Q.POWER_L1: 4100.5, Q.POWER_L2: -1650.0, Q.POWER_L3: 150.2,  # L2 feeds back (PV)
    Q.POWER: 2600.7, Q.ENERGY_IMPORT: 12_345_600.0,
}


@dataclass(frozen=True)
class Row:
    """One documented register: where, how it is packed, and its unit as printed."""

    quantity: Quantity
    address: int
    fmt: str  # struct code of the whole value: f (float32), i (int32), I (uint32), Q (uint64)
    unit_per_count: float  # base units per raw count (0.1 for "V x 10", 1000 for "kWh")
    low_word_first: bool = False


def _eastron() -> list[Row]:
    v, a, w = (0x00, 0x02, 0x04), (0x06, 0x08, 0x0A), (0x0C, 0x0E, 0x10)
    return [*(Row(q, x, "f", 1.0) for q, x in zip((Q.VOLTAGE_L1, Q.VOLTAGE_L2, Q.VOLTAGE_L3), v,
                                                  strict=True)),
            *(Row(q, x, "f", 1.0) for q, x in zip((Q.CURRENT_L1, Q.CURRENT_L2, Q.CURRENT_L3), a,
                                                  strict=True)),
            *(Row(q, x, "f", 1.0) for q, x in zip((Q.POWER_L1, Q.POWER_L2, Q.POWER_L3), w,
                                                  strict=True)),
            Row(Q.POWER, 0x34, "f", 1.0),
            Row(Q.ENERGY_IMPORT, 0x48, "f", 1000.0)]  # "Total import kWh"


def _gavazzi() -> list[Row]:
    return [Row(Q.VOLTAGE_L1, 0x00, "i", 0.1, True), Row(Q.VOLTAGE_L2, 0x02, "i", 0.1, True),
            Row(Q.VOLTAGE_L3, 0x04, "i", 0.1, True),
            Row(Q.CURRENT_L1, 0x0C, "i", 0.001, True), Row(Q.CURRENT_L2, 0x0E, "i", 0.001, True),
            Row(Q.CURRENT_L3, 0x10, "i", 0.001, True),
            Row(Q.POWER_L1, 0x12, "i", 0.1, True), Row(Q.POWER_L2, 0x14, "i", 0.1, True),
            Row(Q.POWER_L3, 0x16, "i", 0.1, True), Row(Q.POWER, 0x28, "i", 0.1, True),
            Row(Q.ENERGY_IMPORT, 0x34, "i", 100.0, True)]  # "kWh (+) TOT", kWh x 10


def _abb() -> list[Row]:
    return [Row(Q.VOLTAGE_L1, 0x5B00, "I", 0.1), Row(Q.VOLTAGE_L2, 0x5B02, "I", 0.1),
            Row(Q.VOLTAGE_L3, 0x5B04, "I", 0.1),
            Row(Q.CURRENT_L1, 0x5B0C, "I", 0.01), Row(Q.CURRENT_L2, 0x5B0E, "I", 0.01),
            Row(Q.CURRENT_L3, 0x5B10, "I", 0.01),
            Row(Q.POWER, 0x5B14, "i", 0.01),
            Row(Q.POWER_L1, 0x5B16, "i", 0.01), Row(Q.POWER_L2, 0x5B18, "i", 0.01),
            Row(Q.POWER_L3, 0x5B1A, "i", 0.01),
            Row(Q.ENERGY_IMPORT, 0x5000, "Q", 10.0)]  # "Active import, 0.01 kWh"


def _janitza() -> list[Row]:
    return [Row(Q.VOLTAGE_L1, 19000, "f", 1.0), Row(Q.VOLTAGE_L2, 19002, "f", 1.0),
            Row(Q.VOLTAGE_L3, 19004, "f", 1.0),
            Row(Q.CURRENT_L1, 19012, "f", 1.0), Row(Q.CURRENT_L2, 19014, "f", 1.0),
            Row(Q.CURRENT_L3, 19016, "f", 1.0),
            Row(Q.POWER_L1, 19020, "f", 1.0), Row(Q.POWER_L2, 19022, "f", 1.0),
            Row(Q.POWER_L3, 19024, "f", 1.0), Row(Q.POWER, 19026, "f", 1.0),
            # "Real energy L1..L3, consumed" (19062/64/66 are L1, L2, L3 alone)
            Row(Q.ENERGY_IMPORT, 19068, "f", 1.0)]


# model -> (register list, function codes the meter answers)
DATASHEETS: Mapping[str, tuple[list[Row], frozenset[str]]] = {
    "sdm630": (_eastron(), frozenset({"input"})),
    "sdm72d-m": (_eastron(), frozenset({"input"})),
    "em24": (_gavazzi(), frozenset({"input", "holding"})),
    "em340": (_gavazzi(), frozenset({"input", "holding"})),
    "b23": (_abb(), frozenset({"holding"})),
    "b24": (_abb(), frozenset({"holding"})),
    "umg604": (_janitza(), frozenset({"holding"})),
}


def _words(row: Row, value: float) -> list[int]:
    raw = value / row.unit_per_count
    data = struct.pack(">" + row.fmt, raw if row.fmt == "f" else round(raw))
    words = [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]
    return words[::-1] if row.low_word_first else words


def _image(rows: list[Row], values: Mapping[Quantity, float]) -> dict[int, int]:
    """The documented registers, with every address between them answering 0."""
    regs: dict[int, int] = {}
    for row in rows:
        regs.update({row.address + i: w for i, w in enumerate(_words(row, values[row.quantity]))})
    lo, hi = min(regs), max(regs)
    return {a: regs.get(a, 0) for a in range(lo, hi + 1)}


def _blocks(image: Mapping[int, int]) -> list[SimData]:
    """Contiguous runs of the image; the gap between two documented areas stays undefined."""
    out: list[SimData] = []
    start = prev = None
    values: list[int] = []
    for addr in sorted(image):
        if prev is not None and addr != prev + 1:
            out.append(SimData(start, values=values, datatype=SimType.REGISTERS))  # type: ignore[arg-type]
            values, start = [], None
        start = addr if start is None else start
        values.append(image[addr])
        prev = addr
    out.append(SimData(start, values=values, datatype=SimType.REGISTERS))  # type: ignore[arg-type]
    return out


def _areas(rows: list[Row], values: Mapping[Quantity, float]) -> dict[int, int]:
    """One image per documented area (registers far apart are separate areas of the list)."""
    rows = sorted(rows, key=lambda r: r.address)
    groups: list[list[Row]] = [[rows[0]]]
    for row in rows[1:]:
        if row.address - groups[-1][-1].address > 32:
            groups.append([])
        groups[-1].append(row)
    out: dict[int, int] = {}
    for group in groups:
        out.update(_image(group, values))
    return out


@contextlib.asynccontextmanager
async def _datasheet_meter(model: str, *, functions: frozenset[str] | None = None
                           ) -> AsyncIterator[int]:
    """A meter holding ``model``'s documented registers (under ``functions``, default the
    documented ones) on a free loopback port; yields the port."""
    rows, documented = DATASHEETS[model]
    functions = documented if functions is None else functions
    blocks = _blocks(_areas(rows, TRUTH))
    unused = [SimData(60000, values=[0], datatype=SimType.REGISTERS)]
    bit = [SimData(0, values=[0], datatype=SimType.BITS)]
    device = SimDevice(id=1, simdata=(bit, bit, blocks if "holding" in functions else unused,
                                      blocks if "input" in functions else unused))
    async with _serving(device) as port:
        yield port


@contextlib.asynccontextmanager
async def _serving(device: SimDevice) -> AsyncIterator[int]:
    """A pymodbus TCP server for ``device`` on a free loopback port; yields the port."""
    server = ModbusTcpServer(device, address=("127.0.0.1", 0), framer=FramerType.SOCKET)
    task = asyncio.create_task(server.serve_forever())
    try:
        async with asyncio.timeout(5):
            while server.transport is None or not server.transport.sockets:  # type: ignore[attr-defined]
                await asyncio.sleep(0.01)
        yield int(server.transport.sockets[0].getsockname()[1])  # type: ignore[attr-defined]
    finally:
        await server.shutdown()  # type: ignore[no-untyped-call]
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _read(model: str, port: int) -> MeterReading:
    meter = ModbusMeter("m", ModbusTarget(host="127.0.0.1", port=port, timeout_s=0.5, retries=0),
                        BUILTIN_MAPS[model], VirtualClock(100.0))
    try:
        return await meter.read()
    finally:
        await meter.close()


def test_every_built_in_map_has_a_datasheet() -> None:
    assert set(DATASHEETS) == set(BUILTIN_MAPS)
    for model, (rows, _) in DATASHEETS.items():
        assert {r.quantity for r in rows} == {s.quantity for s in BUILTIN_MAPS[model].registers}


@pytest.mark.parametrize("model", sorted(DATASHEETS))
async def test_map_reads_the_documented_registers(model: str) -> None:
    async with _datasheet_meter(model) as port:
        r = await _read(model, port)
    t = TRUTH
    assert r.current_a == pytest.approx((t[Q.CURRENT_L1], t[Q.CURRENT_L2], t[Q.CURRENT_L3]),
                                        abs=1e-3)
    assert r.voltage_v == pytest.approx((t[Q.VOLTAGE_L1], t[Q.VOLTAGE_L2], t[Q.VOLTAGE_L3]),
                                        abs=0.05)
    assert r.power_per_line_w == pytest.approx(
        (t[Q.POWER_L1], t[Q.POWER_L2], t[Q.POWER_L3]), abs=0.05)
    assert r.power_w == pytest.approx(t[Q.POWER], abs=0.05)
    assert r.energy_wh == pytest.approx(t[Q.ENERGY_IMPORT], rel=1e-6)


@pytest.mark.parametrize("model", ["sdm630", "b23", "umg604"])
async def test_the_map_asks_with_the_documented_function_code(model: str) -> None:
    # The same registers under the other function code only: the map's reads must fail.
    _, documented = DATASHEETS[model]
    other = frozenset({"holding", "input"}) - documented
    async with _datasheet_meter(model, functions=other) as port:
        with pytest.raises(DeviceProtocolError, match="illegal data address"):
            await _read(model, port)


def _sunspec_203_image(base: int = 40000) -> dict[int, int]:
    """A SunSpec device from the model tables: "SunS", common model 1 (66 registers), meter
    model 203 (105 registers; point offsets from the first register after ID and L), end."""
    def i16(x: float) -> int:
        return struct.unpack(">H", struct.pack(">h", round(x)))[0]

    t = TRUTH
    data = [0] * 105
    data[0] = i16((t[Q.CURRENT_L1] + t[Q.CURRENT_L2] + t[Q.CURRENT_L3]) * 100)  # A
    data[1:4] = [i16(t[q] * 100) for q in (Q.CURRENT_L1, Q.CURRENT_L2, Q.CURRENT_L3)]
    data[4] = i16(-2)  # A_SF
    data[6:9] = [i16(t[q] * 10) for q in (Q.VOLTAGE_L1, Q.VOLTAGE_L2, Q.VOLTAGE_L3)]
    data[13] = i16(-1)  # V_SF
    data[16] = i16(t[Q.POWER])  # W
    data[17:20] = [i16(t[q]) for q in (Q.POWER_L1, Q.POWER_L2, Q.POWER_L3)]
    data[20] = i16(0)  # W_SF
    wh = round(t[Q.ENERGY_IMPORT] / 100)
    data[44:46] = [wh >> 16, wh & 0xFFFF]  # TotWhImp, acc32
    data[52] = i16(2)  # TotWh_SF
    words = [0x5375, 0x6E53, 1, 66, *([0] * 66), 203, 105, *data, 0xFFFF, 0]
    return {base + i: w for i, w in enumerate(words)}


async def test_sunspec_203_from_the_model_tables() -> None:
    image = _sunspec_203_image()
    bit = [SimData(0, values=[0], datatype=SimType.BITS)]
    unused = [SimData(60000, values=[0], datatype=SimType.REGISTERS)]
    device = SimDevice(id=1, simdata=(bit, bit, _blocks(image), unused))
    async with _serving(device) as port:
        meter = ModbusMeter("m", ModbusTarget(host="127.0.0.1", port=port, timeout_s=0.5,
                                              retries=0), None, VirtualClock(5.0))
        try:
            r = await meter.read()
        finally:
            await meter.close()
    assert meter.register_map is not None
    assert meter.register_map.model == "sunspec-203"
    t = TRUTH
    assert r.current_a == pytest.approx((t[Q.CURRENT_L1], t[Q.CURRENT_L2], t[Q.CURRENT_L3]))
    assert r.voltage_v == pytest.approx((t[Q.VOLTAGE_L1], t[Q.VOLTAGE_L2], t[Q.VOLTAGE_L3]))
    assert r.power_w == pytest.approx(round(t[Q.POWER]))
    assert r.power_per_line_w == pytest.approx(tuple(round(t[q]) for q in (
        Q.POWER_L1, Q.POWER_L2, Q.POWER_L3)))
    assert r.energy_wh == pytest.approx(t[Q.ENERGY_IMPORT])
