"""The stationary battery beside the live loop (site file ``battery:``, sized by ``planner:``).

Every ``poll_s`` the battery is read (state of charge, power). After every control step the
plan's battery power for the slot in force is bounded by what the instant allows and sequenced
(``core.planner.BatteryDriver``: headroom at the root for charging, after the cars and what
they lack of their targets; the site's import for discharging; the state of charge; a rise
reserved as load first and sent after ``hold_s``) and sent when it changed by ``deadband_w``
or ``refresh_s`` has passed. The planner is told the state of charge at each solve. On stop
the battery is told to idle.

The controller never counts on the battery (``load_to_add_w``): the root meter's readings reach
it with the battery's discharge added back as load, and with the charge it is to take and has
not shown yet. A battery that has not been read within ``timeout_s`` is idled and counted as
the larger of its full discharge and the charge it was told — unknown means pessimistic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math

from ampshare.adapters.battery import BatteryLink
from ampshare.clock import Clock
from ampshare.config.sections import BatterySection
from ampshare.core.planner import Battery, BatteryCommand, BatteryDriver
from ampshare.core.site import Site
from ampshare.core.snapshot import BatteryReading
from ampshare.errors import DeviceError

__all__ = ["LiveBattery"]

log = logging.getLogger("ampshare.app.battery")
RETRY_S = 5.0  # a setpoint the battery refused is tried again after this (at most refresh_s)


class LiveBattery:
    """One battery driven from the plan (see the module docstring): the I/O around a
    ``BatteryDriver``, which the supervisor asks for each step's command
    (``driver.decide``)."""

    def __init__(
        self,
        link: BatteryLink,
        section: BatterySection,
        model: Battery,
        site: Site,
        clock: Clock,
        *,
        hold_s: float = 7.0,
    ) -> None:
        self.link = link
        self.section = section
        self.clock = clock
        self.driver = BatteryDriver(
            model=model,
            site=site,
            timeout_s=section.timeout_s,
            hold_s=hold_s,
            deadband_w=section.deadband_w,
            refresh_s=section.refresh_s,
        )
        self._sending = False
        self._failing = False
        self._send_failing = False
        self._retry_at = -math.inf

    # --- what is known (the driver's) ------------------------------------------------------
    @property
    def latest(self) -> BatteryReading | None:
        return self.driver.latest

    @latest.setter
    def latest(self, reading: BatteryReading | None) -> None:
        self.driver.latest = reading

    @property
    def command(self) -> BatteryCommand:
        return self.driver.command

    def fresh(self, now_s: float) -> BatteryReading | None:
        return self.driver.fresh(now_s)

    def soc_wh(self, now_s: float) -> float | None:
        return self.driver.soc_wh(now_s)

    def load_to_add_w(self, now_s: float) -> float:
        return self.driver.load_to_add_w(now_s)

    def planner_view(self, now_s: float) -> tuple[float | None, float]:
        return self.driver.planner_view(now_s)

    # --- the loop -------------------------------------------------------------------------
    async def run(self) -> None:
        """Read every ``poll_s`` until cancelled; a failure is logged once, and again when the
        battery answers."""
        while True:
            try:
                self.driver.latest = await self.link.read()
                if self._failing:
                    log.info("battery %s answers again", self.link.battery_id)
                    self._failing = False
            except DeviceError as exc:
                if not self._failing:
                    log.warning(
                        "battery %s: %s; it is idled and counted at its full discharge "
                        "until it answers",
                        self.link.battery_id,
                        exc,
                    )
                    self._failing = True
            await asyncio.sleep(self.section.poll_s)

    def due(self, now_s: float, cmd: BatteryCommand) -> bool:
        """Send ``cmd`` now (``BatteryDriver.due``), unless a send is under way or a refused
        one waits for its retry."""
        if self._sending or now_s < self._retry_at:
            return False
        return self.driver.due(now_s, cmd)

    async def send(self, cmd: BatteryCommand) -> None:
        """Write the setpoint; a failure is logged once per failing stretch and retried."""
        self._sending = True
        try:
            await self.link.set_power(cmd.power_w)
            self.driver.sent(cmd.power_w, self.clock.now_s())
            if self._send_failing:
                log.info("battery %s takes setpoints again", self.link.battery_id)
            self._send_failing = False
        except DeviceError as exc:
            retry = min(RETRY_S, self.section.refresh_s)
            self._retry_at = self.clock.now_s() + retry
            if not self._send_failing:
                log.warning(
                    "battery %s: setpoint %.0f W not sent: %s; retried every %g s",
                    self.link.battery_id,
                    cmd.power_w,
                    exc,
                    retry,
                )
            self._send_failing = True
        finally:
            self._sending = False

    async def idle(self) -> None:
        """On stop: tell the battery to idle (bounded), then close the link."""
        with contextlib.suppress(DeviceError, TimeoutError):
            async with asyncio.timeout(3.0):
                await self.link.set_power(0.0)
                self.driver.sent(0.0, self.clock.now_s())
        with contextlib.suppress(DeviceError):
            await self.link.close()
