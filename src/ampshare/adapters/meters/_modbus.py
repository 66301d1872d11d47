"""Modbus TCP / RTU meter driver on pymodbus.

One ``ModbusMeter`` owns one client connection. It reads the blocks its register map needs,
decodes them, and translates every pymodbus outcome into our errors:

* no answer within ``timeout_s`` after ``retries`` (``ModbusIOException``), refused or dropped
  connection (``ConnectionException``, ``OSError``) -> ``DeviceUnavailable``; the connection
  is closed so the next read reconnects and a late answer can never be taken for a new one;
* a gateway's exception 10/11 (the meter behind it did not answer) -> ``DeviceUnavailable``;
* any other exception reply, a wrong register count, NaN or absurd values ->
  ``DeviceProtocolError``.

Polling cadence, staleness and logging live in the coordinator, not here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from ampshare.adapters.meters._registers import RegisterMap, decode_map, plan_blocks
from ampshare.adapters.meters._sunspec import discover_sunspec
from ampshare.adapters.meters._values import reading_from_values
from ampshare.clock import Clock
from ampshare.config.meter_drivers import ModbusConnection
from ampshare.core.snapshot import MeterReading
from ampshare.errors import DeviceProtocolError, DeviceUnavailable

__all__ = ["ModbusLink", "ModbusMeter", "ModbusTarget", "link_key", "target_of"]

log = logging.getLogger(__name__)

_EXCEPTION_NAMES = {1: "illegal function", 2: "illegal data address", 3: "illegal data value",
                    4: "device failure", 5: "acknowledge", 6: "device busy",
                    10: "gateway path unavailable", 11: "gateway target did not respond"}
_GATEWAY_SILENT = (10, 11)


@dataclass(frozen=True, slots=True, kw_only=True)
class ModbusTarget:
    """Where a Modbus meter is: ``host``/``port`` for TCP, or ``serial_port`` for RTU."""

    host: str | None = None
    port: int = 502
    serial_port: str | None = None
    baudrate: int = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: int = 1
    unit_id: int = 1
    timeout_s: float = 1.0
    retries: int = 2

    def __post_init__(self) -> None:
        if (self.host is None) == (self.serial_port is None):
            raise ValueError("a Modbus meter needs exactly one of host (TCP) or serial_port (RTU)")

    @property
    def label(self) -> str:
        return self.serial_port or f"{self.host}:{self.port}"


def target_of(conn: ModbusConnection) -> ModbusTarget:
    """The target a site file's Modbus settings name (a meter's or a battery's driver)."""
    return ModbusTarget(host=conn.host, port=conn.port, serial_port=conn.serial_port,
                        baudrate=conn.baudrate, parity=conn.parity, stopbits=conn.stopbits,
                        unit_id=conn.unit_id, timeout_s=conn.timeout_s, retries=conn.retries)


class ModbusLink:
    """One Modbus connection (a TCP socket to a meter or gateway, or a serial port) that any
    number of meters with different unit ids share; their requests are serialised.

    Several meters on one RS-485 bus *must* share it: a serial port can be opened only once.
    The link connects on first use and after any failure; the client settings (timeout,
    retries) are those of the target it was created with.
    """

    def __init__(self, target: ModbusTarget) -> None:
        self.target = target
        self._client: AsyncModbusTcpClient | AsyncModbusSerialClient | None = None
        self._lock = asyncio.Lock()

    @property
    def key(self) -> tuple[object, ...]:
        return link_key(self.target)

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    async def read(self, meter_id: str, unit_id: int, address: int, count: int,
                   function: str, *, what: str = "meter") -> Sequence[int]:
        """Read ``count`` registers; raises ``DeviceUnavailable`` / ``DeviceProtocolError``.
        ``what`` names the device in errors (a meter, a battery)."""
        where = f"{what} {meter_id} at {self.target.label}"
        async with self._lock:
            client = await self._connect(where)
            call = (client.read_input_registers if function == "input"
                    else client.read_holding_registers)
            # The whole exchange is bounded even if pymodbus's own timeout misbehaves.
            guard_s = self.target.timeout_s * (self.target.retries + 1) + 1.0
            try:
                async with asyncio.timeout(guard_s):
                    rr: Any = await call(address, count=count, device_id=unit_id)
            except (ModbusIOException, ConnectionException, OSError, TimeoutError) as exc:
                # Closed so that a late answer can never be taken for the next request's.
                self.close()
                raise DeviceUnavailable(f"{where}: no answer reading {count} registers at "
                                        f"{address} ({exc})") from None
            except ModbusException as exc:
                raise DeviceProtocolError(f"{where}: bad reply at {address}: {exc}") from None
        return _check_reply(rr, where, address, count)

    async def write(self, device_id: str, unit_id: int, address: int, words: Sequence[int],
                    *, what: str = "meter") -> None:
        """Write holding registers (FC 16), with the errors of ``read``."""
        where = f"{what} {device_id} at {self.target.label}"
        async with self._lock:
            client = await self._connect(where)
            guard_s = self.target.timeout_s * (self.target.retries + 1) + 1.0
            try:
                async with asyncio.timeout(guard_s):
                    rr: Any = await client.write_registers(address, list(words),
                                                           device_id=unit_id)
            except (ModbusIOException, ConnectionException, OSError, TimeoutError) as exc:
                self.close()
                raise DeviceUnavailable(f"{where}: no answer writing {len(words)} registers at "
                                        f"{address} ({exc})") from None
            except ModbusException as exc:
                raise DeviceProtocolError(f"{where}: bad reply writing at {address}: "
                                          f"{exc}") from None
        if rr.isError():
            code = getattr(rr, "exception_code", None)
            name = _EXCEPTION_NAMES.get(code or 0, "unknown")
            err = DeviceUnavailable if code in _GATEWAY_SILENT else DeviceProtocolError
            raise err(f"{where}: exception reply {code} ({name}) writing {len(words)} registers "
                      f"at {address}; check the register address and unit id")

    async def _connect(self, where: str) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        if self._client is not None and self._client.connected:
            return self._client
        self.close()
        t = self.target
        # reconnect_delay=0: pymodbus must not reconnect behind our back; the next read does.
        client: AsyncModbusTcpClient | AsyncModbusSerialClient
        if t.host is not None:
            client = AsyncModbusTcpClient(t.host, port=t.port, timeout=t.timeout_s,
                                          retries=t.retries, reconnect_delay=0)
        else:
            client = AsyncModbusSerialClient(
                str(t.serial_port), baudrate=t.baudrate, parity=t.parity, stopbits=t.stopbits,
                timeout=t.timeout_s, retries=t.retries, reconnect_delay=0)
        self._client = client
        try:
            ok = await client.connect()
        except (OSError, ModbusException) as exc:
            raise DeviceUnavailable(f"{where}: cannot connect ({exc})") from None
        if not ok:
            raise DeviceUnavailable(f"{where}: cannot connect")
        return client


def link_key(target: ModbusTarget) -> tuple[object, ...]:
    """Targets with the same key are one physical link (same socket or serial port)."""
    if target.host is not None:
        return ("tcp", target.host, target.port)
    return ("serial", target.serial_port, target.baudrate, target.parity, target.stopbits)


def _check_reply(rr: Any, where: str, address: int, count: int) -> Sequence[int]:
    if rr.isError():
        code = getattr(rr, "exception_code", None)
        name = _EXCEPTION_NAMES.get(code or 0, "unknown")
        if code in _GATEWAY_SILENT:
            # The TCP gateway answered for a meter behind it that did not: no answer.
            raise DeviceUnavailable(f"{where}: exception reply {code} ({name}) reading "
                                    f"{count} registers at {address}; is the meter on the "
                                    "RS-485 line powered, wired and at this unit id?")
        raise DeviceProtocolError(f"{where}: exception reply {code} ({name}) reading {count} "
                                  f"registers at {address}; check the model and unit id")
    regs = list(getattr(rr, "registers", []))
    if len(regs) != count:
        raise DeviceProtocolError(f"{where}: asked {count} registers at {address}, "
                                  f"got {len(regs)}")
    return regs


class ModbusMeter:
    """A ``MeterSource`` reading a register map (or a discovered SunSpec model) over Modbus.

    ``register_map=None`` means SunSpec: the meter model is discovered on first contact.
    ``link`` shares a connection with other meters on the same bus or gateway (see
    ``build_meters``); without one the meter has a connection of its own.
    """

    def __init__(self, meter_id: str, target: ModbusTarget, register_map: RegisterMap | None,
                 clock: Clock, *, link: ModbusLink | None = None) -> None:
        if link is not None and link.key != link_key(target):
            raise ValueError(f"meter {meter_id}: link {link.key} is not its target "
                             f"{link_key(target)}")
        self._meter_id = meter_id
        self._target = target
        self._map = register_map
        self._clock = clock
        self._link = link or ModbusLink(target)

    @property
    def meter_id(self) -> str:
        return self._meter_id

    @property
    def register_map(self) -> RegisterMap | None:
        """The map in use (after SunSpec discovery, the discovered one)."""
        return self._map

    async def read(self) -> MeterReading:
        t_s = self._clock.now_s()  # when we asked: the conservative age of the answer
        rmap = self._map or await self._discover()
        registers: dict[int, int] = {}
        for block in plan_blocks(rmap.addresses()):
            words = await self._read(block.address, block.count, rmap.function)
            registers.update({block.address + i: w for i, w in enumerate(words)})
        values = decode_map(rmap, registers, meter_id=self._meter_id)
        return reading_from_values(self._meter_id, t_s, values)

    async def close(self) -> None:
        # A shared link is closed for all its meters; the next read of any reconnects it.
        self._link.close()

    async def _read(self, address: int, count: int, function: str) -> Sequence[int]:
        return await self._link.read(self._meter_id, self._target.unit_id, address, count,
                                     function)

    async def _discover(self) -> RegisterMap:
        self._map = await discover_sunspec(lambda a, n: self._read(a, n, "holding"))
        log.info("meter %s: found %s at %s", self._meter_id, self._map.model, self._target.label)
        return self._map
