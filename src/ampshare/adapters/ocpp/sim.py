"""Simulated charge points (the ``ocpp`` library's charge-point role) for tests, bench, demo.

A ``SimChargePoint16``/``SimChargePoint201`` boots, starts a transaction, follows the limits
it is sent like a real charger with a car (``ProfileStore`` + ``SimEv``) and reports meter
values. ``SimOptions`` gives it quirks: W-only, purposes it rejects, meter units.
Each public coroutine sends one OCPP message; ``run_loop`` drives it on its own.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import functools
import itertools
import json
import logging
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from ampshare.adapters.ocpp._sim_model import InstalledProfile, ProfileStore, SimEv
from ampshare.adapters.ocpp._units import format_time, parse_time
from ampshare.clock import Clock, SystemClock
from ampshare.errors import DeviceError, DeviceUnavailable
from ampshare.sim.ev import MIN_PILOT_A, EvSpec

__all__ = ["SimOptions", "connect_sim", "drive", "open_sim_socket"]

log = logging.getLogger("ampshare.ocpp.sim")


@dataclass(frozen=True, slots=True, kw_only=True)
class SimOptions:
    """How a simulated charger behaves. ``rate_units`` it accepts (``("W",)``: W-only),
    ``reject_purposes`` profile purposes it refuses, ``energy_unit`` Wh or kWh in reports;
    ``ev`` the car that plugs in (``ampshare.sim.ev.EvSpec``) at ``ev_soc_pct``."""

    rate_units: tuple[str, ...] = ("A", "W")
    reject_purposes: frozenset[str] = frozenset()
    smart_charging: bool = True
    max_stack_level: int = 8
    hw_max_current_a: float = 32.0
    volts: float = 230.0
    energy_unit: str = "Wh"
    ev: EvSpec = field(default_factory=lambda: EvSpec(max_current_a=32.0))
    ev_soc_pct: float = 30.0
    password: str | None = None
    meter_interval_s: float = 10.0
    response_timeout_s: float = 10.0  # how long it waits for the central system's answers
    ignores_limit: bool = False  # accepts every profile, then offers its maximum anyway
    reports_offered: bool = True  # False: no Current.Offered in its meter values
    answers_triggers: bool = True  # False: TriggerMessage is NotImplemented (older firmware)
    validate: bool = True  # schema-check what the central system sends (off: bench speed)
    vendor: str = "ampshare"
    model: str = "sim"


class SimBase(abc.ABC):
    """Version-independent simulator state: profiles, the car, the transaction (the abstract
    hook, ``_send_state``, implemented by ``_sim16`` and ``_sim201``)."""

    id: str
    protocol: str
    run_task: asyncio.Task[None] | None = None
    _connection: Any
    route_map: dict[str, dict[str, Any]]  # built by ocpp's ChargePoint

    def _init_sim(self, options: SimOptions, clock: Clock) -> None:
        self.opts = options
        if not options.validate:
            for handlers in self.route_map.values():
                handlers["_skip_schema_validation"] = True
        self.clock = clock
        self.store = ProfileStore()
        self.received: list[InstalledProfile] = []
        self.config: dict[str, str] = {}
        self.tx_id: str | None = None
        self.connector_id = 1
        self.ev: SimEv | None = None
        self.meter_wh = 0.0
        self.reported_state: str | None = None  # the last charging state sent
        self.composite_requests = 0  # GetCompositeSchedule calls answered

    @abc.abstractmethod
    async def _send_state(self, state: str) -> None:
        """Tell the central system the charging state (``car_state``) in this charger's
        protocol: StatusNotification in 1.6 (``_sim16``), TransactionEvent in 2.0.1
        (``_sim201``); each version's charge point implements it."""

    def car_state(self) -> str | None:
        """What a real charger says about its car: ``SuspendedEVSE`` while it offers less
        than a car can use (paused by its limit), ``SuspendedEV`` while the car takes nothing
        although offered (full), else ``Charging``; None without a transaction."""
        if self.ev is None or self.tx_id is None:
            return None
        t = self.now()
        if self.offered_a(t) < MIN_PILOT_A - 1e-9:
            return "SuspendedEVSE"
        self.ev.advance(t)
        return "SuspendedEV" if self.ev.state.full else "Charging"

    async def report_state(self) -> None:
        """Tell the central system when the charging state changed (as chargers do at once
        when their pilot pauses or resumes the car)."""
        state = self.car_state()
        if state is None or state == self.reported_state:
            return
        self.reported_state = state  # before the await: a concurrent report must not repeat it
        with contextlib.suppress(DeviceError):  # the socket closed meanwhile: nothing to tell
            await self._send_state(state)

    def now(self) -> float:
        return self.clock.now_s()

    async def route_message(self, raw: Any) -> None:
        """With ``validate`` off, answer SetChargingProfile without the library's generic
        (regex case conversion, signature inspection) path: a fleet of thousands of
        simulated chargers must not eat the CPU of the central system it is benchmarking."""
        if not self.opts.validate and isinstance(raw, str) and '"SetChargingProfile"' in raw:
            msg = json.loads(raw)
            if msg[0] == 2 and msg[2] == "SetChargingProfile" and isinstance(msg[3], dict):
                handler: Any = getattr(self, "on_set_charging_profile")  # noqa: B009 - in subclasses
                result = handler(**_snake(msg[3]))
                await self._connection.send(json.dumps([3, msg[1], {"status": result.status}]))
                return
        await super().route_message(raw)  # type: ignore[misc]

    async def reconnect(self, url: str, *, ssl_context: ssl.SSLContext | None = None) -> None:
        """Drop the socket and connect again, keeping the transaction (no BootNotification),
        as a charger does after a network glitch."""
        conn: Any = self._connection
        await conn.close()
        task = getattr(self, "run_task", None)
        if task is not None:
            task.cancel()
        conn = await open_sim_socket(url, self.id, self.protocol,
                                     password=self.opts.password, ssl_context=ssl_context)
        self._connection = conn
        self.run_task = asyncio.get_running_loop().create_task(_receive(self))

    def offered_a(self, t_s: float | None = None) -> float:
        t = self.now() if t_s is None else t_s
        if self.opts.ignores_limit:
            return self.opts.hw_max_current_a
        return self.store.limit_a(t_s=t, connector=self.connector_id, tx=self.tx_id,
                                  volts=self.opts.volts, phases=self.opts.ev.phases,
                                  hw_max_a=self.opts.hw_max_current_a)

    def _follow(self) -> None:
        if self.ev is not None:
            self.ev.offer(self.offered_a(), self.now())

    def current_a(self) -> float:
        return self.ev.current_a(self.now()) if self.ev is not None else 0.0

    def accept_profile(self, p: InstalledProfile) -> str:
        """Install ``p`` unless this charger's quirks refuse it; returns the OCPP status."""
        if (not self.opts.smart_charging or p.purpose in self.opts.reject_purposes
                or p.unit not in self.opts.rate_units
                or p.stack_level > self.opts.max_stack_level):
            return "Rejected"
        if p.purpose == "TxProfile" and (self.tx_id is None or p.transaction_id != self.tx_id):
            return "Rejected"
        self.store.install(p)
        self.received.append(p)
        self._follow()
        return "Accepted"

    def _readings(self) -> list[tuple[str, str | None, float, str]]:
        """(measurand, phase, value, unit) the charger reports now."""
        t = self.now()
        if self.ev is not None:
            self.ev.advance(t)
        amps = self.current_a()
        phases = self.opts.ev.phases
        e_wh = self.meter_wh + (self.ev.energy_wh if self.ev else 0.0)
        energy = e_wh / 1000.0 if self.opts.energy_unit == "kWh" else e_wh
        out: list[tuple[str, str | None, float, str]] = [
            ("Current.Import", f"L{i + 1}", amps if i < phases else 0.0, "A") for i in range(3)]
        if self.opts.reports_offered:
            out.append(("Current.Offered", None, round(self.offered_a(t), 1), "A"))
        out += [("Power.Active.Import", None, round(amps * self.opts.volts * phases, 1), "W"),
                ("Energy.Active.Import.Register", None, round(energy, 3),
                 self.opts.energy_unit)]
        if self.ev is not None:
            out.append(("SoC", None, round(self.ev.soc_pct, 1), "Percent"))
        return out

    def _begin(self) -> None:
        self.ev = SimEv(self.opts.ev, self.now(), self.opts.volts, self.opts.ev_soc_pct)
        self._follow()

    def _end(self) -> None:
        if self.ev is not None:
            self.ev.advance(self.now())
            self.meter_wh += self.ev.energy_wh
        self.ev = None
        self.tx_id = None
        self.reported_state = None


def _profile_from(d: dict[str, Any], connector: int, schedule: dict[str, Any],
                  purpose: str) -> InstalledProfile:
    period = schedule["charging_schedule_period"][0]
    start = schedule.get("start_schedule")
    return InstalledProfile(
        purpose=purpose, connector_id=connector,
        profile_id=int(d.get("charging_profile_id", d.get("id", 0))),
        stack_level=int(d["stack_level"]), limit=float(period["limit"]),
        unit=str(schedule["charging_rate_unit"]), phases=period.get("number_phases"),
        transaction_id=str(d["transaction_id"]) if d.get("transaction_id") is not None else None,
        start_s=parse_time(start) if start else None,
        duration_s=float(schedule["duration"]) if schedule.get("duration") else None)


@functools.lru_cache(maxsize=256)
def _snake_key(key: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in key)


def _snake(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {_snake_key(k): _snake(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_snake(v) for v in obj]
    return obj


def stamp(clock: Clock, t_s: float | None = None) -> str:
    return format_time(clock.now_s() if t_s is None else t_s)


_ids = itertools.count(1)


async def open_sim_socket(url: str, cp_id: str, protocol: str, *,
                          password: str | None = None,
                          ssl_context: ssl.SSLContext | None = None) -> ClientConnection:
    """Open the websocket a charger would (``url`` is the base, the id is appended)."""
    headers: dict[str, str] = {}
    if password is not None:
        import base64

        token = base64.b64encode(f"{cp_id}:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    sub = "ocpp1.6" if protocol in ("1.6", "ocpp1.6") else "ocpp2.0.1"
    try:
        return await connect(f"{url.rstrip('/')}/{cp_id}", subprotocols=[sub],  # type: ignore[list-item]
                             additional_headers=headers, ssl=ssl_context, open_timeout=10,
                             compression=None, max_queue=None)
    except Exception as e:  # websockets raises several types for a refused handshake
        raise DeviceUnavailable(f"{cp_id}: cannot connect to {url}: {e}") from e


async def _receive(cp: Any) -> None:
    # The receive loop ends when the socket closes; that is how a simulated charger stops.
    with contextlib.suppress(ConnectionClosed):
        await cp.start()


async def connect_sim(url: str, cp_id: str, protocol: str, *,
                      options: SimOptions | None = None, clock: Clock | None = None,
                      ssl_context: ssl.SSLContext | None = None,
                      boot: bool = True) -> Any:
    """Connect one simulated charger, start its receive loop, and (by default) boot it.

    Returns a ``SimChargePoint16`` or ``SimChargePoint201``; ``await cp.close()`` ends it.
    """
    from ampshare.adapters.ocpp._sim16 import SimChargePoint16
    from ampshare.adapters.ocpp._sim201 import SimChargePoint201

    opts = options or SimOptions()
    ws = await open_sim_socket(url, cp_id, protocol, password=opts.password,
                               ssl_context=ssl_context)
    cls = SimChargePoint16 if protocol in ("1.6", "ocpp1.6") else SimChargePoint201
    cp = cls(cp_id, ws, options=opts, clock=clock or SystemClock())
    cp.run_task = asyncio.get_running_loop().create_task(_receive(cp))
    if boot:
        await cp.boot()
        await cp.status("Available")
    return cp


async def drive(cps: Sequence[Any], *, start_after_s: float = 0.0) -> None:
    """Run the fleet like real chargers: start a transaction each, then report meter values
    every ``meter_interval_s`` until cancelled (used by ``ampshare sim-chargers``)."""

    async def one(cp: Any, i: int) -> None:
        await asyncio.sleep(start_after_s * (i % 10) / 10)
        await cp.start_transaction()
        while True:
            await asyncio.sleep(cp.opts.meter_interval_s)
            await cp.meter_values()

    await asyncio.gather(*(one(cp, i) for i, cp in enumerate(cps)))
