"""One behavioural check for every ``ChargerLink``: the fake and the real OCPP adapter alike.

``check_charger_link(link, driver)`` walks one charger through connect -> fallback -> session
-> limit -> report -> stop -> disconnect and returns the list of broken promises (empty when
the link conforms). A ``LinkDriver`` plays the charger: ``FakeDriver`` moves a
``FakeChargerLink``; ``SimDriver`` is a simulated charge point over a real websocket.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

from ampshare.adapters.ocpp.fake import FakeChargerLink
from ampshare.adapters.ocpp.port import (
    ChargerLink,
    InstallFallback,
    OutcomeStatus,
    ProfilePurpose,
    SetLimit,
)
from ampshare.adapters.ocpp.sim import SimOptions, connect_sim
from ampshare.clock import Clock

__all__ = ["FakeDriver", "LinkDriver", "SimDriver", "check_charger_link"]


class LinkDriver(Protocol):
    """Plays one charger (``charger_id``) on the far side of a link."""

    charger_id: str

    async def connect(self) -> None: ...
    async def start_session(self) -> None: ...
    async def report(self) -> None: ...
    async def stop_session(self) -> None: ...
    async def disconnect(self) -> None: ...
    def applied_limit_a(self) -> float | None: ...


class FakeDriver:
    def __init__(self, link: FakeChargerLink, charger_id: str) -> None:
        self.link = link
        self.charger_id = charger_id

    async def connect(self) -> None:
        self.link.connect(self.charger_id)

    async def start_session(self) -> None:
        self.link.start_session(self.charger_id)

    async def report(self) -> None:
        self.link.report(self.charger_id, current_a=self.link.applied_a.get(self.charger_id, 0))

    async def stop_session(self) -> None:
        self.link.stop_session(self.charger_id)

    async def disconnect(self) -> None:
        self.link.disconnect(self.charger_id)

    def applied_limit_a(self) -> float | None:
        return self.link.applied_a.get(self.charger_id)


class SimDriver:
    """A simulated OCPP charge point (``protocol`` "1.6" or "2.0.1") at ``url``."""

    def __init__(self, url: str, charger_id: str, protocol: str, clock: Clock,
                 options: SimOptions | None = None) -> None:
        self.url, self.charger_id, self.protocol = url, charger_id, protocol
        self.clock, self.options = clock, options
        self.cp: Any = None

    async def connect(self) -> None:
        self.cp = await connect_sim(self.url, self.charger_id, self.protocol,
                                    options=self.options, clock=self.clock)

    async def start_session(self) -> None:
        await self.cp.start_transaction()

    async def report(self) -> None:
        await self.cp.meter_values()

    async def stop_session(self) -> None:
        await self.cp.stop_transaction()

    async def disconnect(self) -> None:
        await self.cp.close()

    def applied_limit_a(self) -> float | None:
        return float(self.cp.offered_a()) if self.cp is not None else None


async def _until(link: ChargerLink, cond: Callable[[], bool], timeout_s: float) -> bool:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while not cond():
        left = end - loop.time()
        if left <= 0:
            return False
        await link.wait_changed(min(left, 0.05))
    return True


async def check_charger_link(link: ChargerLink, driver: LinkDriver,
                             timeout_s: float = 5.0) -> list[str]:
    """Run the conformance walk; returns what failed (empty list: conforms)."""
    cid = driver.charger_id
    bad: list[str] = []

    def state_online() -> bool:
        st = link.snapshot().state(cid)
        return st is not None and st.online

    await driver.connect()
    if not await _until(link, state_online, timeout_s):
        bad.append("charger not online after connect")
    fb = await link.install_fallback(InstallFallback(charger_id=cid, limit_a=6.0, phases=3))
    if fb.status is not OutcomeStatus.ACCEPTED:
        bad.append(f"fallback not accepted: {fb}")
    early = await link.set_limit(SetLimit(charger_id=cid, limit_a=8.0, phases=3))
    if early.status is not OutcomeStatus.ACCEPTED or early.purpose is not ProfilePurpose.TX_DEFAULT:
        bad.append(f"limit without a session not installed as TxDefaultProfile: {early}")
    if driver.applied_limit_a() != 8.0:
        bad.append(f"idle charger would start a car at {driver.applied_limit_a()} A, not 8 A")
    await driver.start_session()
    if not await _until(link, lambda: link.snapshot().session(cid) is not None, timeout_s):
        bad.append("no session after start")
    live = await link.set_limit(SetLimit(charger_id=cid, limit_a=10.04, phases=3))
    if live.status is not OutcomeStatus.ACCEPTED or live.sent_limit != 10.0:
        bad.append(f"10.04 A not sent as 10.0 A: {live}")
    if driver.applied_limit_a() != 10.0:
        bad.append(f"charger applies {driver.applied_limit_a()} A, not 10.0 A")
    await driver.report()

    def measured() -> bool:
        st = link.snapshot().state(cid)
        return st is not None and st.measured_current_a is not None

    if not await _until(link, measured, timeout_s):
        bad.append("no measured current after a report")
    await driver.stop_session()
    if not await _until(link, lambda: link.snapshot().session(cid) is None, timeout_s):
        bad.append("session still open after stop")
    await driver.disconnect()
    if not await _until(link, lambda: not state_online(), timeout_s):
        bad.append("charger still online after disconnect")
    gone = await link.set_limit(SetLimit(charger_id=cid, limit_a=7.0, phases=3))
    if gone.status is not OutcomeStatus.OFFLINE:
        bad.append(f"limit to a disconnected charger not reported offline: {gone}")
    return bad
