"""What decides the pilots in a replay: the live controller, or a bare allocator (baselines).

``ControlLoopController`` runs ``ampshare.control.step`` — the very decision step of the live
service, with its sequencing, hysteresis, leases and fallbacks. ``AllocatorController`` calls
an allocate-like function directly every step, as a simple home controller would; the sim
baselines (``greedy-clamp``, ``all-stop``) run that way, and so do ampshare's policies in a
``direct`` replay (for comparisons with simulators that have no controller), which also pause
a car once its charger reports it full (``pause_full``). Both see the same simulated meters
and chargers, and neither ever sees a session's true departure.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from ampshare.control import (
    CommandAck,
    ControlInputs,
    ControllerState,
    ControlSettings,
    InstallFallback,
    SetLimit,
    reclaim_due_s,
)
from ampshare.control import initial_state as control_initial_state
from ampshare.control import step as control_step
from ampshare.core.allocation import (
    Allocation,
    AllocationInput,
    NodeMeasurement,
    Policy,
    Reason,
    ReasonKind,
    RotationState,
)
from ampshare.core.site import Site
from ampshare.core.snapshot import ChargerState, ChargerStatus, MeterReading, Session

__all__ = ["AllocatorController", "ControlLoopController", "Controller", "Decision", "Pilot"]

Allocator = Callable[[AllocationInput], Allocation]


@dataclass(frozen=True, slots=True, kw_only=True)
class Pilot:
    """A limit as a charger holds it: ``limit_a`` per phase until ``lease_until_s``."""

    limit_a: float
    phases: int
    lease_until_s: float = math.inf


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """New pilots (only chargers whose limit changed need appear), new fallbacks, and when the
    controller wants to run again before the next grid step (None: not needed)."""

    pilots: Mapping[str, Pilot]
    fallbacks_a: Mapping[str, float] = dataclasses.field(default_factory=dict)
    wakeup_s: float | None = None
    allocation: Allocation | None = None  # what the pilots came from (a battery reads it)


class Controller(Protocol):
    """One decision at ``now_s`` from what the simulated devices report."""

    def decide(
        self,
        now_s: float,
        policy: Policy,
        sessions: tuple[Session, ...],
        states: tuple[ChargerState, ...],
        readings: tuple[MeterReading, ...],
    ) -> Decision: ...

    @property
    def rotation(self) -> RotationState:
        """Who the allocator keeps charging and who it paused, as of the last decision."""
        ...


def measurements(site: Site, readings: tuple[MeterReading, ...]) -> tuple[NodeMeasurement, ...]:
    """Fresh meter readings as the allocator's node measurements."""
    specs = {m.id: m for m in site.meters}
    out = []
    for r in readings:
        spec = specs.get(r.meter_id)
        if spec is not None:
            out.append(
                NodeMeasurement(
                    node_id=spec.node_id,
                    current_a=r.current_a,
                    power_w=r.power_w,
                    includes_ev_load=spec.includes_ev_load,
                )
            )
    return tuple(out)


#: Why a ``pause_full`` replay holds a car at 0 A.
_CAR_FULL = Reason(
    kind=ReasonKind.CAR_FULL,
    detail="the car takes no current (SuspendedEV); paused until it leaves (direct replay)",
)


class AllocatorController:
    """Calls ``allocator`` every step and sends every limit at once (no sequencing).

    ``pause_full``: a charger that reports SuspendedEV (its car takes no current) is capped at
    0 A until its car leaves, so that its share goes to the others. The live controller's
    reclaim rule does this with timers and probes (a real car may resume); in the replay a car
    reports SuspendedEV only once its battery has reached its target, so the plain cap is
    exact there, and it is what simulators without a controller do (ACN-Sim's schedulers no
    longer see an EV whose demand is met). Without it, a bare allocator keeps handing full
    cars their share — at least their minimum current — which the others then lack."""

    def __init__(self, site: Site, allocator: Allocator, *, pause_full: bool = False) -> None:
        self._site = site
        self._allocate = allocator
        self._rotation = RotationState()
        self._pause_full = pause_full

    @property
    def rotation(self) -> RotationState:
        return self._rotation

    def decide(
        self,
        now_s: float,
        policy: Policy,
        sessions: tuple[Session, ...],
        states: tuple[ChargerState, ...],
        readings: tuple[MeterReading, ...],
    ) -> Decision:
        full = (
            [c.charger_id for c in states if c.status is ChargerStatus.SUSPENDED_EV]
            if self._pause_full
            else []
        )
        inp = AllocationInput(
            site=self._site,
            now_s=now_s,
            sessions=sessions,
            charger_states=states,
            measurements=measurements(self._site, readings),
            policy=policy,
            rotation=self._rotation,
            caps_a=dict.fromkeys(full, 0.0),
            cap_reasons=dict.fromkeys(full, _CAR_FULL),
        )
        alloc = self._allocate(inp)
        self._rotation = alloc.rotation
        got = alloc.limits  # read as columns: no ChargerLimit per charger per decision
        return Decision(
            pilots={
                cid: Pilot(limit_a=a, phases=ph)
                for cid, a, ph in zip(got.charger_ids, got.limit_a, got.phases, strict=True)
            },
            allocation=alloc,
        )


class ControlLoopController:
    """The live decision step (``ampshare.control.step``) driven on virtual time.

    The simulated chargers accept every command at once, so each command is acknowledged in
    the next call; ``wakeup_s`` asks for a second decision once the EV reaction time has passed,
    which is when the controller may send the increases it held back.
    """

    def __init__(self, site: Site, settings: ControlSettings) -> None:
        self._site = site
        self._settings = settings
        self._state: ControllerState = control_initial_state(site, settings)
        self._acks: tuple[CommandAck, ...] = ()
        self._sent: dict[str, float] = {}

    @property
    def rotation(self) -> RotationState:
        return self._state.rotation

    def decide(
        self,
        now_s: float,
        policy: Policy,
        sessions: tuple[Session, ...],
        states: tuple[ChargerState, ...],
        readings: tuple[MeterReading, ...],
    ) -> Decision:
        inputs = ControlInputs(
            readings=readings, charger_states=states, sessions=sessions, acks=self._acks
        )
        res = control_step(self._site, self._settings, policy, self._state, inputs, now_s)
        self._state = res.state
        pilots: dict[str, Pilot] = {}
        fallbacks: dict[str, float] = {}
        acks: list[CommandAck] = []
        for cmd in res.commands:
            if isinstance(cmd, SetLimit):
                pilots[cmd.charger_id] = Pilot(
                    limit_a=cmd.limit_a, phases=cmd.phases, lease_until_s=cmd.lease_until_s
                )
                acks.append(CommandAck(charger_id=cmd.charger_id, t_s=now_s, limit_a=cmd.limit_a))
            elif isinstance(cmd, InstallFallback):
                fallbacks[cmd.charger_id] = cmd.limit_a
                acks.append(
                    CommandAck(
                        charger_id=cmd.charger_id, t_s=now_s, limit_a=cmd.limit_a, fallback=True
                    )
                )
        self._acks = tuple(acks)
        # Live, the controller runs every second; on the replay's coarser grid it only needs
        # to run again when a decrease it sent is due to be obeyed (then the increases it held
        # back may go out), so that is the wake-up the simulator honours.
        due = [
            t.acked_s + self._settings.ev_reaction_s
            for t in res.state.tracks.values()
            if t.pending and t.acked_s is not None
        ]
        changed = [c for c, p in pilots.items() if self._sent.get(c) != p.limit_a]
        self._sent.update({c: p.limit_a for c, p in pilots.items()})
        if changed and not due:
            due = [now_s + self._settings.ev_reaction_s]
        # The reclaim rule's timers too: live they are met by running every second; here a
        # probed full car would otherwise hold its current, unused, until the next grid step.
        timers = (reclaim_due_s(t, self._settings) for t in res.state.tracks.values())
        due += [d for d in timers if now_s < d < math.inf]
        wake = max(min(due), now_s) + 1.0 if due else None
        return Decision(
            pilots=pilots, fallbacks_a=fallbacks, wakeup_s=wake, allocation=res.allocation
        )
