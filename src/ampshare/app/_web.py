"""The dashboard and API beside the live loop: feed ``InMemoryRuntime``, read back edits.

The controller computes the limits (``allocator=None``: the runtime shows each step's
``Allocation``). What operators change through the API flows back into the next step:
session edits (departure, energy wanted, priority, weight) are laid over the sessions the
chargers reported, the policy and admin caps replace the site file's.

On a store that was already in use the bridge *resumes* (``resumed``): the runtime reloads
plugged-in sessions, the policy and admin caps; the profiles the chargers confirmed are kept
in the store (``record_installed``) so that the supervisor can rebuild the controller's state
from them. The site file's policy is applied only on a fresh store or when the file's
``policy:`` changed since the last start, so an admin's choice survives a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import replace

import uvicorn

from ampshare.clock import Clock
from ampshare.config import SiteConfig
from ampshare.control import InstallFallback, SetLimit, StepResult
from ampshare.core.allocation import Policy
from ampshare.core.snapshot import (
    ChargerState,
    ChargerStatus,
    ExternalCap,
    MeterReading,
    Session,
)
from ampshare.store import InstalledProfile, open_store
from ampshare.web import BatteryStatus, InMemoryRuntime, TokenAuth, create_app, run_recorder
from ampshare.web.server import EmbeddedServer

__all__ = ["WebBridge", "listen_socket"]

log = logging.getLogger("ampshare.app")

_EDITABLE = ("departure_s", "energy_wanted_wh", "priority", "weight", "vehicle_max_current_a")
_FILE_POLICY_KEY = "site_file_policy"  # what the site file said at the last start
#: A session the store kept but no charger reports yet is kept this long after a restart:
#: 1.6 chargers name their transaction only with their next MeterValues.
MIN_RESTORE_GRACE_S = 60.0


def listen_socket(host: str, port: int, *, what: str) -> socket.socket:
    """A listening TCP socket on ``host:port``; ``OSError`` naming ``what`` and the address
    when it is taken."""
    try:
        return socket.create_server((host, port), backlog=2048)
    except OSError as e:
        why = os.strerror(e.errno) if e.errno else str(e)
        raise OSError(f"cannot serve {what} on {host}:{port}: {why}") from e


class WebBridge:
    """One runtime + store + FastAPI app for a supervised site."""

    def __init__(self, config: SiteConfig, clock: Clock, policy: Policy, lease_s: float) -> None:
        self.config = config
        self.store = open_store(config.web.store_url)
        self.runtime = InMemoryRuntime(config.site, clock, self.store, allocator=None,
                                       lease_s=lease_s)
        self.app = create_app(self.runtime, self.store, TokenAuth.from_section(config.web),
                              clock=clock)
        self._clock = clock
        self._known = {c.id for c in config.site.chargers}
        self._sessions: dict[str, Session] = {}
        self._restored: dict[str, Session] = {}
        self._grace_until_s = clock.now_s() + max(MIN_RESTORE_GRACE_S, lease_s)
        self._server: uvicorn.Server | None = None
        self._sock: socket.socket | None = None
        self.resumed = self._resume()
        self._apply_file_policy(policy)

    # --- restart ---------------------------------------------------------------------------
    def _resume(self) -> bool:
        """Reload what a previous run stored; False on a fresh store."""
        used = (self.store.get_setting("policy") is not None
                or bool(self.store.sessions(active=True, limit=1)))
        if not used:
            return False
        count = self.runtime.restore()
        self._restored = {s.session_id: s for s in self.runtime.view().sessions}
        self._sessions = dict(self._restored)
        log.info("resumed from %s: %d plugged-in sessions", self.config.web.store_url, count)
        return True

    def _apply_file_policy(self, policy: Policy) -> None:
        said = self.config.policy.model_dump()
        if self.resumed and self.store.get_setting(_FILE_POLICY_KEY) == said:
            return  # the file did not change: keep what the store holds (an admin's choice)
        self.runtime.set_policy(policy, by="site file")
        self.store.put_setting(_FILE_POLICY_KEY, said)

    def installed_limits_a(self) -> dict[str, float]:
        """Per charger, the most a confirmed profile may still let it draw: a live limit
        whose lease has not run out, or its fallback (``rebuild_state``'s input)."""
        now = self._clock.now_s()
        out: dict[str, float] = {}
        for p in self.store.profiles():
            if p.purpose == "tx" and (p.lease_until_s is None or p.lease_until_s < now):
                continue
            out[p.charger_id] = max(out.get(p.charger_id, 0.0), p.limit_a)
        return out

    def record_installed(self, cmd: SetLimit | InstallFallback, t_s: float) -> None:
        """A charger confirmed ``cmd``: keep it, so that a restart knows what it holds."""
        if isinstance(cmd, SetLimit):
            p = InstalledProfile(charger_id=cmd.charger_id, purpose="tx", limit_a=cmd.limit_a,
                                 phases=cmd.phases, installed_s=t_s,
                                 lease_until_s=cmd.lease_until_s, reason=cmd.reason)
        else:
            p = InstalledProfile(charger_id=cmd.charger_id, purpose="fallback",
                                 limit_a=cmd.limit_a, phases=cmd.phases, installed_s=t_s)
        self.store.save_profile(p)

    def last_transaction_number(self) -> int:
        """The highest numeric transaction id in the stored session ids (``<charger>:<tx>``),
        so that a restarted central system never issues one of them again."""
        best = 0
        for rec in self.store.sessions(limit=1000):  # newest first: the highest is among them
            tail = rec.session.session_id.rsplit(":", 1)[-1]
            if tail.isdigit():
                best = max(best, int(tail))
        return best

    # --- API -> controller -----------------------------------------------------------------
    def overlay(self, sessions: Sequence[Session]) -> tuple[Session, ...]:
        """The chargers' sessions with what operators edited through the API (and, for a
        transaction adopted after a restart, the arrival and energy the store kept)."""
        edited = {s.session_id: s for s in self.runtime.view().sessions}
        out = []
        for s in sessions:
            e = edited.get(s.session_id)
            if e is None:
                out.append(s)
                continue
            out.append(replace(s, **{k: getattr(e, k) for k in _EDITABLE},
                               arrival_s=min(s.arrival_s, e.arrival_s),
                               energy_delivered_wh=max(s.energy_delivered_wh,
                                                       e.energy_delivered_wh)))
        return tuple(out)

    def pending_restored(self, reported: Sequence[Session]) -> tuple[Session, ...]:
        """Sessions restored from the store whose charger has not named its transaction yet
        (1.6 chargers do with their next meter values). The controller keeps planning for
        them meanwhile: a restart must not hold a charging car at 0 A as if it had left."""
        busy = {s.charger_id for s in reported}
        edited = {s.session_id: s for s in self.runtime.view().sessions}
        return tuple(edited.get(sid, s) for sid, s in self._restored.items()
                     if s.charger_id not in busy)

    def policy(self) -> Policy:
        return self.runtime.view().policy

    def caps(self) -> tuple[ExternalCap, ...]:
        return self.runtime.view().external_caps

    # --- controller -> API -----------------------------------------------------------------
    def after_step(self, *, sessions: Sequence[Session], states: Sequence[ChargerState],
                   readings: Sequence[MeterReading], result: StepResult,
                   battery: BatteryStatus | None = None, pv_kw: float | None = None) -> None:
        """Show one step: sessions started and ended, reports, the allocation, the battery and
        PV; store the controller's events (each once: this is the only place they are
        recorded). ``readings`` as the meters gave them (not as the controller counted a
        battery)."""
        reported = {s.session_id: s for s in sessions if s.charger_id in self._known}
        self._settle_restored(reported, states)
        now = {**self._restored, **reported}
        for sid in self._sessions.keys() - now.keys():
            self.runtime.end_session(sid)
        for sid in now.keys() - self._sessions.keys():
            self.runtime.start_session(now[sid])
        self._sessions = now
        self.runtime.update(
            charger_states=[s for s in states if s.charger_id in self._known],
            meter_readings=readings,
            energy_wh={sid: s.energy_delivered_wh for sid, s in reported.items()})
        self.runtime.set_assets(battery=battery, pv_kw=pv_kw)
        if result.allocation is not None:
            self.runtime.set_allocation(result.allocation)
        if result.events:
            self.runtime.record_control_events(result.events)

    def _settle_restored(self, reported: dict[str, Session],
                         states: Sequence[ChargerState]) -> None:
        """A restored session ends once its charger reports another session or no car, or
        when the grace time passes without its charger naming it again."""
        if not self._restored:
            return
        busy = {s.charger_id for s in reported.values()}
        free = {s.charger_id for s in states if s.status is ChargerStatus.AVAILABLE}
        late = self._clock.now_s() >= self._grace_until_s
        for sid, s in list(self._restored.items()):
            if sid in reported or s.charger_id in busy or s.charger_id in free or late:
                del self._restored[sid]

    # --- serving ---------------------------------------------------------------------------
    def bind(self) -> None:
        """Take the API's port now, so that a port in use is an error at start-up (uvicorn
        would only exit from inside its task)."""
        w = self.config.web
        self._sock = listen_socket(w.host, w.port, what="the API and dashboard")

    async def serve(self) -> None:
        """Serve the API and dashboard, and record history, until cancelled."""
        w = self.config.web
        if self._sock is None:
            self.bind()
        self._server = EmbeddedServer(uvicorn.Config(self.app, host=w.host, port=w.port,
                                                     log_level="warning"))
        recorder = asyncio.create_task(run_recorder(self.runtime, self.store, self._clock,
                                                    compact_every_s=3600.0))
        try:
            await self._server.serve(sockets=[self._sock])  # type: ignore[list-item]
        finally:
            recorder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await recorder

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self.store.close()

    @property
    def started(self) -> bool:
        return bool(self._server is not None and self._server.started)
