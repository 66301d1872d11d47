"""A Modbus TCP server that answers like a given meter: the tests' peer and ``sim-meter``.

It is a real pymodbus server (``SimDevice``, the 3.x datastore that replaces the deprecated
``ModbusServerContext``) holding the register image that ``encode_map`` makes from a
``RegisterMap`` and a set of values, so a driver is tested over TCP against the bytes a meter
with that map would send. ``fault`` switches it into the misbehaviours a panel meter shows:

* ``silent``: requests are swallowed (a meter that stopped answering, an RS-485 gateway whose
  meter died);
* ``exception``: every read gets exception 4 (device failure);
* ``garbage``: every register reads 0xFFFF (NaN floats, absurd integers);
* ``short``: replies carry one register less than asked (a broken gateway; TCP framing only);
* ``gateway``: exception 11, a TCP-to-RS-485 gateway whose meter did not answer.

``rtu=True`` serves RTU frames (CRC, no MBAP header) over TCP, which a client configured with
``serial_port="socket://host:port"`` reads exactly as it would read an RS-485 line.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any, Literal

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType as SimType
from pymodbus.simulator import SimData, SimDevice

from ampshare.adapters.meters._registers import RegisterMap, encode_map
from ampshare.adapters.meters._sunspec import SUNSPEC_MARKER, sunspec_map
from ampshare.adapters.meters._values import Quantity

__all__ = ["Fault", "ModbusMeterServer", "sunspec_image"]

Fault = Literal["none", "silent", "exception", "garbage", "short", "gateway"]
_MBAP_LEN = 7  # Modbus TCP header: transaction, protocol, length (2 bytes each), unit id


def sunspec_image(values: Mapping[Quantity, float], *, model_id: int = 203, base: int = 40000,
                  min_sf: int = -2) -> tuple[RegisterMap, dict[int, int]]:
    """Registers of a SunSpec device: marker, common model 1, meter ``model_id``, end model."""
    regs: dict[int, int] = {base: SUNSPEC_MARKER[0], base + 1: SUNSPEC_MARKER[1]}
    common = base + 2
    regs.update({common: 1, common + 1: 66})
    name = b"ampshare".ljust(32, b"\0")  # Mn: 16 registers of text
    regs.update({common + 2 + i: int.from_bytes(name[2 * i : 2 * i + 2], "big") for i in range(16)})
    meter = common + 2 + 66
    rmap = sunspec_map(meter, model_id)
    regs.update({meter: model_id, meter + 1: 105})
    regs.update({meter + 2 + i: 0 for i in range(105)})
    regs.update(encode_map(rmap, values, min_sf=min_sf))
    end = meter + 2 + 105
    regs.update({end: 0xFFFF, end + 1: 0})
    return rmap, regs


class ModbusMeterServer:
    """Serve ``registers`` (address -> word) as unit ``unit_id`` on ``host:port`` (0 = any free).

    Build it with ``for_map`` (a fixed-address map) or ``for_sunspec``; change what it measures
    with ``set_values`` while it runs.
    """

    def __init__(self, rmap: RegisterMap, registers: Mapping[int, int], *,
                 host: str = "127.0.0.1", port: int = 0, unit_id: int = 1,
                 rtu: bool = False) -> None:
        self.rmap = rmap
        self.host = host
        self.port = port
        self.unit_id = unit_id
        self.rtu = rtu  # RTU framing over TCP: what a serial meter sends, minus the cable
        self.fault: Fault = "none"
        self._start = min(registers)
        self._image = [0] * (max(registers) - self._start + 1)
        self._good: list[int] = []
        self._write(registers)
        self._server: ModbusTcpServer | None = None
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def for_map(cls, rmap: RegisterMap, values: Mapping[Quantity, float],
                **kwargs: Any) -> ModbusMeterServer:
        return cls(rmap, encode_map(rmap, values), **kwargs)

    @classmethod
    def for_sunspec(cls, values: Mapping[Quantity, float], *, model_id: int = 203,
                    **kwargs: Any) -> ModbusMeterServer:
        rmap, regs = sunspec_image(values, model_id=model_id)
        return cls(rmap, regs, **kwargs)

    def _write(self, registers: Mapping[int, int]) -> None:
        for addr, word in registers.items():
            self._image[addr - self._start] = word
        self._good = list(self._image)

    def set_values(self, values: Mapping[Quantity, float]) -> None:
        """Change the measured values (takes effect on the next request)."""
        self._write(encode_map(self.rmap, values))

    async def start(self) -> int:
        """Start serving; returns the bound port."""
        device = SimDevice(
            id=self.unit_id, action=self._action,
            simdata=[SimData(address=self._start, values=list(self._image),
                             datatype=SimType.REGISTERS)])
        framer = FramerType.RTU if self.rtu else FramerType.SOCKET
        self._server = ModbusTcpServer(device, address=(self.host, self.port), framer=framer,
                                       trace_packet=self._trace_packet)
        self._task = asyncio.create_task(self._server.serve_forever())
        for _ in range(200):  # listening takes one or two loop turns
            transport: Any = self._server.transport
            if transport is not None and transport.sockets:
                self.port = int(transport.sockets[0].getsockname()[1])
                return self.port
            await asyncio.sleep(0.01)
        raise OSError(f"Modbus server did not start on {self.host}:{self.port}")

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown()  # type: ignore[no-untyped-call]
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._server = self._task = None

    async def _action(self, *args: Any) -> ExcCodes | None:
        # pymodbus calls (function_code, start_address, address, count, registers, set_values)
        start_address, registers = int(args[1]), args[4]
        if self.fault == "exception":
            return ExcCodes.DEVICE_FAILURE
        if self.fault == "gateway":
            return ExcCodes.GATEWAY_NO_RESPONSE
        offset = self._start - start_address
        source = [0xFFFF] * len(self._good) if self.fault == "garbage" else self._good
        registers[offset : offset + len(source)] = source
        return None

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        if not sending or self.fault not in ("silent", "short") or (self.rtu and
                                                                    self.fault == "short"):
            return data
        if self.fault == "silent":
            return b""
        # Drop the last register: fix the MBAP length and the PDU byte count to match, so the
        # frame is well formed and only its register count is wrong.
        if len(data) < _MBAP_LEN + 4 or data[_MBAP_LEN] & 0x80:
            return data
        body = bytearray(data[:-2])
        body[4:6] = (int.from_bytes(data[4:6], "big") - 2).to_bytes(2, "big")
        body[_MBAP_LEN + 1] -= 2
        return bytes(body)

