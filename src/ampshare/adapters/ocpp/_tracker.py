"""What one charge point has told us, folded into core values (pure: time is passed in).

Both OCPP versions feed the same ``ChargerTracker``. Samples are kept by timestamp, not by
arrival: a charger replaying buffered meter values after a reconnect must not overwrite
newer readings with old ones, yet the old ones still belong in the history.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, replace

from ampshare.adapters.ocpp._units import Sample
from ampshare.core.site import Charger, Line
from ampshare.core.snapshot import ChargerState, ChargerStatus, Session

__all__ = ["ChargerTracker", "Transaction"]

_HISTORY = 512  # samples kept per charger for late-arriving values and the store
_DRAWING_A = 1.0  # a phase carrying more than this counts as in use


@dataclass(frozen=True, slots=True, kw_only=True)
class Transaction:
    tx_id: str
    connector_id: int
    meter_start_wh: float | None
    session: Session


class ChargerTracker:
    """State of one charge point (one site ``Charger``), updated message by message."""

    def __init__(self, charger: Charger, *, since_s: float = 0.0) -> None:
        """``since_s``: when the central system started watching (offline until it joins)."""
        self.charger = charger
        self.online = False
        self.status = ChargerStatus.AVAILABLE
        self.last_seen_s = 0.0
        self.offline_since_s = since_s
        # Whether the status was reported on this connection: a charger reconnecting without
        # a reboot does not repeat it, and what it said before may no longer hold.
        self.status_known = False
        self.installed_limit_a: float | None = None
        self.hard_cap_a: float | None = None
        self.history: list[Sample] = []
        self._latest: dict[tuple[str, Line | None], Sample] = {}
        self.transactions: dict[str, Transaction] = {}
        self.active_tx: str | None = None
        # When it last became "Available" (no car plugged in; None: never seen so): a
        # current or power sampled before that no longer flows, now or after the next car
        # arrives (that car's own samples come after it).
        self.unplugged_s: float | None = None

    # --- connection and status -----------------------------------------------------------
    def seen(self, t_s: float) -> None:
        self.online = True
        self.last_seen_s = max(self.last_seen_s, t_s)

    def connected(self) -> None:
        """A new connection: the status is unknown until the charger reports it."""
        self.status_known = False

    def gone(self, t_s: float) -> None:
        """The connection closed at ``t_s``."""
        self.online = False
        self.offline_since_s = max(self.last_seen_s, t_s)

    def on_status(self, status: ChargerStatus, t_s: float) -> bool:
        """Record a status; True when the charger resumed from SuspendedEVSE (re-assert)."""
        resumed = (self.status is ChargerStatus.SUSPENDED_EVSE
                   and status is ChargerStatus.CHARGING)
        if status is ChargerStatus.AVAILABLE and (
            self.status is not ChargerStatus.AVAILABLE or not self.status_known
        ):  # it just became Available (a late message never moves the mark back)
            self.unplugged_s = t_s if self.unplugged_s is None else max(t_s, self.unplugged_s)
        self.status = status
        self.status_known = True
        self.seen(t_s)
        return resumed

    def _status(self) -> ChargerStatus:
        if not self.online:
            return ChargerStatus.OFFLINE
        if self.status_known:
            return self.status
        # Not reported yet on this connection: a car we know of is plugged in; otherwise
        # say nothing hopeful ("Available" would end a session that is still running).
        return ChargerStatus.PREPARING if self.transaction else ChargerStatus.UNAVAILABLE

    # --- samples ------------------------------------------------------------------------
    def on_samples(self, samples: list[Sample], tx_id: str | None = None) -> None:
        for s in samples:
            key = (s.measurand, s.terminal)
            old = self._latest.get(key)
            if old is None or s.t_s >= old.t_s:
                self._latest[key] = s
            bisect.insort(self.history, s, key=lambda x: x.t_s)
            if s.measurand == "Energy.Active.Import.Register":
                self._energy_to_session(tx_id or self.active_tx, s)
        del self.history[:-_HISTORY]

    def _energy_to_session(self, tx_id: str | None, s: Sample) -> None:
        tx = self.transactions.get(tx_id) if tx_id else None
        if tx is None or tx.meter_start_wh is None:
            return
        delivered = max(0.0, s.value - tx.meter_start_wh)
        # Keep the largest: a replayed older register value must not shrink what was delivered.
        if delivered > tx.session.energy_delivered_wh:
            sess = replace(tx.session, energy_delivered_wh=delivered)
            self.transactions[tx.tx_id] = replace(tx, session=sess)

    def _value(self, measurand: str, terminal: Line | None = None) -> Sample | None:
        return self._latest.get((measurand, terminal))

    def reports_offered(self) -> bool:
        """True once the charger has reported Current.Offered (it can be verified by it)."""
        return ("Current.Offered", None) in self._latest

    def offered_a(self) -> float | None:
        s = self._value("Current.Offered")
        return s.value if s is not None else None

    def _site_currents(self) -> tuple[float | None, float | None, float | None] | None:
        """The last current sampled per site line. Once the charger says "Available" (the car
        is gone) a sample from before reads 0 A, also once the next car arrives: chargers
        send no samples outside a transaction, and a stale reading of a car that left would
        be subtracted from the meter's total as EV load — the building would look that much
        smaller."""
        out: list[float | None] = [None, None, None]
        terminals = self.charger.connection.terminals
        plain = self._value("Current.Import")
        gone = self.unplugged_s
        for t in terminals:
            s = self._value("Current.Import", t) or plain
            if s is not None:
                value = 0.0 if gone is not None and s.t_s < gone else s.value
                out[self.charger.phase_rotation.site_line(t).index] = value
        # Lines the charger is not wired to carry nothing from it: that is known, not unknown.
        wired = {self.charger.phase_rotation.site_line(t).index for t in terminals}
        if all(out[i] is None for i in wired):
            return None
        return (out[0] if 0 in wired else 0.0, out[1] if 1 in wired else 0.0,
                out[2] if 2 in wired else 0.0)

    def _power_w(self) -> float | None:
        """The last power sampled; 0 W for a sample from before "Available" (see
        ``_site_currents``)."""
        gone = self.unplugged_s

        def now(p: Sample) -> float:
            return 0.0 if gone is not None and p.t_s < gone else p.value

        total = self._value("Power.Active.Import")
        if total is not None:
            return now(total)
        per = [self._value("Power.Active.Import", t) for t in (Line.L1, Line.L2, Line.L3)]
        vals = [now(p) for p in per if p is not None]
        return sum(vals) if vals else None

    def _active_phases(self) -> int | None:
        """Phases the car draws on, when every terminal reports (None: unknown)."""
        per = [self._value("Current.Import", t) for t in self.charger.connection.terminals]
        if any(p is None for p in per):
            return None
        if len(per) == 1:
            return 1
        return sum(1 for p in per if p is not None and p.value > _DRAWING_A) or None

    # --- transactions -------------------------------------------------------------------
    def start_tx(self, *, tx_id: str, connector_id: int, t_s: float,
                 meter_start_wh: float | None, user_id: str | None = None) -> Session:
        known = self.transactions.get(tx_id)
        if known is not None:  # a replayed Started event: keep what we know
            self.active_tx = tx_id
            return known.session
        sess = Session(session_id=f"{self.charger.id}:{tx_id}", charger_id=self.charger.id,
                       arrival_s=t_s, user_id=user_id)
        self.transactions[tx_id] = Transaction(tx_id=tx_id, connector_id=connector_id,
                                               meter_start_wh=meter_start_wh, session=sess)
        self.active_tx = tx_id
        return sess

    def end_tx(self, tx_id: str, meter_stop_wh: float | None) -> Session | None:
        tx = self.transactions.pop(tx_id, None)
        if self.active_tx == tx_id:
            self.active_tx = None
            self.installed_limit_a = None
        if tx is None:
            return None
        if meter_stop_wh is not None and tx.meter_start_wh is not None:
            delivered = max(tx.session.energy_delivered_wh, meter_stop_wh - tx.meter_start_wh)
            return replace(tx.session, energy_delivered_wh=delivered)
        return tx.session

    def on_needs(self, *, departure_s: float | None, energy_wh: float | None,
                 ev_max_current_a: float | None) -> bool:
        """NotifyEVChargingNeeds: the car's declared demand becomes the session's."""
        tx = self.transactions.get(self.active_tx) if self.active_tx else None
        if tx is None:
            return False
        sess = replace(tx.session, departure_s=departure_s, energy_wanted_wh=energy_wh,
                       vehicle_max_current_a=ev_max_current_a)
        self.transactions[tx.tx_id] = replace(tx, session=sess)
        return True

    @property
    def transaction(self) -> Transaction | None:
        return self.transactions.get(self.active_tx) if self.active_tx else None

    def session(self) -> Session | None:
        tx = self.transaction
        return tx.session if tx else None

    def state(self) -> ChargerState:
        offered = self._value("Current.Offered")
        energy = self._value("Energy.Active.Import.Register")
        soc = self._value("SoC")
        return ChargerState(
            charger_id=self.charger.id,
            # Online: the last report; offline: since when (never 0 for a charger that has
            # not joined since the start, so an "offline" event is dated when it was noticed).
            t_s=self.last_seen_s if self.online else max(self.last_seen_s, self.offline_since_s),
            online=self.online,
            status=self._status(),
            measured_current_a=self._site_currents(),
            offered_current_a=offered.value if offered else None,
            power_w=self._power_w(),
            energy_wh=energy.value if energy else None,
            soc_pct=soc.value if soc else None,
            active_phases=self._active_phases(),
            installed_limit_a=self.installed_limit_a,
        )
