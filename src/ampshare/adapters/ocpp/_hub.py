"""Shared state of the central system: trackers, remembered commands, connected links.

Kept apart from the websocket server so that the per-version connection handlers depend on
this small object and not on the server (no import cycle), and so that a charger's state
survives its reconnects: a tracker belongs to the charger id, not to a connection.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ampshare.adapters.ocpp._tracker import ChargerTracker
from ampshare.adapters.ocpp.port import FallbackCommand, LimitCommand
from ampshare.clock import Clock
from ampshare.config.sections import OcppSection
from ampshare.core.site import Charger, Connection, Site, VoltageSystem

if TYPE_CHECKING:
    from ampshare.adapters.ocpp._base import LinkBase

__all__ = ["Hub", "LinkOptions"]


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkOptions:
    """Tuning that is not part of the site file (tests shorten the waits)."""

    boot_wait_s: float = 2.0  # how long a new connection may take to send BootNotification
    concurrent_startups: int = 100  # chargers probed/configured at the same time
    measurands: tuple[str, ...] = (
        "Current.Import", "Current.Offered", "Power.Active.Import",
        "Energy.Active.Import.Register", "SoC",
    )


class Hub:
    """What every connection handler of one central system shares."""

    def __init__(self, *, site: Site | None, settings: OcppSection, clock: Clock,
                 options: LinkOptions) -> None:
        self.site = site
        self.settings = settings
        self.clock = clock
        self.options = options
        self.voltage = site.voltage if site else VoltageSystem.EU_230_400
        self.trackers: dict[str, ChargerTracker] = {}
        self.fallbacks: dict[str, FallbackCommand] = {}
        self.lives: dict[str, LimitCommand] = {}
        self.links: dict[str, LinkBase] = {}
        self.changed = asyncio.Event()
        # A fleet reconnecting at once (after a restart or a network outage) would otherwise
        # start thousands of probes together and starve the chargers' own messages.
        self.startup_slots = asyncio.Semaphore(options.concurrent_startups)
        self._next_tx = 1
        started_s = clock.now_s()
        for ch in site.chargers if site else ():
            self.trackers[ch.id] = ChargerTracker(ch, since_s=started_s)

    def known(self, cp_id: str) -> bool:
        return cp_id in self.trackers or cp_id in self.settings.password_hashes

    def tracker(self, cp_id: str) -> ChargerTracker:
        """The tracker of ``cp_id``; auto-registered chargers get default electrical data."""
        tr = self.trackers.get(cp_id)
        if tr is None:
            node = self.site.root.id if self.site else "site"
            tr = ChargerTracker(Charger(id=cp_id, node_id=node,
                                        connection=Connection.THREE_PHASE),
                                since_s=self.clock.now_s())
            self.trackers[cp_id] = tr
        return tr

    def new_tx_id(self) -> int:
        tx, self._next_tx = self._next_tx, self._next_tx + 1
        return tx

    def saw_tx_id(self, tx_id: int) -> None:
        """A charger reported a transaction id we did not issue (we restarted): never reuse."""
        self._next_tx = max(self._next_tx, tx_id + 1)

    def notify(self) -> None:
        self.changed.set()
