"""Meter input from MQTT topics: Shelly Pro 3EM, Tasmota SML, Home Assistant, zigbee2mqtt.

MQTT is push: a background task keeps a subscription open and remembers the newest value of
each quantity with the (injected) clock time it arrived. ``read`` assembles those values into
a ``MeterReading`` stamped with the time of the *oldest* value in it, so one silent topic makes
the whole reading age and go stale rather than hiding behind fresher ones.

A payload is either a plain number or JSON with an RFC 6901 pointer to the number
(``/a_current`` for Shelly ``status/em:0``, ``/SML/Power_curr`` for Tasmota,
``/current`` for zigbee2mqtt). A payload that does not yield a number makes ``read`` raise
``DeviceProtocolError`` until a good one arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import aiomqtt

from ampshare.adapters.meters._values import Quantity, check_value, reading_from_values
from ampshare.aio import cancel_and_wait
from ampshare.clock import Clock
from ampshare.core.snapshot import MeterReading
from ampshare.errors import DeviceProtocolError, DeviceUnavailable

__all__ = [
    "Latest",
    "MqttMeter",
    "TopicListener",
    "TopicValue",
    "as_text",
    "extract_value",
    "resolve_pointer",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicValue:
    """Where one quantity arrives: ``topic``, ``pointer`` into its JSON ("" = plain number),
    and ``scale`` into the quantity's unit."""

    quantity: Quantity
    topic: str
    pointer: str = ""
    scale: float = 1.0


def resolve_pointer(document: object, pointer: str) -> object:
    """The value ``pointer`` (RFC 6901) designates in ``document``; raises ``KeyError``."""
    if pointer == "":
        return document
    if not pointer.startswith("/"):
        raise KeyError(pointer)
    node = document
    for raw in pointer[1:].split("/"):
        token = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict):
            node = node[token]
        elif isinstance(node, list) and token.isdigit():
            node = node[int(token)]
        else:
            raise KeyError(token)
    return node


def extract_value(payload: bytes | str, pointer: str) -> float:
    """The number in ``payload`` at ``pointer``; raises ``DeviceProtocolError`` otherwise."""
    text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
    try:
        document = json.loads(text)
        value = resolve_pointer(document, pointer)
    except (ValueError, KeyError, IndexError, RecursionError):  # RecursionError: [[[[...
        raise DeviceProtocolError(
            f"payload {text[:80]!r} has no value at {pointer or 'its root'!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise DeviceProtocolError(f"value at {pointer or 'root'!r} is not a number: {value!r}")
    try:
        return float(value)
    except ValueError:
        raise DeviceProtocolError(f"value at {pointer or 'root'!r} is not a number: "
                                  f"{value!r}") from None


@dataclass(slots=True)
class Latest:
    """The newest value of one topic's quantity, when it arrived, or why it is unusable."""

    value: float | None = None
    t_s: float = 0.0
    error: DeviceProtocolError | None = None


class TopicListener:
    """A subscription to ``topics`` kept open on a broker, reconnecting after
    ``reconnect_s``; every message goes to ``handle(topic, payload)``. ``client`` is the
    connected client (for publishing on the same connection), None while not connected, and
    ``conn_error`` then says why. ``what`` names the device in the log ("meter house")."""

    def __init__(
        self,
        what: str,
        *,
        host: str,
        port: int,
        topics: Sequence[str],
        handle: Callable[[str, bytes | str], None],
        username: str | None = None,
        password: str | None = None,
        reconnect_s: float = 1.0,
    ) -> None:
        self.what = what
        self.host, self.port = host, port
        self._topics = sorted(set(topics))
        self._handle = handle
        self._username, self._password = username, password
        self._reconnect_s = reconnect_s
        self.client: aiomqtt.Client | None = None
        self.conn_error = "not connected yet"
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Subscribe in the background, unless already doing so."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._listen(), name=f"mqtt {self.what}")

    async def started(self, got_all: asyncio.Event, first_message_s: float) -> None:
        """``start``, then wait up to ``first_message_s`` for ``got_all`` (set by the owner
        once every topic has brought a value or an error), so that a first read does not
        fail only because the broker has not delivered yet."""
        self.start()
        if not got_all.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(first_message_s):
                    await got_all.wait()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait([task], what=f"the MQTT listener of {self.what}")
        self.client = None
        self.conn_error = "closed"

    async def _listen(self) -> None:
        ident = f"ampshare-{self.what.replace(' ', '-')}-{uuid.uuid4().hex[:8]}"
        while True:
            try:
                async with aiomqtt.Client(self.host, self.port, identifier=ident, timeout=5.0,
                                          username=self._username,
                                          password=self._password) as client:
                    for topic in self._topics:
                        await client.subscribe(topic)
                    self.client = client
                    async for message in client.messages:
                        self._handle(str(message.topic), as_text(message.payload))
                self.conn_error = "broker closed the connection"
            except aiomqtt.MqttError as exc:
                if self.client is not None:
                    log.warning("%s: MQTT connection lost: %s", self.what, exc)
                self.conn_error = str(exc) or type(exc).__name__
            self.client = None
            await asyncio.sleep(self._reconnect_s)


class MqttMeter:
    """A ``MeterSource`` fed by MQTT messages; starts its subscription on the first ``read``.

    ``first_message_s`` is how long the first ``read`` waits for values (retained messages
    arrive right after subscribing; others with the device's next publication).
    """

    def __init__(self, meter_id: str, *, host: str, port: int, values: Sequence[TopicValue],
                 clock: Clock, first_message_s: float = 2.0, reconnect_s: float = 1.0,
                 username: str | None = None, password: str | None = None) -> None:
        if not values:
            raise ValueError("an MQTT meter needs at least one topic")
        self._meter_id = meter_id
        self._values = tuple(values)
        self._clock = clock
        self._first_message_s = first_message_s
        self._latest = {v.quantity: Latest() for v in self._values}
        self._got_all = asyncio.Event()
        self._sub = TopicListener(
            f"meter {meter_id}", host=host, port=port, topics=[v.topic for v in self._values],
            handle=self.handle, username=username, password=password, reconnect_s=reconnect_s,
        )

    @property
    def meter_id(self) -> str:
        return self._meter_id

    @property
    def connected(self) -> bool:
        return self._sub.client is not None

    async def read(self) -> MeterReading:
        await self._sub.started(self._got_all, self._first_message_s)
        if not self.connected:
            raise DeviceUnavailable(f"meter {self._meter_id}: MQTT broker {self._sub.host}:"
                                    f"{self._sub.port}: {self._sub.conn_error}")
        return self._assemble()

    def _assemble(self) -> MeterReading:
        missing = [v.topic for v in self._values if self._latest[v.quantity].value is None
                   and self._latest[v.quantity].error is None]
        if missing:
            raise DeviceUnavailable(f"meter {self._meter_id}: nothing received yet on "
                                    f"{sorted(set(missing))}")
        for latest in self._latest.values():
            if latest.error is not None:
                raise latest.error
        values = {q: lt.value for q, lt in self._latest.items() if lt.value is not None}
        oldest_s = min(lt.t_s for lt in self._latest.values())
        return reading_from_values(self._meter_id, oldest_s, values)

    async def close(self) -> None:
        await self._sub.stop()
        # A later read resubscribes and waits for values of the new subscription.
        self._got_all.clear()
        self._latest = {v.quantity: Latest() for v in self._values}

    def handle(self, topic: str, payload: bytes | str) -> None:
        """Take one message (called by the subscription; public for replaying recordings)."""
        now = self._clock.now_s()
        for v in self._values:
            if v.topic != topic:
                continue
            latest = self._latest[v.quantity]
            try:
                value = extract_value(payload, v.pointer) * v.scale
                latest.value = check_value(self._meter_id, v.quantity, value)
                latest.error = None
            except DeviceProtocolError as exc:
                latest.error = DeviceProtocolError(f"meter {self._meter_id}: topic {topic}: {exc}")
            latest.t_s = now
        if all(lt.value is not None or lt.error for lt in self._latest.values()):
            self._got_all.set()


def as_text(payload: object) -> bytes | str:
    """An MQTT payload as bytes or text (aiomqtt gives bytes, bytearray, str, numbers)."""
    if isinstance(payload, bytes | str):
        return payload
    if isinstance(payload, bytearray):
        return bytes(payload)
    return "" if payload is None else str(payload)
