"""What both OCPP versions do the same way: startup, limits, fallback chain, bad frames.

A ``LinkBase`` is mixed into the version's ``ocpp`` ChargePoint class (the central system's
view of one connected charger). Calls to the charger are made only from tasks, never from an
``@on`` handler; one write at a time per charger (the library allows one outstanding call).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import logging
import math
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from ocpp.exceptions import OCPPError

from ampshare.adapters.ocpp._hub import Hub
from ampshare.adapters.ocpp._lib import parse_frame
from ampshare.adapters.ocpp._profiles import PROFILE_IDS, ProfileSpec
from ampshare.adapters.ocpp._units import round_limit_a
from ampshare.adapters.ocpp.port import (
    CommandOutcome,
    FallbackCommand,
    LimitCommand,
    OutcomeStatus,
    ProfilePurpose,
)
from ampshare.core.site import LimitUnit
from ampshare.errors import DeviceError, DeviceProtocolError

__all__ = ["Capabilities", "LinkBase"]

log = logging.getLogger("ampshare.ocpp")

_OFFER_TOL_A = 0.5  # a charger may report its offer rounded; more than this is a mismatch
_CHAIN = (ProfilePurpose.TX, ProfilePurpose.TX_DEFAULT, ProfilePurpose.CHARGE_POINT_MAX)


@dataclass(frozen=True, slots=True, kw_only=True)
class Capabilities:
    """What the charger said it can do (defaults: what OCPP makes mandatory or usual)."""

    smart_charging: bool = True
    rate_units: tuple[str, ...] = ("A", "W")
    max_stack_level: int = 8
    connectors: int = 1


class LinkBase(abc.ABC):
    """Version-independent behaviour; subclasses provide the OCPP calls (the abstract hooks,
    implemented by ``_v16.CsmsV16`` and ``_v201.CsmsV201``)."""

    id: str
    socket: Any = None  # the websocket (set by the server), to close a replaced connection
    # Provided by ocpp's ChargePoint:
    _send: Callable[[str], Awaitable[None]]
    _handle_call: Callable[[Any], Awaitable[Any]]
    _response_queue: asyncio.Queue[Any]
    _protocol_error_code = "FormatViolation"
    _TX_REPORT = "TransactionEvent"  # the message that names a running transaction

    def _init_link(self, hub: Hub) -> None:
        self.hub = hub
        self.tracker = hub.tracker(self.id)
        self.caps = Capabilities()
        self.purpose = ProfilePurpose.TX  # first purpose of the chain the charger accepted
        self.booted = asyncio.Event()
        self.ready = asyncio.Event()  # startup (probe, metering, fallback, re-assert) done
        self._write_lock = asyncio.Lock()
        self._seq = 0
        self._last_write_t = -math.inf
        self._tasks: set[asyncio.Task[Any]] = set()
        self._offer_warned = False
        self._verified = False  # GetCompositeSchedule checked once on this connection

    # --- subclass hooks -----------------------------------------------------------------
    @abc.abstractmethod
    async def _probe(self) -> Capabilities:
        """What the charger supports (profile purposes, units, stack levels)."""

    @abc.abstractmethod
    async def _configure_metering(self) -> None:
        """Ask the charger to report current and energy at our interval."""

    @abc.abstractmethod
    async def _set_profile(self, spec: ProfileSpec) -> str:
        """Send one charging profile (SetChargingProfile); returns the charger's status."""

    @abc.abstractmethod
    async def composite_limit(self, connector_id: int) -> float | None:
        """The limit the charger says it applies now (GetCompositeSchedule), in its unit."""

    @abc.abstractmethod
    async def _trigger(self, message: str) -> str:
        """Ask the charger to send ``message`` now (TriggerMessage); returns its status."""

    # --- tasks --------------------------------------------------------------------------
    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` beside the receive loop (never await a call inside a handler)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.warning("%s: background task failed: %r", self.id, exc)

    def cancel_tasks(self) -> None:
        for t in list(self._tasks):
            t.cancel()

    async def startup(self) -> None:
        """After connecting: wait for boot, learn capabilities, set metering, re-assert."""
        # A reconnect without a reboot sends no BootNotification: go on after the wait.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.hub.options.boot_wait_s):
                await self.booted.wait()
        async with self.hub.startup_slots:
            try:
                self.caps = await self._probe()
            except DeviceError as e:
                log.info("%s: capability probe failed (%s); assuming defaults", self.id, e)
            try:
                await self._configure_metering()
            except DeviceError as e:
                log.info("%s: metering configuration failed: %s", self.id, e)
            await self._ask_for_news()
            await self.reassert()
        self.ready.set()

    async def _ask_for_news(self) -> None:
        """A charger that reconnects without rebooting repeats neither its status nor its
        transaction: ask for both (TriggerMessage) rather than wait for its next meter values,
        so that a restarted central system knows the running transaction at once."""
        for message in ("StatusNotification", self._TX_REPORT):
            try:
                status = await self._trigger(message)
            except DeviceError as e:
                log.info("%s: TriggerMessage %s failed: %s", self.id, message, e)
                continue
            if status != "Accepted":
                log.info("%s: TriggerMessage %s: %s", self.id, message, status)

    async def reassert(self) -> None:
        """Send the fallback and the live limit again (reconnect, SuspendedEVSE->Charging)."""
        fb = self.hub.fallbacks.get(self.id)
        if fb is not None:
            await self.write_fallback(fb)
        live = self.hub.lives.get(self.id)
        now = self.hub.clock.now_s()
        if live is not None and (live.lease_until_s is None or live.lease_until_s > now):
            await self.write_live(live)

    # --- limits -------------------------------------------------------------------------
    def _unit(self) -> str:
        if self.tracker.charger.limit_unit is LimitUnit.WATT or "A" not in self.caps.rate_units:
            return "W"
        return "A"

    def _limit(self, cmd: FallbackCommand) -> tuple[float, float, str]:
        """(per-phase amperes, value to send, unit) after rounding and the hard cap."""
        ch = self.tracker.charger
        want = cmd.limit_a
        if self.tracker.hard_cap_a is not None:
            want = min(want, self.tracker.hard_cap_a)
        amps = round_limit_a(ch, want)
        if self._unit() == "A":
            return amps, amps, "A"
        if ch.connection.is_line_to_line:
            volts = (self.hub.voltage.line_to_line_v or self.hub.voltage.line_to_neutral_v)
            watts = amps * volts
        else:
            watts = amps * self.hub.voltage.line_to_neutral_v * max(1, cmd.phases)
        power_w = getattr(cmd, "power_w", None)  # live limits may carry watts
        if power_w is not None:
            watts = min(watts, power_w)
        return amps, float(math.floor(watts)), "W"

    def _outcome(self, status: OutcomeStatus, **kw: Any) -> CommandOutcome:
        return CommandOutcome(charger_id=self.id, status=status, t_s=self.hub.clock.now_s(),
                              **kw)

    async def _pace(self, amps: float) -> None:
        # Rate-limit writes, but never delay a decrease: that is the safety-critical direction.
        installed = self.tracker.installed_limit_a
        if installed is not None and amps < installed:
            return
        loop = asyncio.get_running_loop()
        wait = self._last_write_t + self.hub.settings.min_write_interval_s - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)

    async def write_live(self, cmd: LimitCommand) -> CommandOutcome:
        """Send a leased live limit; a newer command supersedes one still waiting.

        "Newer" is by when the controller issued it (``hub.lives`` holds the latest), not by
        when it got here: commands that waited for the charger's startup wake up in any order.
        """
        if self.hub.lives.get(self.id, cmd) is not cmd:
            return self._outcome(OutcomeStatus.SUPERSEDED)
        self._seq += 1
        seq = self._seq
        async with self._write_lock:
            if seq != self._seq or self.hub.lives.get(self.id, cmd) is not cmd:
                return self._outcome(OutcomeStatus.SUPERSEDED)
            amps, value, unit = self._limit(cmd)
            await self._pace(amps)
            if seq != self._seq or self.hub.lives.get(self.id, cmd) is not cmd:
                return self._outcome(OutcomeStatus.SUPERSEDED)
            return await self._send_live(cmd, amps, value, unit)

    def _live_spec(self, purpose: ProfilePurpose, cmd: LimitCommand, value: float,
                   unit: str) -> ProfileSpec:
        tx = self.tracker.transaction
        now = self.hub.clock.now_s()
        duration = None
        if cmd.lease_until_s is not None:
            duration = max(1, math.ceil(cmd.lease_until_s - now))
        connector = 0 if purpose is ProfilePurpose.CHARGE_POINT_MAX else (
            tx.connector_id if tx else 1)
        return ProfileSpec(
            purpose=purpose, connector_id=connector, profile_id=PROFILE_IDS[purpose],
            stack_level=min(1, self.caps.max_stack_level), limit=value, unit=unit,
            phases=cmd.phases if unit == "A" else None,
            transaction_id=(tx.tx_id if tx and purpose is ProfilePurpose.TX else None),
            start_s=now, duration_s=duration)

    async def _send_live(self, cmd: LimitCommand, amps: float, value: float,
                         unit: str) -> CommandOutcome:
        if not self.caps.smart_charging:
            return self._outcome(OutcomeStatus.REJECTED, detail="no SmartCharging support")
        # Without a transaction there is nothing to attach a TxProfile to: the limit becomes
        # the connector's TxDefaultProfile (leased), so a car plugging in starts at it.
        idle = self.tracker.transaction is None
        first = max(_CHAIN.index(self.purpose), 1 if idle else 0)
        tried: list[str] = []
        for purpose in _CHAIN[first:]:
            status = await self._try(self._live_spec(purpose, cmd, value, unit))
            if status == "Accepted":
                if _CHAIN.index(purpose) > _CHAIN.index(self.purpose) and (
                        not idle or purpose is not ProfilePurpose.TX_DEFAULT):
                    self.purpose = purpose  # the earlier purposes were refused: skip them
                self.tracker.installed_limit_a = amps
                self.hub.notify()
                if not self._verified and not self.tracker.reports_offered():
                    self._verified = True
                    self.spawn(self._verify_composite(value, unit))
                return self._outcome(OutcomeStatus.ACCEPTED, sent_limit=value, unit=unit,
                                     purpose=purpose)
            tried.append(f"{purpose.value}: {status}")
        return self._outcome(OutcomeStatus.REJECTED, detail="; ".join(tried))

    async def _try(self, spec: ProfileSpec) -> str:
        self._last_write_t = asyncio.get_running_loop().time()
        try:
            return await self._set_profile(spec)
        except DeviceProtocolError as e:  # a CallError (NotSupported ...) rejects the purpose
            return f"CallError {e}"

    async def write_fallback(self, cmd: FallbackCommand) -> CommandOutcome:
        """Install the site-safe TxDefaultProfile on connector/EVSE 0 (never expires); one
        superseded by a newer fallback while it waited is not sent (the newer one is)."""
        async with self._write_lock:
            if self.hub.fallbacks.get(self.id, cmd) is not cmd:
                return self._outcome(OutcomeStatus.SUPERSEDED)
            if not self.caps.smart_charging:
                return self._outcome(OutcomeStatus.REJECTED, detail="no SmartCharging support")
            _, value, unit = self._limit(cmd)
            spec = ProfileSpec(purpose=ProfilePurpose.TX_DEFAULT, connector_id=0,
                               profile_id=PROFILE_IDS["fallback"], stack_level=0, limit=value,
                               unit=unit, phases=cmd.phases if unit == "A" else None)
            status = await self._try(spec)
            ok = status == "Accepted"
            return self._outcome(OutcomeStatus.ACCEPTED if ok else OutcomeStatus.REJECTED,
                                 sent_limit=value, unit=unit,
                                 purpose=ProfilePurpose.TX_DEFAULT, detail="" if ok else status)

    def check_offered(self) -> None:
        """Verify the installed limit against the charger's own Current.Offered (sampled
        during a transaction). A charger offering more than it confirmed is logged and sent
        its limit again, once per episode: it may have lost the profile. If it goes on, the
        controller's non-compliance detection counts it at its measured draw."""
        limit, offered = self.tracker.installed_limit_a, self.tracker.offered_a()
        over = (self.tracker.transaction is not None and limit is not None
                and offered is not None and offered > limit + _OFFER_TOL_A)
        if over and not self._offer_warned:
            log.warning("%s: offers %.1f A although it confirmed a %.1f A limit; sending it "
                        "again", self.id, offered, limit)
            self._resend_live()
        self._offer_warned = over

    def _resend_live(self) -> None:
        live = self.hub.lives.get(self.id)
        if live is not None and (live.lease_until_s is None
                                 or live.lease_until_s > self.hub.clock.now_s()):
            self.spawn(self.write_live(live))

    async def _verify_composite(self, sent: float, unit: str) -> None:
        """For a charger that does not report Current.Offered: ask it once per connection
        (GetCompositeSchedule) whether it applies what it accepted; if it applies more, log
        it and send the limit again."""
        tx = self.tracker.transaction
        try:
            applied = await self.composite_limit(tx.connector_id if tx else 1)
        except DeviceError as e:
            log.info("%s: cannot verify its limit (GetCompositeSchedule: %s)", self.id, e)
            return
        if applied is None:
            log.info("%s: cannot verify its limit (no composite schedule)", self.id)
            return
        tol = _OFFER_TOL_A if unit == "A" else _OFFER_TOL_A * self.hub.voltage.line_to_neutral_v
        if applied > sent + tol:
            log.warning("%s: applies %g %s although it accepted %g %s; sending it again",
                        self.id, applied, unit, sent, unit)
            self._resend_live()

    # --- bad frames ---------------------------------------------------------------------
    async def route_message(self, raw_msg: Any) -> None:
        """Route one frame (the library's ``route_message``, parsing once, not twice).

        A bad frame gets a CALLERROR when it names a call id, else it is dropped; nothing a
        charger sends may end the receive loop or touch another connection.
        """
        msg, problem = parse_frame(raw_msg)
        if problem is not None:
            log.info("%s: malformed frame (%s)", self.id, problem)
            await self.reject_frame(raw_msg, problem)
            return
        try:
            if msg.message_type_id == 2:
                try:
                    await self._handle_call(msg)
                except OCPPError as error:  # schema violation, unknown action ...
                    await self._send(msg.create_call_error(error).to_json())
            else:  # a CALLRESULT or CALLERROR for the call in flight
                self._response_queue.put_nowait(msg)
        except Exception as e:  # the library raises non-OCPP errors on bad answers
            log.warning("%s: dropped frame after error %r", self.id, e)

    async def reject_frame(self, raw: str, cause: str) -> None:
        """Answer a frame ``ocpp.messages.unpack`` refused, if it is a CALL with an id."""
        try:
            msg = json.loads(raw)
        except ValueError:
            msg = None
        if isinstance(msg, list) and len(msg) >= 2 and msg[0] == 2 and isinstance(msg[1], str):
            err = [4, msg[1][:36], self._protocol_error_code, cause[:255], {}]
            await self._send(json.dumps(err))
