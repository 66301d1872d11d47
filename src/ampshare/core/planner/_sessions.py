"""Sessions as the LP sees them: electrical class, bounds, active slots and energy per ampere."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ampshare.core.electrical import charger_voltage_v, connection_phasors, primary_matrix
from ampshare.core.planner._types import PlanInput
from ampshare.core.site import Site
from ampshare.core.snapshot import Session
from ampshare.errors import InputError

__all__ = ["LpSession", "lp_sessions"]

FloatArray = npt.NDArray[np.float64]
ComplexArray = npt.NDArray[np.complex128]


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class LpSession:
    """One session in the LP. ``slots`` are the slot indices it may charge in, ``kwh_per_a``
    the energy one ampere delivers in each of them (shorter when it arrives or leaves
    mid-slot), ``need_kwh`` what it still wants (inf: as much as possible)."""

    session: Session
    node_id: str
    phasor: ComplexArray  # (3,) per-ampere contribution to the site lines
    watts_per_a: float
    max_a: float
    departure_s: float
    slots: npt.NDArray[np.int64]
    kwh_per_a: FloatArray
    need_kwh: float
    weight: float
    stay: FloatArray  # probability the car is still plugged in, per entry of ``slots``
    floor_a: float = 0.0  # lower bound in slot 0 (the allocator's minimum), 0: none


def _max_a(site: Site, s: Session, watts_per_a: float) -> float:
    charger = site.charger(s.charger_id)
    limit = charger.max_current_a
    if s.vehicle_max_current_a is not None:
        limit = min(limit, s.vehicle_max_current_a)
    if charger.max_power_w is not None and watts_per_a > 0:
        limit = min(limit, charger.max_power_w / watts_per_a)
    return max(0.0, limit)


def _slots(
    inp: PlanInput, arrive_s: float, depart_s: float
) -> tuple[npt.NDArray[np.int64], FloatArray]:
    """Slot indices overlapping [arrive_s, depart_s) and the fraction of each covered."""
    t0, dt = inp.start_s, inp.slot_s
    k0 = max(0, math.floor((arrive_s - t0) / dt))
    k1 = min(inp.n_slots, math.ceil((depart_s - t0) / dt))
    ks = np.arange(k0, max(k0, k1), dtype=np.int64)
    lo = np.maximum(t0 + ks * dt, arrive_s)
    hi = np.minimum(t0 + (ks + 1) * dt, depart_s)
    frac = np.clip((hi - lo) / dt, 0.0, 1.0)
    keep = frac > 1e-9
    return ks[keep], frac[keep]


MIN_STAY = 0.02  # a kWh is never worth less than this share: energy stays the first goal
NEAREST_STAYS = 100  # past sessions whose declared stay is most like this one's


def _stay_samples(inp: PlanInput) -> FloatArray:
    """``inp.stay_samples`` as an (n, 2) array: log declared stay, true/declared ratio."""
    if not inp.stay_samples:
        return np.empty((0, 2))
    a = np.asarray(inp.stay_samples, dtype=np.float64).reshape(-1, 2)
    return np.column_stack((np.log(np.maximum(a[:, 0], 60.0)), a[:, 1]))


def _near_ratios(samples: FloatArray, stay_s: float) -> FloatArray:
    """Sorted true/declared ratios of the ``NEAREST_STAYS`` samples whose declared stay is
    closest to ``stay_s`` (in log): drivers who declare two hours mostly stay longer, those
    who declare eight mostly leave on time."""
    near = samples
    if len(samples) > NEAREST_STAYS:
        gap = np.abs(samples[:, 0] - math.log(stay_s))
        near = samples[np.argpartition(gap, NEAREST_STAYS - 1)[:NEAREST_STAYS]]
    return np.sort(near[:, 1])


def _stay(
    inp: PlanInput,
    ratios: FloatArray,
    arrival_s: float,
    stay_s: float,
    slots: npt.NDArray[np.int64],
) -> FloatArray:
    """P(still plugged in at each slot's middle | plugged in at the start), from ``ratios``
    (``_near_ratios``); ones without samples. The first slot counts as certain: the car is
    here now and the plan is remade long before that slot ends, so a kWh planned there is
    delivered."""
    if not len(ratios) or not len(slots):
        return np.ones(len(slots))
    mid = inp.start_s + (slots + 0.5) * inp.slot_s
    x = (mid - arrival_s) / stay_s
    x_now = max(inp.start_s - arrival_s, 0.0) / stay_s
    surv = 1.0 - np.searchsorted(ratios, x, side="right") / len(ratios)
    surv_now = 1.0 - np.searchsorted(ratios, x_now, side="right") / len(ratios)
    if surv_now <= 0:
        # stayed longer than anyone before: no guidance beyond "it is here now"
        return np.where(slots == 0, 1.0, MIN_STAY)
    out = np.clip(surv / surv_now, MIN_STAY, 1.0)
    out[slots == 0] = 1.0
    return out


def _overdue_departure(
    inp: PlanInput, ratios: FloatArray, arrival_s: float, stay_s: float
) -> float:
    """Where to end the plan of a car still plugged in after its declared departure: the
    median stay of the similar past sessions that stayed at least this long, at least one
    slot from now (the next re-plan extends it again). Planning it only one slot ahead let
    the plan treat its energy as now-or-never and starve it behind cars with longer plans."""
    later = ratios[ratios * stay_s > inp.start_s - arrival_s]
    guess = arrival_s + float(np.median(later)) * stay_s if len(later) else -math.inf
    return max(guess, inp.start_s + inp.slot_s)


def _one(inp: PlanInput, s: Session, samples: FloatArray) -> LpSession:
    try:
        charger = inp.site.charger(s.charger_id)
    except KeyError:
        raise InputError(f"session {s.session_id!r}: unknown charger {s.charger_id!r}") from None
    phases = s.vehicle_phases if s.vehicle_phases == 1 else None
    wpa = charger_voltage_v(inp.site, charger, phases)
    declared = s.departure_s if s.departure_s is not None else s.arrival_s + inp.default_dwell_s
    stay_s = max(declared - s.arrival_s, 60.0)
    ratios = _near_ratios(samples, stay_s) if len(samples) else samples[:, 1]
    depart = declared
    if declared < inp.start_s + inp.slot_s:  # still here at (or about to pass) its departure
        depart = _overdue_departure(inp, ratios, s.arrival_s, stay_s)
    slots, frac = _slots(inp, max(s.arrival_s, inp.start_s), depart)
    need = s.energy_needed_wh
    stay = _stay(inp, ratios, s.arrival_s, stay_s, slots)
    return LpSession(
        session=s,
        node_id=charger.node_id,
        phasor=connection_phasors(inp.site, charger, phases),
        watts_per_a=wpa,
        max_a=_max_a(inp.site, s, wpa),
        departure_s=declared,
        slots=slots,
        kwh_per_a=wpa * frac * inp.slot_s / 3.6e6,
        need_kwh=math.inf if need is None else need / 1000.0,
        weight=(inp.priority_factor**s.priority) * max(s.weight, 1e-6),
        stay=stay,
    )


def lp_sessions(inp: PlanInput) -> list[LpSession]:
    """Every session of ``inp`` prepared for the LP (in input order)."""
    samples = _stay_samples(inp)
    out = [_one(inp, s, samples) for s in inp.sessions]
    return _with_floors(inp, out) if inp.floor_first_slot else out


def _with_floors(inp: PlanInput, sessions: list[LpSession]) -> list[LpSession]:
    """Give every car that still wants energy and charges now (``inp.floor_sessions``; None:
    every car) its minimum current in slot 0, as the live allocator will (under ``planned``
    it never stops a charging car), so that the plan's first slot shares only what is left
    above the minima. Only when every such minimum fits (exact phasors, with the polygon's
    margin); otherwise the allocator rotates paused cars and the plan stays free.

    A car that does not charge gets no floor: the allocator starts it only where the plan
    wants it at its minimum. Flooring it too spread the transformer over cars that could
    wait at every 5-minute re-plan: Caltech fall 2019 at 50 kVA, 94.0 % of the optimum with
    every car floored, 94.5 % with only the charging ones (README "Planner benchmarks")."""
    floors: dict[int, float] = {}
    for i, s in enumerate(sessions):
        if not len(s.slots) or s.slots[0] != 0:
            continue
        if inp.floor_sessions is not None and s.session.session_id not in inp.floor_sessions:
            continue
        full_kwh = s.watts_per_a * inp.slot_s / 3.6e6
        lo = min(inp.site.charger(s.session.charger_id).min_current_a, s.max_a)
        if abs(s.kwh_per_a[0] - full_kwh) < 1e-12 and s.need_kwh >= lo * full_kwh and lo > 0:
            floors[i] = lo
    if not floors or not _fits(inp, sessions, floors):
        return sessions
    return [dataclasses.replace(s, floor_a=floors.get(i, 0.0)) for i, s in enumerate(sessions)]


def _fits(inp: PlanInput, sessions: list[LpSession], floors: dict[int, float]) -> bool:
    site = inp.site
    scale = math.cos(math.radians(inp.max_facet_deg) / 2) - 1e-6
    z = {n.id: np.zeros(3, dtype=np.complex128) for n in site.nodes}
    for i, lo in floors.items():
        for nid in site.ancestors(sessions[i].node_id):
            z[nid] += sessions[i].phasor * lo
    for node in site.nodes:
        build = inp.forecast.building_line_a.get(node.id)
        b0 = np.zeros(3) if build is None else np.asarray(build, dtype=np.float64)[0]
        room = (np.asarray(node.line_limit_a) - node.margin_a - b0) * scale
        if np.any(np.abs(z[node.id]) > room):
            return False
        if node.primary is not None:
            pm = primary_matrix(node.primary)
            proom = (node.primary.line_limit_a - node.margin_a - np.abs(pm) @ b0) * scale
            if np.any(np.abs(pm @ z[node.id]) > proom):
                return False
    return True
