"""``FakeChargerLink``: an in-memory ``ChargerLink`` for tests of the controller and the app.

It keeps the same per-charger trackers as the real central system, so states and sessions
have exactly the shape the OCPP adapter produces, and rounds limits the same way. Tests
drive it with ``connect``/``start_session``/``report``/``stop_session``; what was sent is in
``sent`` (every command, in order) and ``applied_a`` (what each charger now applies).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from ampshare.adapters.ocpp._tracker import ChargerTracker
from ampshare.adapters.ocpp._units import Sample, round_limit_a
from ampshare.adapters.ocpp.port import (
    CommandOutcome,
    FallbackCommand,
    LimitCommand,
    LinkSnapshot,
    OutcomeStatus,
    ProfilePurpose,
)
from ampshare.clock import Clock
from ampshare.core.site import Charger
from ampshare.core.snapshot import ChargerStatus

__all__ = ["FakeChargerLink"]


class FakeChargerLink:
    """A ``ChargerLink`` whose chargers are plain objects moved by the test."""

    def __init__(self, chargers: Iterable[Charger], clock: Clock) -> None:
        self.clock = clock
        self.trackers = {c.id: ChargerTracker(c, since_s=clock.now_s()) for c in chargers}
        self.sent: list[tuple[str, FallbackCommand]] = []  # ("live"|"fallback", command)
        self.applied_a: dict[str, float] = {}
        self.fallback_a: dict[str, float] = {}
        self.rejecting: set[str] = set()
        self._changed = asyncio.Event()
        self._tx = 0

    # --- the test's side ----------------------------------------------------------------
    def connect(self, charger_id: str) -> None:
        self.trackers[charger_id].seen(self.clock.now_s())
        self._changed.set()

    def disconnect(self, charger_id: str) -> None:
        self.trackers[charger_id].gone(self.clock.now_s())
        self._changed.set()

    def start_session(self, charger_id: str, *, departure_s: float | None = None,
                      energy_wh: float | None = None) -> str:
        tr = self.trackers[charger_id]
        self._tx += 1
        tr.start_tx(tx_id=str(self._tx), connector_id=1, t_s=self.clock.now_s(),
                    meter_start_wh=0.0)
        tr.on_needs(departure_s=departure_s, energy_wh=energy_wh, ev_max_current_a=None)
        tr.on_status(ChargerStatus.CHARGING, self.clock.now_s())
        self._changed.set()
        return str(self._tx)

    def report(self, charger_id: str, *, current_a: float, energy_wh: float | None = None,
               offered_a: float | None = None) -> None:
        """The charger measured ``current_a`` on each of its terminals."""
        tr = self.trackers[charger_id]
        t = self.clock.now_s()
        samples = [Sample(t_s=t, measurand="Current.Import", value=current_a, terminal=ln)
                   for ln in tr.charger.connection.terminals]
        if energy_wh is not None:
            samples.append(Sample(t_s=t, measurand="Energy.Active.Import.Register",
                                  value=energy_wh))
        if offered_a is not None:
            samples.append(Sample(t_s=t, measurand="Current.Offered", value=offered_a))
        tr.on_samples(samples)
        tr.seen(t)
        self._changed.set()

    def stop_session(self, charger_id: str) -> None:
        tr = self.trackers[charger_id]
        if tr.active_tx is not None:
            tr.end_tx(tr.active_tx, None)
        tr.on_status(ChargerStatus.AVAILABLE, self.clock.now_s())
        self.applied_a.pop(charger_id, None)
        self._changed.set()

    def set_hard_cap(self, charger_id: str, cap_a: float | None) -> None:
        self.trackers[charger_id].hard_cap_a = cap_a
        self._changed.set()

    # --- ChargerLink --------------------------------------------------------------------
    def snapshot(self) -> LinkSnapshot:
        trs = list(self.trackers.values())
        return LinkSnapshot(
            t_s=self.clock.now_s(), states=tuple(t.state() for t in trs),
            sessions=tuple(s for t in trs if (s := t.session()) is not None),
            hard_caps_a={t.charger.id: t.hard_cap_a for t in trs if t.hard_cap_a is not None})

    async def wait_changed(self, timeout_s: float) -> bool:
        try:
            async with asyncio.timeout(timeout_s):
                await self._changed.wait()
        except TimeoutError:
            return False
        self._changed.clear()
        return True

    def _outcome(self, cmd: FallbackCommand, status: OutcomeStatus, **kw: object) -> CommandOutcome:
        return CommandOutcome(charger_id=cmd.charger_id, status=status,
                              t_s=self.clock.now_s(), **kw)  # type: ignore[arg-type]

    async def set_limit(self, cmd: LimitCommand) -> CommandOutcome:
        self.sent.append(("live", cmd))
        tr = self.trackers[cmd.charger_id]
        if not tr.online:
            return self._outcome(cmd, OutcomeStatus.OFFLINE)
        if cmd.charger_id in self.rejecting:
            return self._outcome(cmd, OutcomeStatus.REJECTED, detail="rejected by test")
        want = min(cmd.limit_a, tr.hard_cap_a) if tr.hard_cap_a is not None else cmd.limit_a
        amps = round_limit_a(tr.charger, want)
        self.applied_a[cmd.charger_id] = amps
        tr.installed_limit_a = amps
        self._changed.set()
        # Like the real link: idle chargers get it as their connector's TxDefaultProfile.
        purpose = ProfilePurpose.TX if tr.transaction else ProfilePurpose.TX_DEFAULT
        return self._outcome(cmd, OutcomeStatus.ACCEPTED, sent_limit=amps, purpose=purpose)

    async def install_fallback(self, cmd: FallbackCommand) -> CommandOutcome:
        self.sent.append(("fallback", cmd))
        tr = self.trackers[cmd.charger_id]
        if not tr.online:
            return self._outcome(cmd, OutcomeStatus.OFFLINE)
        amps = round_limit_a(tr.charger, cmd.limit_a)
        self.fallback_a[cmd.charger_id] = amps
        return self._outcome(cmd, OutcomeStatus.ACCEPTED, sent_limit=amps,
                             purpose=ProfilePurpose.TX_DEFAULT)
