"""``MqttBridge``: one connection that publishes ampshare's state and takes session commands.

The will message marks the site ``offline`` if ampshare dies, so Home Assistant greys the
entities out instead of showing a limit that no longer holds. On every (re)connection the
discovery configs and ``online`` are published again. State publishing is best effort: when
the broker is away, ``publish_state`` returns False and the next state supersedes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import aiomqtt

from ampshare.adapters.mqtt._commands import SessionCommand, parse_command
from ampshare.adapters.mqtt._messages import (
    MqttMessage,
    SiteView,
    discovery_messages,
    state_messages,
    topic_id,
)
from ampshare.clock import Clock
from ampshare.core.site import Site
from ampshare.errors import InputError

__all__ = ["MqttBridge"]

log = logging.getLogger(__name__)


class MqttBridge:
    """Publish state and Home Assistant discovery for a site; hand commands to ``on_command``.

    ``on_command`` is called with each valid ``SessionCommand`` and must not block;
    ``on_rejected`` (optional) with each ``InputError`` of a bad command, which is also logged.
    """

    def __init__(self, *, host: str, port: int = 1883, site_id: str, site_name: str,
                 nodes: Sequence[tuple[str, str]], chargers: Sequence[tuple[str, str]],
                 clock: Clock, on_command: Callable[[SessionCommand], None],
                 on_rejected: Callable[[InputError], None] | None = None,
                 prefix: str | None = None, discovery_prefix: str = "homeassistant",
                 reconnect_s: float = 2.0, username: str | None = None,
                 password: str | None = None) -> None:
        self.host, self.port = host, port
        self._username, self._password = username, password
        self.prefix = prefix or f"ampshare/{topic_id(site_id)}"
        self._discovery = discovery_messages(prefix=self.prefix, site_id=site_id,
                                             site_name=site_name, nodes=nodes,
                                             chargers=chargers,
                                             discovery_prefix=discovery_prefix)
        self._clock = clock
        self._on_command = on_command
        self._on_rejected = on_rejected
        self._reconnect_s = reconnect_s
        self._client: aiomqtt.Client | None = None
        self._stop = asyncio.Event()
        self.connected = asyncio.Event()

    @classmethod
    def for_site(cls, site: Site, **kwargs: Any) -> MqttBridge:
        """A bridge announcing ``site``'s nodes and chargers (other arguments as ``__init__``)."""
        return cls(site_id=site.name, site_name=site.name,
                   nodes=[(n.id, n.name) for n in site.nodes],
                   chargers=[(c.id, c.name) for c in site.chargers], **kwargs)

    @property
    def discovery(self) -> tuple[MqttMessage, ...]:
        return tuple(self._discovery)

    async def publish_state(self, view: SiteView) -> bool:
        """Publish ``view``; False when not connected (nothing is queued)."""
        client = self._client
        if client is None:
            return False
        try:
            for m in state_messages(self.prefix, view):
                await client.publish(m.topic, m.payload, qos=m.qos, retain=m.retain)
        except aiomqtt.MqttError as exc:
            log.debug("state not published: %s", exc)
            return False
        return True

    async def run(self) -> None:
        """Stay connected until ``stop()``, reconnecting every ``reconnect_s`` seconds."""
        self._stop.clear()
        while not self._stop.is_set():
            try:
                await self._session()
            except aiomqtt.MqttError as exc:
                log.warning("MQTT %s:%s: %s; retrying in %g s", self.host, self.port, exc,
                            self._reconnect_s)
            except Exception:  # the link outlives a fault; the log tells it
                log.exception("MQTT %s:%s: bridge failed; reconnecting in %g s", self.host,
                              self.port, self._reconnect_s)
            finally:
                self._client = None
                self.connected.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._reconnect_s):
                    await self._stop.wait()

    def stop(self) -> None:
        self._stop.set()

    async def _session(self) -> None:
        status = f"{self.prefix}/status"
        will = aiomqtt.Will(status, "offline", qos=1, retain=True)
        ident = f"ampshare-bridge-{uuid.uuid4().hex[:8]}"
        async with aiomqtt.Client(self.host, self.port, identifier=ident, will=will,
                                  timeout=5.0, username=self._username,
                                  password=self._password) as client:
            for m in self._discovery:
                await client.publish(m.topic, m.payload, qos=m.qos, retain=m.retain)
            await client.publish(status, "online", qos=1, retain=True)
            await client.subscribe(f"{self.prefix}/charger/+/set/+")
            await client.subscribe(f"{self.prefix}/charger/+/set")
            self._client = client
            self.connected.set()
            listener = asyncio.create_task(self._listen(client))
            stopper = asyncio.create_task(self._stop.wait())
            try:
                await asyncio.wait({listener, stopper}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopper.cancel()
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener
            if not listener.cancelled() and listener.exception() is not None:
                raise listener.exception()  # type: ignore[misc]
            # A clean stop: say so, rather than leaving the will to tell it later.
            await client.publish(status, "offline", qos=1, retain=True)

    async def _listen(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload
            text = payload if isinstance(payload, bytes | str) else str(payload or "")
            self.handle(str(message.topic), bytes(text) if isinstance(text, bytearray) else text)

    def handle(self, topic: str, payload: bytes | str) -> None:
        """Take one command message (public so recorded messages can be replayed)."""
        try:
            commands = parse_command(self.prefix, topic, payload, self._clock.now_s())
        except InputError as exc:
            log.warning("MQTT command rejected: %s", exc)
            if self._on_rejected is not None:
                self._on_rejected(exc)
            return
        for command in commands:
            try:
                self._on_command(command)
            except Exception:  # one command's failure must not end the link
                # A fault behind the handler (a store error, a bug) loses this command, which
                # the log says; ending the listener would silently drop every later one.
                log.exception("MQTT command %s=%r for %s failed; send it again",
                              command.field, command.value, command.charger_id)
