"""P1 (DSMR) against recorded telegrams: parsing, framing, CRC, and a TCP P1 port on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ampshare.adapters.meters import (
    P1Meter,
    Quantity,
    check_conformance,
    parse_telegram,
    telegram_values,
)
from ampshare.clock import VirtualClock
from ampshare.errors import DeviceProtocolError, DeviceUnavailable

Q = Quantity
FIX = Path(__file__).parent / "fixtures" / "p1"


def _text(name: str) -> str:
    return (FIX / name).read_bytes().decode("ascii")


def _split(text: str) -> list[str]:
    parts = text.split("\r\n/")
    return [parts[0] + "\r\n"] + ["/" + p + "\r\n" for p in parts[1:-1]] + ["/" + parts[-1]]


def test_spec_example_values() -> None:
    values = telegram_values(parse_telegram(_text("dsmr5_spec_example.txt")))
    assert values[Q.VOLTAGE_L2] == pytest.approx(220.2)
    assert values[Q.POWER] == pytest.approx(1193.0)
    assert values[Q.POWER_L1] == pytest.approx(1111.0 - 4444.0)
    # Reported 1 A, but |P|/V says at least 15.1 A: the tighter lower bound wins.
    assert values[Q.CURRENT_L1] == pytest.approx(3333.0 / 220.1)
    assert values[Q.ENERGY_IMPORT] == pytest.approx(2 * 123_456_789.0)


def test_whole_ampere_currents_are_raised_to_what_power_proves() -> None:
    session = _split(_text("dsmr5_session.txt"))
    assert len(session) == 5
    last = telegram_values(parse_telegram(session[-1]))
    # The meter says 17 A (truncated); 4.101 kW at 230.4 V is 17.8 A.
    assert last[Q.CURRENT_L1] == pytest.approx(4101.0 / 230.4)
    assert last[Q.CURRENT_L2] == pytest.approx(1.2, abs=0.01)


def test_bad_crc_is_a_protocol_error() -> None:
    with pytest.raises(DeviceProtocolError, match=r"CRC|checksum"):
        parse_telegram(_text("dsmr5_bad_crc.txt"))


async def test_framing_across_arbitrary_chunks() -> None:
    clock = VirtualClock(100.0)
    meter = P1Meter("p1", url="socket://unused:1", dsmr_version="5", clock=clock)
    data = _text("dsmr5_session.txt")
    for i in range(0, len(data), 97):  # a serial port hands over odd-sized pieces
        meter.feed(data[i : i + 97])
    assert meter._latest is not None
    assert meter._latest.current_a is not None
    assert meter._latest.current_a[0] == pytest.approx(4101.0 / 230.4)
    assert meter._latest.t_s == 100.0


class _P1Port:
    """A TCP P1 port (a ser2net or ESP P1 bridge); the test decides when a telegram goes out."""

    def __init__(self) -> None:
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def _serve(self, _r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self._writers.append(w)

    async def wait_client(self) -> None:
        await _until(lambda: bool(self._writers))

    async def send(self, telegram: str) -> None:
        for w in list(self._writers):
            try:
                w.write(telegram.encode("ascii"))
                await w.drain()
            except ConnectionError:  # that client has gone; the others still listen
                self._writers.remove(w)

    def drop(self) -> None:
        """Close every connection (the bridge rebooted)."""
        for w in self._writers:
            w.close()
        self._writers.clear()

    async def __aenter__(self) -> _P1Port:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self.drop()
        self._server.close()
        await self._server.wait_closed()


SESSION = _split(_text("dsmr5_session.txt"))


async def _until(cond: Callable[[], bool], timeout_s: float = 3.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not cond():
            await asyncio.sleep(0.005)


async def _started(port: _P1Port, clock: VirtualClock, **kw: float) -> P1Meter:
    meter = P1Meter("p1", url=f"socket://127.0.0.1:{port.port}", dsmr_version="5",
                    clock=clock, first_telegram_s=kw.get("first_telegram_s", 2.0),
                    reconnect_s=kw.get("reconnect_s", 0.05))
    first = asyncio.create_task(meter.read())
    await port.wait_client()
    await port.send(SESSION[0])
    await first
    return meter


async def test_reads_a_tcp_p1_port() -> None:
    clock = VirtualClock(500.0)
    async with _P1Port() as port:
        meter = await _started(port, clock)
        r0 = await meter.read()
        assert (r0.meter_id, r0.t_s) == ("p1", 500.0)
        assert r0.current_a == pytest.approx((2.4, 1.2, 0.8), abs=0.01)
        clock.advance(1.0)
        await port.send(SESSION[4])
        await _until(lambda: meter._latest is not None and meter._latest.t_s == 501.0)
        r = await meter.read()
        assert r.current_a is not None
        assert r.current_a[0] == pytest.approx(17.8, abs=0.01)
        assert r.voltage_v == pytest.approx((230.4, 231.1, 229.8))
        await meter.close()


async def test_corrupt_telegram_then_recovery() -> None:
    async with _P1Port() as port:
        meter = await _started(port, VirtualClock())
        await port.send(_text("dsmr5_bad_crc.txt"))
        await _until(lambda: meter._error is not None)
        with pytest.raises(DeviceProtocolError, match="p1"):
            await meter.read()
        await port.send(SESSION[1])
        await _until(lambda: meter._error is None)
        assert (await meter.read()).power_w is not None
        await meter.close()


async def test_bridge_reboot_is_unavailable_then_reconnects() -> None:
    clock = VirtualClock()
    async with _P1Port() as port:
        meter = await _started(port, clock)
        port.drop()
        await _until(lambda: not meter._connected)
        with pytest.raises(DeviceUnavailable, match="port closed"):
            await meter.read()
        await port.wait_client()  # the meter dialled again by itself
        clock.advance(3.0)
        await port.send(SESSION[2])
        await _until(lambda: meter._connected and meter._latest is not None
                     and meter._latest.t_s == clock.now_s())
        assert (await meter.read()).t_s == clock.now_s()
        await meter.close()


async def test_nothing_listening_is_unavailable() -> None:
    meter = P1Meter("p1", url="socket://127.0.0.1:1", dsmr_version="5", clock=VirtualClock(),
                    first_telegram_s=0.2)
    with pytest.raises(DeviceUnavailable, match=r"refused|Connect"):
        await meter.read()
    await meter.close()


async def test_p1_driver_conforms() -> None:
    clock = VirtualClock(10.0)
    async with _P1Port() as port:
        meter = await _started(port, clock)

        async def keep_sending() -> None:
            while True:
                await port.send(SESSION[3])
                await asyncio.sleep(0.01)

        sender = asyncio.create_task(keep_sending())
        try:
            assert await check_conformance(meter, clock) == []
        finally:
            sender.cancel()


def _crc16(data: bytes) -> int:
    """CRC16/ARC as DSMR 5 defines it (polynomial 0xA001 reflected, initial 0)."""
    crc = 0
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def test_a_telegram_without_current_lines_gives_power_over_voltage() -> None:
    lines = SESSION[0][: SESSION[0].index("!") + 1].split("\r\n")
    kept = [x for x in lines if not x.startswith(("1-0:31.7.0", "1-0:51.7.0", "1-0:71.7.0"))]
    assert len(kept) == len(lines) - 3
    body = "\r\n".join(kept)
    values = telegram_values(parse_telegram(body + f"{_crc16(body.encode('ascii')):04X}\r\n"))
    assert values[Q.CURRENT_L1] == pytest.approx(553.0 / 230.4)
    assert values[Q.CURRENT_L3] == pytest.approx(184.0 / 229.8)


async def test_a_port_that_cannot_be_opened_says_why_at_once() -> None:
    meter = P1Meter("p1", url="/dev/no-such-p1-port", dsmr_version="5", clock=VirtualClock(),
                    first_telegram_s=30.0)
    async with asyncio.timeout(5):  # not the 30 s a telegram may take to come
        with pytest.raises(DeviceUnavailable, match="no-such-p1-port"):
            await meter.read()
    await meter.close()


_NOISY = SESSION[0] + SESSION[1]
# Where noise does most harm: the CRC digits after '!', and line ends (a '!' just before one
# makes the framing cut a telegram short).
_WEAK_SPOTS = [i for i, c in enumerate(_NOISY) if c == "\r" or _NOISY[max(0, i - 5):i].count("!")]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.one_of(st.integers(0, len(_NOISY) - 1), st.sampled_from(_WEAK_SPOTS)),
                          st.one_of(st.sampled_from("!/()*:G"),
                                    st.characters(min_codepoint=32, max_codepoint=126))),
                min_size=1, max_size=12))
def test_line_noise_never_escapes_the_driver(noise: list[tuple[int, str]]) -> None:
    # Characters flipped anywhere: the telegram is refused with our error, or still parses;
    # the reading task never dies of a foreign exception.
    chars = list(_NOISY)
    for pos, char in noise:
        chars[pos - 1 if chars[pos] == "\r" and char == "!" else pos] = char
    meter = P1Meter("p1", url="socket://unused:1", dsmr_version="5", clock=VirtualClock())
    meter.feed("".join(chars))
    assert meter._latest is not None or meter._error is not None or not meter._arrived.is_set()


def test_a_stray_bang_in_the_header_is_a_protocol_error() -> None:
    # Noise turns "/XMX5L..." into "/!MX5L...": dsmr-parser reads "MX5L" as the CRC and raises
    # ValueError; the driver must report a bad telegram, and its reading task must live on.
    bad = "/!" + SESSION[0][2:]
    with pytest.raises(DeviceProtocolError, match="bad P1 telegram"):
        parse_telegram(bad)
    meter = P1Meter("p1", url="socket://unused:1", dsmr_version="5", clock=VirtualClock())
    meter.feed(bad)
    assert meter._error is not None
