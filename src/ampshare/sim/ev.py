"""EV and charger physics: how much current a plugged-in car draws for a given pilot limit.

A small pure model shared by the scenario runner, the simulator and the simulated OCPP
chargers, so that all of them agree on how a car reacts. Nothing here does I/O or reads a clock:
every function takes the time and returns a new frozen value.

The model, per charger output:

* The **charger** offers a pilot current (the limit it was last told, or its fallback once the
  lease has run out). A charger with ``ignores_limit`` offers its own maximum whatever it is
  told (the "charger ignores its limit" fault).
* The **EV** follows a pilot change only after ``reaction_s`` (IEC 61851-1 allows an EV up to
  5 s to obey a lower pilot); each change is queued with its own due time, so a decrease
  followed quickly by an increase is obeyed in order. A car that is not charging (just
  plugged in, or paused) starts ``reaction_s`` after the pilot allows it, at the pilot it sees
  at that moment (older queued changes are superseded): a charger told to hold a new car at
  0 A within the start-up time keeps it from starting at the charger's fallback.
* The EV draws ``min(pilot, onboard max, taper)`` per phase on ``phases`` phases, where the
  taper lowers the onboard maximum linearly from ``taper_start_frac`` of the battery to
  ``taper_end_a`` at full (constant-current / constant-voltage charging seen from the grid).
  A pilot below the EV's minimum (6 A) pauses it. It stops when its energy target is reached.
* ``basic`` is the ideal battery: no taper, it draws the full pilot until the target.

Units: A per phase (RMS), W, Wh, s.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

__all__ = [
    "EvSpec",
    "EvState",
    "ev_current_a",
    "ev_follow_pilot",
    "ev_plug_in",
    "ev_step",
    "offered_pilot_a",
]

#: Below this pilot an EV cannot charge (IEC 61851-1 minimum duty cycle).
MIN_PILOT_A = 6.0


@dataclass(frozen=True, slots=True, kw_only=True)
class EvSpec:
    """A vehicle's charging behaviour.

    ``max_current_a`` is the onboard charger's limit per phase; ``phases`` how many phases it
    draws on (1 or 3; a car on a line-to-line charger uses 1); ``capacity_wh`` the usable
    battery; ``reaction_s`` how long it takes to follow a new pilot; ``taper_start_frac`` the
    state of charge (0..1) from which the onboard maximum falls linearly to ``taper_end_a`` at
    full; ``basic`` switches the taper off (ideal battery).
    """

    max_current_a: float = 16.0
    phases: int = 3
    capacity_wh: float = 60_000.0
    reaction_s: float = 3.0
    taper_start_frac: float = 0.8
    taper_end_a: float = 2.0
    basic: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class EvState:
    """A plugged-in car at one moment.

    ``stored_wh`` is in the battery now and ``target_wh`` where it stops; ``draw_a`` the
    current per phase it draws now; ``obeyed_pilot_a`` the pilot it currently follows and
    ``queued`` the pilot changes it has seen but not yet obeyed, as ``(due_t_s, pilot_a)``.
    ``delivered_wh`` counts energy taken from the grid in this session.
    """

    spec: EvSpec
    stored_wh: float
    target_wh: float
    obeyed_pilot_a: float = 0.0
    queued: tuple[tuple[float, float], ...] = ()
    last_pilot_a: float = 0.0
    draw_a: float = 0.0
    delivered_wh: float = 0.0

    @property
    def full(self) -> bool:
        """True once the energy target is reached (the car stops by itself)."""
        return self.stored_wh >= self.target_wh - 1e-9


def ev_plug_in(spec: EvSpec, *, stored_wh: float, wanted_wh: float) -> EvState:
    """A car that just plugged in with ``stored_wh`` and wants ``wanted_wh`` more (capped at
    the battery's capacity); it draws nothing until it has obeyed a pilot."""
    target = min(spec.capacity_wh, stored_wh + max(0.0, wanted_wh))
    return EvState(spec=spec, stored_wh=stored_wh, target_wh=target)


def offered_pilot_a(
    *, limit_a: float | None, fallback_a: float, charger_max_a: float, ignores_limit: bool
) -> float:
    """The pilot a charger offers: its last limit (None: lease expired or never set, so the
    fallback), clipped to its own maximum; a non-compliant charger offers its maximum."""
    if ignores_limit:
        return charger_max_a
    chosen = fallback_a if limit_a is None else limit_a
    return max(0.0, min(chosen, charger_max_a))


def ev_current_a(spec: EvSpec, stored_wh: float, pilot_a: float) -> float:
    """Current per phase the car draws under ``pilot_a`` at ``stored_wh`` (before the target
    check): 0 below the minimum pilot, else min(pilot, onboard max, taper)."""
    if pilot_a < MIN_PILOT_A - 1e-9:
        return 0.0
    cap = spec.max_current_a
    if not spec.basic:
        frac = stored_wh / spec.capacity_wh if spec.capacity_wh > 0 else 1.0
        if frac > spec.taper_start_frac:
            span = max(1e-9, 1.0 - spec.taper_start_frac)
            k = min(1.0, (frac - spec.taper_start_frac) / span)
            cap = spec.max_current_a + k * (spec.taper_end_a - spec.max_current_a)
    return max(0.0, min(pilot_a, cap))


def ev_follow_pilot(ev: EvState, pilot_a: float, now_s: float) -> EvState:
    """Tell the car the pilot it sees at ``now_s``; a change is queued for ``reaction_s``.

    Pilot changes are only registered when the value differs from the last one seen, so calling
    this every tick with the same pilot is harmless.
    """
    if abs(pilot_a - ev.last_pilot_a) < 1e-9:
        return ev
    due = now_s + ev.spec.reaction_s
    return replace(ev, queued=(*ev.queued, (due, pilot_a)), last_pilot_a=pilot_a)


def ev_step(ev: EvState, now_s: float, dt_s: float, volts_per_phase_v: float) -> EvState:
    """Advance the car from ``now_s`` by ``dt_s``: obey due pilot changes, draw, store energy.

    ``volts_per_phase_v`` is the voltage across one phase of the car's charger (230 V line to
    neutral in Europe, 208/240 V line to line in the US); energy = V x I x phases x dt.
    The current is decided at the start of the interval and held through it.
    """
    obeyed = ev.obeyed_pilot_a
    queued = ev.queued
    while queued and queued[0][0] <= now_s + 1e-9:
        if obeyed < MIN_PILOT_A - 1e-9:
            # A car that is not charging (re)starts at the pilot it sees when it starts, which
            # supersedes every older change still queued: its start-up took the reaction time.
            obeyed, queued = ev.last_pilot_a, ()
            break
        obeyed = queued[0][1]
        queued = queued[1:]
    draw = 0.0 if ev.full else ev_current_a(ev.spec, ev.stored_wh, obeyed)
    if draw <= 0.0 and ev.draw_a == 0.0 and queued is ev.queued:
        return ev  # idle and nothing due: the same state (the replay asks this of every car)
    energy_wh = volts_per_phase_v * draw * ev.spec.phases * dt_s / 3600.0
    stored = min(ev.target_wh, ev.stored_wh + energy_wh) if draw > 0 else ev.stored_wh
    # Built directly rather than with ``dataclasses.replace``, which inspects the fields on
    # every call: this runs for every plugged car in every replay segment.
    return EvState(
        spec=ev.spec,
        stored_wh=stored,
        target_wh=ev.target_wh,
        obeyed_pilot_a=obeyed,
        queued=queued,
        last_pilot_a=ev.last_pilot_a,
        draw_a=draw,
        delivered_wh=ev.delivered_wh + (stored - ev.stored_wh),
    )
