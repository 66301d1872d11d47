"""``ampshare run`` on the Modbus example site: the controller counts what the meter measures,
and when the meter stops answering it counts the site file's worst case instead.

The meter is a pymodbus server holding SDM630 registers on loopback (what ``ampshare
sim-meter`` serves); the site file is ``examples/home-modbus-meter.yaml`` with only its port
and timings changed; the chargers are the package's ``FakeChargerLink``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path

import pytest
from pymodbus.framer import FramerType
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType as SimType
from pymodbus.simulator import SimData, SimDevice

from ampshare.adapters.meters import BUILTIN_MAPS, ModbusMeterServer, encode_map
from ampshare.adapters.ocpp import FakeChargerLink
from ampshare.app import Supervisor
from ampshare.cli.meters import profile_values
from ampshare.clock import SystemClock
from ampshare.config import load_config
from ampshare.control import EventKind, StepResult
from ampshare.core.allocation import NodeHeadroom

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "home-modbus-meter.yaml"
HOUSE_W = 9200.0  # 40/33/27 % over L1..L3 at 230 V: 16.0, 13.2 and 10.8 A


def _site_file(tmp_path: Path, port: int) -> Path:
    text = EXAMPLE.read_text(encoding="utf-8")
    for old, new in (("port: 5020", f"port: {port}"), ("timeout_s: 1.0", "timeout_s: 0.3"),
                     ("retries: 1", "retries: 0"), ("poll_s: 1", "poll_s: 0.2"),
                     ("timeout_s: 10 ", "timeout_s: 1.5 ")):
        assert old in text, old  # the example still has the line this test adjusts
        text = text.replace(old, new)
    text += "control:\n  max_period_s: 0.2\n  meter_recover_s: 0.5\n"
    path = tmp_path / "site.yaml"
    path.write_text(text, encoding="utf-8")
    return path


async def _until(cond: Callable[[], bool], timeout_s: float, why: Callable[[], object]) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            while not cond():
                await asyncio.sleep(0.02)
    except TimeoutError:
        pytest.fail(f"not reached in {timeout_s} s: {why()}")


def _main(sup: Supervisor) -> NodeHeadroom | None:
    result = sup.last_result
    if result is None or result.allocation is None:
        return None
    return next(h for h in result.allocation.headroom if h.node_id == "main")


async def test_run_counts_the_modbus_meter_then_its_worst_case(tmp_path: Path) -> None:
    server = ModbusMeterServer.for_map(BUILTIN_MAPS["sdm630"], profile_values(HOUSE_W))
    port = await server.start()
    config = load_config(_site_file(tmp_path, port))
    clock = SystemClock()
    events: list[str] = []

    def on_step(result: StepResult) -> None:
        events.extend(e.kind.value for e in result.events)

    sup = Supervisor(config, clock=clock, link=FakeChargerLink(config.site.chargers, clock),
                     on_step=on_step)
    stop = asyncio.Event()
    task = asyncio.create_task(sup.run(stop))
    house = (16.0, 13.2, 10.8)
    # The two chargers never connect: each is counted at its 6 A minimum on every line on top
    # of what the meter says (an offline charger is never counted as 0).
    offline = 2 * 6.0

    def counted(per_line: tuple[float, float, float]) -> Callable[[], bool]:
        def ok() -> bool:
            h = _main(sup)
            return h is not None and h.other_load_a == pytest.approx(
                tuple(x + offline for x in per_line), abs=0.01)
        return ok

    try:
        # Measured: the allocator's non-EV load on 'main' is what the SDM630 reports.
        await _until(counted(house), 5.0, lambda: _main(sup))
        h = _main(sup)
        assert h is not None
        assert (h.measured, h.stale) == (True, False)
        meter = sup.state.meters["house"]
        assert meter.last is not None
        assert meter.last.power_w == pytest.approx(HOUSE_W)

        # The meter stops answering mid-run: after its 1.5 s timeout the node is counted at
        # the file's fallback_a (20 A per line), never at the last value and never at 0.
        server.fault = "silent"
        await _until(lambda: (h := _main(sup)) is not None and h.stale, 6.0,
                     lambda: _main(sup))
        assert counted((20.0, 20.0, 20.0))(), _main(sup)
        assert EventKind.METER_STALE.value in events

        # Back: trusted again after meter_recover_s of fresh readings.
        server.fault = "none"
        await _until(lambda: (h := _main(sup)) is not None and not h.stale
                     and counted(house)(), 6.0, lambda: _main(sup))
        assert EventKind.METER_RECOVERED.value in events
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await server.stop()


async def test_run_shares_one_rs485_line_between_its_meters(tmp_path: Path) -> None:
    # Two meters (unit 1 and unit 2) behind one RS-485 line, reached here as RTU frames over
    # TCP. A serial port must be opened once: ``ampshare run`` must poll both through one link.
    devices = [
        SimDevice(id=unit, simdata=[SimData(address=0, values=[
            regs.get(a, 0) for a in range(0x4A)], datatype=SimType.REGISTERS)])
        for unit, regs in ((1, encode_map(BUILTIN_MAPS["sdm630"], profile_values(4600.0))),
                           (2, encode_map(BUILTIN_MAPS["sdm72d-m"], profile_values(2300.0))))]
    connects: list[bool] = []
    server = ModbusTcpServer(devices, address=("127.0.0.1", 0), framer=FramerType.RTU,
                             trace_connect=connects.append)
    serving = asyncio.create_task(server.serve_forever())
    while server.transport is None:
        await asyncio.sleep(0.01)
    port = server.transport.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    meter = ("    driver: {{type: modbus, model: {model}, unit_id: {unit}, timeout_s: 0.3, "
             f"retries: 0, serial_port: 'socket://127.0.0.1:{port}'}}}}\n    poll_s: 0.1\n")
    path = tmp_path / "bus.yaml"
    path.write_text(
        "nodes: [{id: main, limit_a: 63}, {id: garage, parent: main, limit_a: 32}]\n"
        "meters:\n"
        "  - id: house\n    node: main\n" + meter.format(model="sdm630", unit=1) +
        "  - id: garage\n    node: garage\n" + meter.format(model="sdm72d-m", unit=2),
        encoding="utf-8")
    config = load_config(path)
    clock = SystemClock()
    sup = Supervisor(config, clock=clock, link=FakeChargerLink((), clock))
    stop = asyncio.Event()
    task = asyncio.create_task(sup.run(stop))
    try:
        def both() -> bool:
            got = [sup.state.meters[m].last for m in ("house", "garage")]
            return all(r is not None and r.power_w is not None for r in got)

        await _until(both, 5.0, lambda: dict(sup.state.meters))
        powers = [sup.state.meters[m].last.power_w for m in ("house", "garage")]  # type: ignore[union-attr]
        assert powers == [pytest.approx(4600.0), pytest.approx(2300.0)]
        await asyncio.sleep(0.5)  # several polls of each
        assert connects == [True]  # one connection for the whole line
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await server.shutdown()  # type: ignore[no-untyped-call]
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await serving
