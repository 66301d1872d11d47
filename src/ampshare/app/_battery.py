"""The stationary battery beside the live loop (site file ``battery:``, sized by ``planner:``).

Every ``poll_s`` the battery is read (state of charge, power). After every control step the
plan's battery power for the slot in force is bounded by what the instant allows
(``core.planner.battery_command``: headroom at the root for charging, after the cars and what
they lack of their targets; the site's import for discharging; the state of charge) and sent
when it changed by ``deadband_w`` or ``refresh_s`` has passed. The planner is told the state
of charge at each solve. On stop the battery is told to idle.

The controller never counts on the battery (``load_to_add_w``): the root meter's readings reach
it with the battery's discharge added back as load, and with the charge it is to take and has
not shown yet. A rise in charge is sequenced like a car's increase: first *reserved* (counted
as load from the next reading on, so the controller lowers the cars' current beyond their plan
targets, decreases first), and sent only once the reservation has stood ``hold_s`` (the cars'
reaction time and a margin); a fall is sent at once. A battery that has not been read within
``timeout_s`` is idled and counted at its full discharge — unknown means pessimistic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Mapping

from ampshare.adapters.battery import BatteryLink
from ampshare.clock import Clock
from ampshare.config.sections import BatterySection
from ampshare.core.allocation import Allocation, site_import_kw
from ampshare.core.planner import (
    Battery,
    BatteryCommand,
    Plan,
    battery_command,
    ev_gap_w,
    planned_battery_w,
    spare_power_w,
)
from ampshare.core.site import Site
from ampshare.core.snapshot import BatteryReading
from ampshare.errors import DeviceError

__all__ = ["LiveBattery"]

log = logging.getLogger("ampshare.app.battery")


class LiveBattery:
    """One battery driven from the plan (see the module docstring)."""

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
        self.hold_s = hold_s
        self.section = section
        self.model = model
        self.site = site
        self.clock = clock
        self.latest: BatteryReading | None = None
        self.command = BatteryCommand(power_w=0.0, reason="not started")
        self.sent_w: float | None = None  # the last setpoint the battery accepted
        self._sent_t = -math.inf
        self.reserved_w = 0.0  # charge counted as load ahead of sending it
        self._reserved_t = -math.inf
        self._sending = False
        self._failing = False
        self._send_failing = False
        self._retry_at = -math.inf

    # --- what is known --------------------------------------------------------------------
    def fresh(self, now_s: float) -> BatteryReading | None:
        r = self.latest
        return r if r is not None and now_s - r.t_s <= self.section.timeout_s else None

    def soc_wh(self, now_s: float) -> float | None:
        r = self.fresh(now_s)
        return None if r is None else r.soc_pct / 100.0 * self.model.capacity_wh

    def load_to_add_w(self, now_s: float) -> float:
        """What the controller adds to the root meter's readings [W]: the battery's discharge,
        and the charge it was told to take or has reserved beyond what it shows; while not read
        freshly, the larger of its full discharge and that charge."""
        r = self.fresh(now_s)
        if r is None:
            # Not known: it may be discharging at its most (the meter lower by that) or about
            # to take the charge it was told (not in the meter yet), never both at once.
            return max(self.model.max_discharge_w, self._charge_held_w())
        discharge = max(0.0, -r.power_w)
        return discharge + max(0.0, self._charge_held_w() - max(0.0, r.power_w))

    def _charge_held_w(self) -> float:
        """The charge the battery was told to take or has reserved, whichever is more."""
        return max(0.0, self.sent_w or 0.0, self.reserved_w)

    def planner_view(self, now_s: float) -> tuple[float | None, float]:
        """For ``LivePlanner.observe``: what of the root's non-EV load (as the step counted it)
        is the battery's, not the building's — its charge, or the charge it was told to take
        where more (None while not read freshly: then nothing is known); and what the step
        added to the site's import for it (``load_to_add_w``; 0 while not read freshly, so
        the peak so far is rather overstated)."""
        r = self.fresh(now_s)
        if r is None:
            return None, 0.0
        return max(0.0, r.power_w, self._charge_held_w()), self.load_to_add_w(now_s)

    # --- the loop -------------------------------------------------------------------------
    async def run(self) -> None:
        """Read every ``poll_s`` until cancelled; a failure is logged once, and again when the
        battery answers."""
        while True:
            try:
                self.latest = await self.link.read()
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

    def decide(
        self,
        now_s: float,
        plan: Plan | None,
        allocation: Allocation | None,
        *,
        targets_a: Mapping[str, float] | None = None,
        charger_of: Mapping[str, str] | None = None,
    ) -> BatteryCommand:
        """The command for now (also kept as ``command``). ``targets_a``: the plan's targets
        the step ran with (session id -> A), ``charger_of``: session id -> charger id."""
        r = self.fresh(now_s)
        headroom = allocation.headroom if allocation is not None else ()
        imported = site_import_kw(self.site, headroom)
        shortfall = extra = 0.0
        if allocation is not None and targets_a:
            shortfall, extra = ev_gap_w(
                allocation.limits, targets_a, charger_of or {}, self.site.voltage.line_to_neutral_v
            )
        wanted = battery_command(
            planned_w=planned_battery_w(plan, now_s),
            battery=self.model,
            soc_wh=self.soc_wh(now_s),
            power_w=None if r is None else r.power_w,
            # the charge reserved beyond what it shows was kept from the cars for it
            spare_w=spare_power_w(self.site, headroom)
            + (0.0 if r is None else max(0.0, self._charge_held_w() - max(0.0, r.power_w))),
            # the step counted the discharge as load: what the site really imports is less
            import_w=None if imported is None else imported * 1000.0 - self.load_to_add_w(now_s),
            shortfall_w=shortfall,
            extra_w=extra,
        )
        self.command = self._sequenced(now_s, wanted)
        return self.command

    def _sequenced(self, now_s: float, wanted: BatteryCommand) -> BatteryCommand:
        """A rise in charge is reserved first and sent after ``hold_s``; a fall at once."""
        charge = max(0.0, wanted.power_w)
        if charge > self.reserved_w + 1e-9:
            self._reserved_t = now_s  # a higher reservation starts its hold again
        self.reserved_w = charge
        going = max(0.0, self.sent_w or 0.0)
        if charge <= going or now_s - self._reserved_t >= self.hold_s:
            return wanted
        return BatteryCommand(
            power_w=going,
            reason=f"{wanted.reason}: {charge:.0f} W reserved, the cars make room first",
        )

    def due(self, now_s: float, cmd: BatteryCommand) -> bool:
        """Send ``cmd`` now: nothing sent yet, a change beyond the deadband, a stop, or the
        refresh interval passed."""
        if self._sending or now_s < self._retry_at:
            return False
        if self.sent_w is None or now_s - self._sent_t >= self.section.refresh_s:
            return True
        if cmd.power_w == 0.0:
            return self.sent_w != 0.0
        return abs(cmd.power_w - self.sent_w) >= self.section.deadband_w

    async def send(self, cmd: BatteryCommand) -> None:
        """Write the setpoint; a failure is logged and retried on a later step."""
        self._sending = True
        try:
            await self.link.set_power(cmd.power_w)
            self.sent_w = cmd.power_w
            self._sent_t = self.clock.now_s()
            if self._send_failing:
                log.info("battery %s takes setpoints again", self.link.battery_id)
            self._send_failing = False
        except DeviceError as exc:
            # logged once per failing stretch; retried after a pause, not on every step
            self._retry_at = self.clock.now_s() + min(5.0, self.section.refresh_s)
            if not self._send_failing:
                log.warning(
                    "battery %s: setpoint %.0f W not sent: %s; retried every %g s",
                    self.link.battery_id,
                    cmd.power_w,
                    exc,
                    min(5.0, self.section.refresh_s),
                )
            self._send_failing = True
        finally:
            self._sending = False

    async def idle(self) -> None:
        """On stop: tell the battery to idle (bounded), then close the link."""
        with contextlib.suppress(DeviceError, TimeoutError):
            async with asyncio.timeout(3.0):
                await self.link.set_power(0.0)
                self.sent_w = 0.0
        with contextlib.suppress(DeviceError):
            await self.link.close()
