"""MQTT beside the live loop: the latest state out (rate-limited), session commands in.

``MqttLink`` runs ``ampshare.adapters.mqtt.MqttBridge`` for the site file's ``mqtt:`` section.
After each control step the supervisor hands it the ``StepResult``; a publisher sends the
newest one at most once per ``publish_interval_s`` (older ones are superseded, never queued).
Commands (departure, energy wanted, priority of the session on a charger) go to a callback
the supervisor gives, which edits the session the same way an API edit does.

``SessionEdits`` keeps such edits when no web runtime (and so no store) runs, and lays them
over the sessions the chargers report, as the web bridge does with API edits.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from ampshare.adapters.mqtt import MqttBridge, SessionCommand, apply_command, site_view
from ampshare.aio import cancel_and_wait
from ampshare.clock import Clock
from ampshare.config import SiteConfig
from ampshare.config.sections import MqttSection
from ampshare.control import StepResult
from ampshare.core.site import Site
from ampshare.core.snapshot import Session
from ampshare.errors import ConfigError, ConfigIssue

__all__ = ["COMMAND_FIELDS", "MqttLink", "SessionEdits", "command_changes", "mqtt_password"]

log = logging.getLogger("ampshare.app")

#: The session fields an MQTT command may change.
COMMAND_FIELDS = ("departure_s", "energy_wanted_wh", "priority")


def mqtt_password(config: SiteConfig) -> str | None:
    """The broker password from the environment variable ``mqtt.password_env`` names."""
    section = config.mqtt
    if section is None or section.password_env is None:
        return None
    value = os.environ.get(section.password_env)
    if value is None:
        raise ConfigError([ConfigIssue(
            file=config.source, path="mqtt.password_env",
            message=f"environment variable {section.password_env} is not set",
            hint="export it with the broker password before `ampshare run`, or remove "
                 "password_env for a broker without one")])
    return value


def command_changes(session: Session, command: SessionCommand) -> dict[str, float | int | None]:
    """The fields ``command`` changes on ``session`` (what ``edit_session`` takes)."""
    new = apply_command(session, command)
    return {f: getattr(new, f) for f in COMMAND_FIELDS if getattr(new, f) != getattr(session, f)}


class SessionEdits:
    """MQTT edits kept in memory (no web runtime): session id -> changed fields."""

    def __init__(self) -> None:
        self._by_session: dict[str, dict[str, float | int | None]] = {}

    def apply(self, sessions: Sequence[Session], command: SessionCommand) -> Session | None:
        """Edit the session on ``command.charger_id`` among ``sessions``; None: no car there."""
        current = next((s for s in self.overlay(sessions)
                        if s.charger_id == command.charger_id), None)
        if current is None:
            return None
        changes = command_changes(current, command)
        self._by_session.setdefault(current.session_id, {}).update(changes)
        return replace(current, **changes)  # type: ignore[arg-type]

    def overlay(self, sessions: Sequence[Session]) -> tuple[Session, ...]:
        """``sessions`` with the edits laid over; edits of sessions gone are forgotten."""
        present = {s.session_id for s in sessions}
        for sid in self._by_session.keys() - present:
            del self._by_session[sid]
        return tuple(replace(s, **self._by_session[s.session_id])  # type: ignore[arg-type]
                     if s.session_id in self._by_session else s for s in sessions)


class MqttLink:
    """The bridge for one site plus its rate-limited publisher."""

    def __init__(self, section: MqttSection, site: Site, clock: Clock, *, password: str | None,
                 on_command: Callable[[SessionCommand], None]) -> None:
        self.site = site
        self._clock = clock
        self._interval_s = section.publish_interval_s
        self.bridge = MqttBridge.for_site(
            site, host=section.host, port=section.port, clock=clock, on_command=on_command,
            prefix=section.prefix, discovery_prefix=section.discovery_prefix,
            reconnect_s=section.reconnect_s, username=section.username, password=password)
        self._latest: StepResult | None = None
        self._fresh = asyncio.Event()
        self.published = 0  # states the broker took (for tests and the log)

    def after_step(self, result: StepResult) -> None:
        """Offer the newest step; it replaces one not yet published."""
        self._latest = result
        self._fresh.set()

    async def run(self) -> None:
        """Stay connected and publish until ``stop()`` (the bridge then says ``offline``)."""
        publisher = asyncio.create_task(self._publish())
        try:
            await self.bridge.run()
        finally:
            await cancel_and_wait([publisher], what="the MQTT publisher")

    def stop(self) -> None:
        self.bridge.stop()

    async def _publish(self) -> None:
        while True:
            await self._fresh.wait()
            self._fresh.clear()
            result = self._latest
            if result is not None:
                view = site_view(self.site, result, self._clock.now_s())
                if await self.bridge.publish_state(view):
                    self.published += 1
            # Rate limit: whatever arrives meanwhile is published once, as the newest state.
            await asyncio.sleep(self._interval_s)

    @property
    def connected(self) -> asyncio.Event:
        return self.bridge.connected

    def describe(self) -> dict[str, Any]:
        return {"host": self.bridge.host, "port": self.bridge.port, "prefix": self.bridge.prefix}
