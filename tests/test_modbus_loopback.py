"""The Modbus driver against a real pymodbus server on loopback, one per meter map."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from types import MappingProxyType

import pytest
from pymodbus.framer import FramerType
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType as SimType
from pymodbus.simulator import SimData, SimDevice

from ampshare.adapters.meters import (
    BUILTIN_MAPS,
    MeterCoordinator,
    ModbusMeter,
    ModbusMeterServer,
    ModbusTarget,
    Quantity,
    build_coordinators,
    check_conformance,
    encode_map,
)
from ampshare.clock import VirtualClock
from ampshare.core.site import MeterSpec
from ampshare.errors import DeviceProtocolError, DeviceUnavailable

Q = Quantity
VALUES = {Q.CURRENT_L1: 21.5, Q.CURRENT_L2: 9.75, Q.CURRENT_L3: 3.0, Q.VOLTAGE_L1: 231.2,
          Q.VOLTAGE_L2: 229.4, Q.VOLTAGE_L3: 230.0, Q.POWER: 7600.0, Q.POWER_L1: 4900.0,
          Q.POWER_L2: 2100.0, Q.POWER_L3: 600.0, Q.ENERGY_IMPORT: 98_765_400.0}
FAST = {"timeout_s": 0.2, "retries": 0}


@pytest.fixture
async def sdm630() -> AsyncIterator[ModbusMeterServer]:
    server = ModbusMeterServer.for_map(BUILTIN_MAPS["sdm630"], VALUES)
    await server.start()
    yield server
    await server.stop()


def _meter(server: ModbusMeterServer, clock: VirtualClock, model: str | None) -> ModbusMeter:
    rmap = None if model is None else BUILTIN_MAPS[model]
    return ModbusMeter("main", ModbusTarget(host="127.0.0.1", port=server.port, **FAST), rmap,
                       clock)


@pytest.mark.parametrize("model", sorted(BUILTIN_MAPS))
async def test_each_map_reads_its_meter_over_tcp(model: str) -> None:
    server = ModbusMeterServer.for_map(BUILTIN_MAPS[model], VALUES)
    await server.start()
    clock = VirtualClock(1_700_000_000.0)
    meter = _meter(server, clock, model)
    try:
        r = await meter.read()
        assert r.meter_id == "main"
        assert r.t_s == clock.now_s()
        assert r.current_a == pytest.approx((21.5, 9.75, 3.0), abs=1e-3)
        assert r.voltage_v == pytest.approx((231.2, 229.4, 230.0), abs=1e-3)
        assert r.power_w == pytest.approx(7600.0, abs=0.01)
        assert r.power_per_line_w == pytest.approx((4900.0, 2100.0, 600.0), abs=0.01)
        assert r.energy_wh == pytest.approx(98_765_400.0, rel=1e-6)
        server.set_values({**VALUES, Q.CURRENT_L2: 40.0})
        assert (await meter.read()).current_a == pytest.approx((21.5, 40.0, 3.0), abs=1e-3)
    finally:
        await meter.close()
        await server.stop()


@pytest.mark.parametrize("model_id", [201, 202, 203, 204])
async def test_sunspec_meter_model_is_discovered(model_id: int) -> None:
    server = ModbusMeterServer.for_sunspec(VALUES, model_id=model_id)
    await server.start()
    meter = _meter(server, VirtualClock(10.0), None)
    try:
        r = await meter.read()
        assert meter.register_map is not None
        assert meter.register_map.model == f"sunspec-{model_id}"
        assert r.current_a is not None
        assert r.current_a[0] == pytest.approx(21.5)
        assert (r.current_a[2] is not None) == (model_id in (203, 204))
        assert r.power_w == pytest.approx(7600.0)
    finally:
        await meter.close()
        await server.stop()


async def test_a_plain_meter_is_not_taken_for_sunspec(sdm630: ModbusMeterServer) -> None:
    meter = _meter(sdm630, VirtualClock(), None)
    with pytest.raises(DeviceProtocolError, match="SunSpec"):
        await meter.read()
    await meter.close()


FAULTS = [("silent", DeviceUnavailable, "no answer"),
          ("exception", DeviceProtocolError, "device failure"),
          ("garbage", DeviceProtocolError, "not plausible"),
          ("gateway", DeviceUnavailable, "gateway target did not respond")]


@pytest.mark.parametrize(("fault", "error", "text"), FAULTS, ids=[f[0] for f in FAULTS])
@pytest.mark.parametrize("model", [*sorted(BUILTIN_MAPS), "sunspec"])
async def test_every_map_turns_a_misbehaving_meter_into_our_errors(
    model: str, fault: str, error: type[Exception], text: str
) -> None:
    # Mid-run: the meter answered, then stops answering / fails / sends 0xFFFF filler, then
    # recovers. Never a number from a meter that did not give one.
    server = (ModbusMeterServer.for_sunspec(VALUES) if model == "sunspec"
              else ModbusMeterServer.for_map(BUILTIN_MAPS[model], VALUES))
    await server.start()
    meter = _meter(server, VirtualClock(), None if model == "sunspec" else model)
    try:
        assert (await meter.read()).current_a == pytest.approx((21.5, 9.75, 3.0))
        server.fault = fault  # type: ignore[assignment]
        with pytest.raises(error, match=text):
            await meter.read()
        server.fault = "none"
        assert (await meter.read()).current_a == pytest.approx((21.5, 9.75, 3.0))
    finally:
        await meter.close()
        await server.stop()


async def test_a_short_reply_is_a_protocol_error(sdm630: ModbusMeterServer) -> None:
    meter = _meter(sdm630, VirtualClock(), "sdm630")
    assert (await meter.read()).current_a is not None
    sdm630.fault = "short"
    with pytest.raises(DeviceProtocolError, match="got 17"):
        await meter.read()
    sdm630.fault = "none"
    assert (await meter.read()).current_a == pytest.approx((21.5, 9.75, 3.0))
    await meter.close()


async def test_meter_that_stops_mid_run_goes_stale_and_comes_back(
    sdm630: ModbusMeterServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ampshare.adapters.meters")
    clock = VirtualClock(1000.0)
    seen: list[float] = []
    coord = MeterCoordinator(_meter(sdm630, clock, "sdm630"), clock, timeout_s=5.0,
                             on_reading=lambda r: seen.append(r.t_s))
    assert await coord.poll_once() is not None
    sdm630.fault = "silent"
    for _ in range(3):
        clock.advance(2.0)
        assert await coord.poll_once() is None
    assert coord.is_stale()  # last good sample is 6 s old, timeout 5 s
    assert isinstance(coord.last_error, DeviceUnavailable)
    assert coord.failures == 3
    assert sum("lost" in r.message for r in caplog.records) == 1  # logged once, not thrice
    sdm630.fault = "none"
    clock.advance(1.0)
    assert await coord.poll_once() is not None
    assert not coord.is_stale()
    assert coord.last_success_s == 1007.0
    assert seen == [1000.0, 1007.0]
    assert sum("is back" in r.message for r in caplog.records) == 1
    await coord.source.close()


async def test_server_gone_then_restarted_reconnects() -> None:
    rmap = BUILTIN_MAPS["em340"]
    server = ModbusMeterServer.for_map(rmap, VALUES)
    port = await server.start()
    meter = _meter(server, VirtualClock(), "em340")
    assert (await meter.read()).power_w == pytest.approx(7600.0)
    await server.stop()
    with pytest.raises(DeviceUnavailable):
        await meter.read()
    with pytest.raises(DeviceUnavailable, match="connect"):
        await meter.read()
    again = ModbusMeterServer.for_map(rmap, {**VALUES, Q.POWER: 100.0}, port=port)
    await again.start()
    try:
        assert (await meter.read()).power_w == pytest.approx(100.0)
    finally:
        await meter.close()
        await again.stop()


async def test_wrong_unit_id_is_reported() -> None:
    server = ModbusMeterServer.for_map(BUILTIN_MAPS["sdm630"], VALUES, unit_id=7)
    await server.start()
    meter = ModbusMeter("m", ModbusTarget(host="127.0.0.1", port=server.port, unit_id=3, **FAST),
                        BUILTIN_MAPS["sdm630"], VirtualClock())
    try:
        with pytest.raises((DeviceProtocolError, DeviceUnavailable)):
            await meter.read()
    finally:
        await meter.close()
        await server.stop()


async def test_modbus_driver_conforms(sdm630: ModbusMeterServer) -> None:
    clock = VirtualClock(50.0)
    assert await check_conformance(_meter(sdm630, clock, "sdm630"), clock) == []
    sdm630.fault = "garbage"
    assert await check_conformance(_meter(sdm630, clock, "sdm630"), clock,
                                   require_reading=False) == []


async def test_refused_connection_is_unavailable() -> None:
    server = ModbusMeterServer.for_map(BUILTIN_MAPS["sdm630"], VALUES)
    port = await server.start()
    await server.stop()
    meter = ModbusMeter("m", ModbusTarget(host="127.0.0.1", port=port, **FAST),
                        BUILTIN_MAPS["sdm630"], VirtualClock())
    with pytest.raises(DeviceUnavailable, match="cannot connect"):
        await meter.read()
    await meter.close()


async def test_rtu_framing_through_a_serial_url() -> None:
    # pyserial opens "socket://" like a serial port: the RTU path (CRC framing) without a cable.
    server = ModbusMeterServer.for_map(BUILTIN_MAPS["em340"], VALUES, rtu=True, unit_id=5)
    await server.start()
    meter = ModbusMeter("rtu", ModbusTarget(serial_port=f"socket://127.0.0.1:{server.port}",
                                            baudrate=9600, unit_id=5, **FAST),
                        BUILTIN_MAPS["em340"], VirtualClock())
    try:
        r = await meter.read()
        assert r.current_a == pytest.approx((21.5, 9.75, 3.0))
        server.fault = "silent"
        with pytest.raises(DeviceUnavailable):
            await meter.read()
    finally:
        await meter.close()
        await server.stop()


async def test_meters_on_one_rs485_bus_share_its_link() -> None:
    # Two meters (unit 1: SDM630, unit 2: SDM72D-M) behind one RTU line. A serial port opens
    # once, so both must go through one link; the server counts connections to prove it.
    devices = [
        SimDevice(id=unit, simdata=[SimData(address=0, values=[
            regs.get(a, 0) for a in range(0x4A)], datatype=SimType.REGISTERS)])
        for unit, regs in ((1, encode_map(BUILTIN_MAPS["sdm630"], VALUES)),
                           (2, encode_map(BUILTIN_MAPS["sdm72d-m"], {**VALUES, Q.POWER: 42.0})))]
    connects: list[bool] = []
    server = ModbusTcpServer(devices, address=("127.0.0.1", 0), framer=FramerType.RTU,
                             trace_connect=connects.append)
    task = asyncio.create_task(server.serve_forever())
    await asyncio.sleep(0.05)
    port = server.transport.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    specs = [MeterSpec(id=f"m{u}", node_id="n", measures=frozenset(), driver="modbus",
                       params=MappingProxyType({"model": model, "unit_id": u, "timeout_s": 0.3,
                                                "serial_port": f"socket://127.0.0.1:{port}"}))
             for u, model in ((1, "sdm630"), (2, "sdm72d-m"))]
    coords = build_coordinators(specs, VirtualClock())
    try:
        for _ in range(3):
            r1, r2 = await asyncio.gather(*(c.poll_once() for c in coords))
            assert r1 is not None
            assert r2 is not None
            assert (r1.power_w, r2.power_w) == (pytest.approx(7600.0), pytest.approx(42.0))
        assert connects == [True]
    finally:
        for c in coords:
            await c.source.close()
        await server.shutdown()  # type: ignore[no-untyped-call]
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
