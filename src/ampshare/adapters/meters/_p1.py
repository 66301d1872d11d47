"""Smart-meter P1 port: DSMR telegrams over serial or TCP, parsed with ``dsmr-parser``.

The meter pushes a telegram every 1 s (DSMR 5) or 10 s (DSMR 4); a background task reads the
byte stream (``serialx``, which opens both ``/dev/ttyUSB0`` and ``socket://host:port``),
frames telegrams with dsmr-parser's ``TelegramBuffer``, checks the CRC and parses them with its
``TelegramParser``. ``read`` returns the newest telegram stamped with the clock time it arrived.

DSMR states line currents in whole amperes (meters truncate), so a reported 5 A may be 5.9 A.
Where the telegram also has per-line power and voltage we take the larger of the reported
current and |P|/V; both are lower bounds of the true RMS current, the larger one the tighter.
A telegram with per-line power and voltage but no current lines gives |P|/V alone.
Sites metered by P1 should keep a margin of at least 1 A.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import serialx
from dsmr_parser import telegram_specifications
from dsmr_parser.clients.settings import (
    SERIAL_SETTINGS_V2_2,
    SERIAL_SETTINGS_V4,
    SERIAL_SETTINGS_V5,
)
from dsmr_parser.clients.telegram_buffer import TelegramBuffer
from dsmr_parser.exceptions import InvalidChecksumError, ParseError
from dsmr_parser.parsers import TelegramParser

from ampshare.adapters.meters._values import Quantity, reading_from_values
from ampshare.aio import cancel_and_wait
from ampshare.clock import Clock
from ampshare.core.snapshot import MeterReading
from ampshare.errors import DeviceProtocolError, DeviceUnavailable

__all__ = ["P1Meter", "parse_telegram", "telegram_values"]

log = logging.getLogger(__name__)

Q = Quantity
_SPECS: Mapping[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "2.2": (telegram_specifications.V2_2, SERIAL_SETTINGS_V2_2),
    "4": (telegram_specifications.V4, SERIAL_SETTINGS_V4),
    "5": (telegram_specifications.V5, SERIAL_SETTINGS_V5),
    "5B": (telegram_specifications.BELGIUM_FLUVIUS, SERIAL_SETTINGS_V5),
    "5L": (telegram_specifications.LUXEMBOURG_SMARTY, SERIAL_SETTINGS_V5),
    "5S": (telegram_specifications.SWEDEN, SERIAL_SETTINGS_V5),
    "Q3D": (telegram_specifications.Q3D, SERIAL_SETTINGS_V5),
}
_LINES = (("L1", Q.CURRENT_L1, Q.VOLTAGE_L1, Q.POWER_L1),
          ("L2", Q.CURRENT_L2, Q.VOLTAGE_L2, Q.POWER_L2),
          ("L3", Q.CURRENT_L3, Q.VOLTAGE_L3, Q.POWER_L3))


def _num(telegram: Any, name: str) -> float | None:
    obj = getattr(telegram, name, None)
    value = getattr(obj, "value", None)
    return float(value) if isinstance(value, Decimal | int | float) else None


def _net(telegram: Any, imported: str, exported: str, scale: float) -> float | None:
    imp, exp = _num(telegram, imported), _num(telegram, exported)
    if imp is None:
        return None
    return (imp - (exp or 0.0)) * scale


def telegram_values(telegram: Any) -> dict[Quantity, float]:
    """Base-unit values (A, V, W, Wh) of a parsed telegram; absent lines are left out."""
    out: dict[Quantity, float] = {}
    for line, q_i, q_v, q_p in _LINES:
        amps = _num(telegram, f"INSTANTANEOUS_CURRENT_{line}")
        volts = _num(telegram, f"INSTANTANEOUS_VOLTAGE_{line}")
        watts = _net(telegram, f"INSTANTANEOUS_ACTIVE_POWER_{line}_POSITIVE",
                     f"INSTANTANEOUS_ACTIVE_POWER_{line}_NEGATIVE", 1000.0)
        if volts is not None:
            out[q_v] = volts
        if watts is not None:
            out[q_p] = watts
        if watts is not None and volts:
            # |P|/V is a lower bound of the RMS current too (equal at unity power factor); it
            # also stands in when the telegram has no current line (DSMR 2.2, some meters).
            amps = abs(watts) / volts if amps is None else max(amps, abs(watts) / volts)
        if amps is not None:
            out[q_i] = amps
    power = _net(telegram, "CURRENT_ELECTRICITY_USAGE", "CURRENT_ELECTRICITY_DELIVERY", 1000.0)
    if power is not None:
        out[Q.POWER] = power
    energy = _num(telegram, "ELECTRICITY_IMPORTED_TOTAL")
    if energy is None:
        t1, t2 = (_num(telegram, f"ELECTRICITY_USED_TARIFF_{i}") for i in (1, 2))
        energy = None if t1 is None and t2 is None else (t1 or 0.0) + (t2 or 0.0)
    if energy is not None:
        out[Q.ENERGY_IMPORT] = energy * 1000.0
    return out


def parse_telegram(text: str, dsmr_version: str = "5") -> Any:
    """Parse one framed telegram (``/`` … ``!CRC``); raises ``DeviceProtocolError``."""
    spec = _SPECS[dsmr_version][0]
    try:
        return TelegramParser(spec).parse(text, throw_ex=True)
    except (ParseError, InvalidChecksumError, ValueError) as exc:
        raise DeviceProtocolError(f"bad P1 telegram: {exc}") from None


class P1Meter:
    """A ``MeterSource`` reading DSMR telegrams from ``url`` (a serial device or
    ``socket://host:port``). ``first_telegram_s`` bounds the first ``read``'s wait."""

    def __init__(self, meter_id: str, *, url: str, dsmr_version: str, clock: Clock,
                 first_telegram_s: float = 12.0, reconnect_s: float = 2.0) -> None:
        if dsmr_version not in _SPECS:
            raise ValueError(f"unknown DSMR version {dsmr_version!r}; one of {sorted(_SPECS)}")
        self._meter_id = meter_id
        self._url = url
        self._version = dsmr_version
        self._parser = TelegramParser(_SPECS[dsmr_version][0])
        self._clock = clock
        self._first_s = first_telegram_s
        self._reconnect_s = reconnect_s
        self._buffer = TelegramBuffer()
        self._latest: MeterReading | None = None
        self._error: DeviceProtocolError | None = None
        self._conn_error = "not connected yet"
        self._connected = False
        self._arrived = asyncio.Event()
        self._refused = asyncio.Event()  # the last attempt to open the port failed
        self._task: asyncio.Task[None] | None = None

    @property
    def meter_id(self) -> str:
        return self._meter_id

    async def read(self) -> MeterReading:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._listen(), name=f"p1-{self._meter_id}")
        if not self._arrived.is_set():
            # Wait for a telegram, but not once the port could not even be opened: say why now.
            waits = {asyncio.ensure_future(self._arrived.wait()),
                     asyncio.ensure_future(self._refused.wait())}
            try:
                await asyncio.wait(waits, timeout=self._first_s,
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
                await asyncio.gather(*waits, return_exceptions=True)
        if self._error is not None:
            raise self._error
        if self._latest is None or not self._connected:
            why = self._conn_error if not self._connected else "no telegram yet"
            raise DeviceUnavailable(f"meter {self._meter_id}: P1 {self._url}: {why}")
        return self._latest

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait([task], what="the P1 reader")
        self._connected = False
        self._conn_error = "closed"
        # A later read reconnects and waits for a telegram of the new connection.
        self._arrived.clear()
        self._refused.clear()
        self._latest, self._error = None, None
        self._buffer = TelegramBuffer()

    def feed(self, data: str) -> None:
        """Take bytes from the port (as text); complete telegrams update the reading."""
        self._buffer.append(data)
        for text in self._buffer.get_all():
            try:
                telegram = self._parser.parse(text, throw_ex=True)
                self._latest = reading_from_values(self._meter_id, self._clock.now_s(),
                                                   telegram_values(telegram))
                self._error = None
            except (ParseError, InvalidChecksumError, DeviceProtocolError, ValueError) as exc:
                # ValueError: dsmr-parser's, when noise puts a '!' before letters (read as CRC).
                self._error = DeviceProtocolError(f"meter {self._meter_id}: bad P1 telegram: "
                                                  f"{exc}")
            self._arrived.set()

    async def _listen(self) -> None:
        settings = dict(_SPECS[self._version][1])
        settings.pop("timeout", None)  # stream reads wait as long as needed
        while True:
            writer = None
            try:
                reader, writer = await serialx.open_serial_connection(url=self._url, **settings)
                self._connected = True
                self._refused.clear()
                while chunk := await reader.read(4096):
                    self.feed(chunk.decode("ascii", "replace"))
                self._conn_error = "port closed"
            except (OSError, serialx.SerialException) as exc:
                self._conn_error = str(exc) or type(exc).__name__
                if not self._connected:
                    self._refused.set()
            finally:
                if writer is not None:
                    writer.close()
            if self._connected:
                log.warning("meter %s: P1 %s lost: %s", self._meter_id, self._url, self._conn_error)
            self._connected = False
            await asyncio.sleep(self._reconnect_s)
