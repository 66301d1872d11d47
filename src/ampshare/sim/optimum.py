"""The offline optimum: the most energy any controller could have delivered, knowing the future.

Given the true arrivals, departures and demands, one LP per busy stretch (sessions that overlap
in time; stretches are independent because nothing couples them when only energy counts)
maximises delivered energy under every node, line and transformer-primary limit. Phasor
magnitudes use the *circumscribed* polygon (a relaxation), and current is continuous (no 6 A
floor, no pilot steps, no EV taper), so the result is an upper bound for every policy the
simulator runs. Cost and demand charge of the optimum's schedule are reported too when a
tariff is given (they are not optimised: the optimum only asks "how much energy").

Chargers are assigned as the simulator assigns them (the session's own station when free,
otherwise round robin), so the bound refers to the same plug-ins as the replay.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ampshare.core.electrical import charger_voltage_v
from ampshare.core.planner import Linearisation, PlanInput, PlanStatus, SiteForecast, plan
from ampshare.core.site import Site
from ampshare.core.snapshot import Session
from ampshare.core.tariff import CostBreakdown, Tariff
from ampshare.errors import InputError
from ampshare.sim.data import SessionRecord
from ampshare.sim.series import TimeSeries

__all__ = ["OnlineIdeal", "OptimumResult", "assign_chargers", "offline_optimum", "online_ideal"]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class OptimumResult:
    """Energy the optimum delivers, per session (input order; 0 for sessions that found no
    free charger) and in total, with the site power it implies on the ``step_s`` grid."""

    delivered_wh: FloatArray
    requested_wh: FloatArray
    charger_of: tuple[str | None, ...]
    times_s: FloatArray  # slot starts
    ev_kw: FloatArray  # EV power per slot (mean)
    building_kw: FloatArray
    stretches: int
    status: PlanStatus  # the worst status of any stretch
    linearisation: Linearisation
    cost: CostBreakdown | None = None

    @property
    def energy_delivered_wh(self) -> float:
        return float(self.delivered_wh.sum())

    @property
    def energy_requested_wh(self) -> float:
        return float(self.requested_wh.sum())

    @property
    def demands_met_ratio(self) -> float:
        if not len(self.requested_wh):
            return 1.0
        return float(np.mean(self.delivered_wh >= 0.99 * self.requested_wh))

    @property
    def peak_kw(self) -> float:
        return float(np.max(self.ev_kw + self.building_kw, initial=0.0))

    def metrics(self) -> dict[str, float | int | None]:
        """The simulator's metric keys this result can fill."""
        req = self.energy_requested_wh
        return {
            "energy_requested_kwh": round(req / 1000, 3),
            "energy_delivered_kwh": round(self.energy_delivered_wh / 1000, 3),
            "energy_delivered_ratio": round(self.energy_delivered_wh / req, 5) if req else 1.0,
            "sessions": len(self.delivered_wh),
            "demands_met_ratio": round(self.demands_met_ratio, 5),
            "peak_site_kw": round(self.peak_kw, 3),
            "energy_cost": None if self.cost is None else round(self.cost.energy_cost, 2),
            "demand_charge": None if self.cost is None else round(self.cost.demand_charge, 2),
        }


def assign_chargers(site: Site, sessions: Sequence[SessionRecord]) -> list[str | None]:
    """Charger id per session as the simulator plugs cars in (None: none free)."""
    ids = [c.id for c in site.chargers]
    busy_until = dict.fromkeys(ids, -math.inf)
    nxt = 0
    out: list[str | None] = []
    for rec in sessions:
        if rec.station_id in busy_until and busy_until[rec.station_id] <= rec.arrival_s:
            pick: str | None = rec.station_id
        else:
            pick = None
            for k in range(len(ids)):  # round robin, like the replay
                cand = ids[(nxt + k) % len(ids)]
                if busy_until[cand] <= rec.arrival_s:
                    pick, nxt = cand, (nxt + k + 1) % len(ids)
                    break
        if pick is not None:
            busy_until[pick] = rec.departure_s
        out.append(pick)
    return out


def _stretches(sessions: Sequence[SessionRecord], keep: list[int]) -> list[list[int]]:
    """Groups of session indices whose plug-in intervals chain together in time."""
    groups: list[list[int]] = []
    end = -math.inf
    for i in sorted(keep, key=lambda i: sessions[i].arrival_s):
        if sessions[i].arrival_s >= end:  # nobody still plugged in: a new stretch
            groups.append([])
            end = -math.inf
        groups[-1].append(i)
        end = max(end, sessions[i].departure_s)
    return groups


def _building(
    site: Site, load: TimeSeries | None, t: FloatArray, step_s: float
) -> tuple[FloatArray, FloatArray]:
    """(per-line A (n, 3), kW (n,)) of the building on the slot grid: the smallest value in
    each slot, so that the optimum stays an upper bound."""
    n_lines = len(site.voltage.lines)
    v_ln = site.voltage.line_to_neutral_v
    mask = np.array([1.0 if k < n_lines else 0.0 for k in range(3)])
    if load is None:
        return np.zeros((len(t), 3)), np.zeros(len(t))
    samples = np.stack([load.at(t + f * step_s) for f in (0.0, 0.25, 0.5, 0.75)])
    low = np.maximum(samples.min(axis=0), 0.0)
    if load.per_line:
        line_a = low * mask
        return line_a, line_a.sum(axis=1) * v_ln / 1000
    return np.outer(low * 1000 / (n_lines * v_ln), mask), low


def _stretch_input(
    site: Site,
    recs: list[tuple[SessionRecord, str]],
    load: TimeSeries | None,
    step_s: float,
    *,
    vehicle_max_a: float | None,
    lin: Linearisation,
    max_facet_deg: float,
) -> PlanInput:
    """One stretch as a planning problem on the ``step_s`` grid, with the true departures."""
    start = math.floor(min(r.arrival_s for r, _ in recs) / step_s) * step_s
    n = max(1, math.ceil((max(r.departure_s for r, _ in recs) - start) / step_s))
    t = start + step_s * np.arange(n, dtype=np.float64)
    line_a, _ = _building(site, load, t, step_s)
    root = next((m.node_id for m in site.meters), site.root.id)
    sessions = tuple(
        Session(
            session_id=str(k),
            charger_id=cid,
            arrival_s=r.arrival_s,
            departure_s=r.departure_s,
            energy_wanted_wh=r.energy_wh,
            vehicle_max_current_a=vehicle_max_a,
        )
        for k, (r, cid) in enumerate(recs)
    )
    return PlanInput(
        site=site,
        start_s=start,
        slot_s=step_s,
        n_slots=n,
        sessions=sessions,
        forecast=SiteForecast(building_line_a={root: line_a}),
        linearisation=lin,
        max_facet_deg=max_facet_deg,
    )


def _solve_stretch(
    site: Site, recs: list[tuple[SessionRecord, str]], inp: PlanInput
) -> tuple[FloatArray, float, FloatArray, PlanStatus]:
    """Solve one stretch (``_stretch_input``): energy per session, the stretch's start, EV
    power per slot and the solver status."""
    step_s = inp.slot_s
    start, n = inp.start_s, inp.n_slots
    t = start + step_s * np.arange(n, dtype=np.float64)
    p = plan(inp)
    got = np.array([s.expected_wh for s in p.sessions])
    ev_kw = np.zeros(n)
    for i, (_, cid) in enumerate(recs):
        ev_kw += p.current_a[i] * _watts_per_a(site, cid) / 1000
    # A session leaving mid-slot only draws for part of it: scale the slot's power to the
    # energy actually planned, so cost and peak are not overstated.
    return got, start, ev_kw * _slot_fill(p.current_a, recs, t, step_s, site), p.status


def _watts_per_a(site: Site, charger_id: str) -> float:
    return charger_voltage_v(site, site.charger(charger_id))


def _slot_fill(
    current: FloatArray,
    recs: list[tuple[SessionRecord, str]],
    t: FloatArray,
    step_s: float,
    site: Site,
) -> FloatArray:
    """Ratio of energy-true power to full-slot power in each slot (1 where nothing is cut)."""
    full = np.zeros(len(t))
    true = np.zeros(len(t))
    for i, (r, cid) in enumerate(recs):
        lo = np.maximum(t, r.arrival_s)
        hi = np.minimum(t + step_s, r.departure_s)
        frac = np.clip((hi - lo) / step_s, 0.0, 1.0)
        w = current[i] * _watts_per_a(site, cid)
        full += w
        true += w * frac
    return np.divide(true, full, out=np.ones_like(full), where=full > 0)


def offline_optimum(
    site: Site,
    sessions: Sequence[SessionRecord],
    building_load: TimeSeries | None = None,
    step_s: float = 300.0,
    *,
    tariff: Tariff | None = None,
    vehicle_max_current_a: float | None = None,
    linearisation: Linearisation = Linearisation.CIRCUMSCRIBED,
    max_facet_deg: float = 10.0,
) -> OptimumResult:
    """Most energy deliverable to ``sessions`` (true departures) on ``site``; see module doc.

    ``building_load`` is the simulator's series (kW, or A per line at the metered node);
    ``vehicle_max_current_a`` caps every car like ``EvOptions.max_current_a``.
    """
    if step_s <= 0:
        raise InputError(f"offline optimum: step must be positive (got {step_s} s)")
    charger_of = assign_chargers(site, sessions)
    keep = [i for i, c in enumerate(charger_of) if c is not None]
    delivered = np.zeros(len(sessions))
    pieces: list[tuple[float, FloatArray]] = []
    worst = PlanStatus.OPTIMAL
    groups = _stretches(sessions, keep)
    for group in groups:
        recs = [(sessions[i], charger_of[i] or "") for i in group]
        inp = _stretch_input(
            site,
            recs,
            building_load,
            step_s,
            vehicle_max_a=vehicle_max_current_a,
            lin=linearisation,
            max_facet_deg=max_facet_deg,
        )
        got, start, ev_kw, status = _solve_stretch(site, recs, inp)
        delivered[group] = got
        pieces.append((start, ev_kw))
        worst = worst if status is PlanStatus.OPTIMAL else status
    times, ev = _on_grid(pieces, step_s)
    _, bld_kw = _building(site, building_load, times, step_s)
    cost = tariff.cost(times, ev + bld_kw, step_s=step_s) if tariff and len(times) else None
    return OptimumResult(
        delivered_wh=delivered,
        requested_wh=np.array([r.energy_wh for r in sessions]),
        charger_of=tuple(charger_of),
        times_s=times,
        ev_kw=ev,
        building_kw=bld_kw,
        stretches=len(groups),
        status=worst,
        linearisation=linearisation,
        cost=cost,
    )


def _on_grid(
    pieces: list[tuple[float, FloatArray]], step_s: float
) -> tuple[FloatArray, FloatArray]:
    """Stitch per-stretch power onto one regular grid (zeros between stretches)."""
    if not pieces:
        return np.zeros(0), np.zeros(0)
    t0 = min(s for s, _ in pieces)
    t1 = max(s + step_s * len(p) for s, p in pieces)
    n = round((t1 - t0) / step_s)
    out = np.zeros(n)
    for s, p in pieces:
        k = round((s - t0) / step_s)
        out[k : k + len(p)] += p
    return t0 + step_s * np.arange(n, dtype=np.float64), out


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class OnlineIdeal:
    """``online_ideal``'s answer: energy per session [Wh], plans solved, and how many of them
    HiGHS did not prove optimal (each such plan may deliver less)."""

    delivered_wh: FloatArray
    plans: int
    not_optimal: int

    @property
    def energy_delivered_wh(self) -> float:
        return float(self.delivered_wh.sum())


def online_ideal(
    site: Site,
    sessions: Sequence[SessionRecord],
    step_s: float = 300.0,
    *,
    linearisation: Linearisation = Linearisation.CIRCUMSCRIBED,
    max_facet_deg: float = 10.0,
) -> OnlineIdeal:
    """Energy per session (input order) of an ideal receding-horizon planner that knows
    every plugged-in car's true departure and demand but no car that has not arrived yet: at
    each arrival it plans the cars present (what they still need, by when they truly leave)
    with the same LP as the offline optimum, and its plan is followed exactly (continuous
    current, no minimum, no controller) until the next arrival.

    Against ``offline_optimum`` (same linearisation) this measures what knowing the future
    arrivals is worth to a planner of this kind: it is what ours would reach if it read every
    driver perfectly and its plans were realised exactly. (Not a strict bound for every
    online policy: a worse plan may happen to suit the cars that come next.)"""
    if step_s <= 0:
        raise InputError(f"online ideal: step must be positive (got {step_s} s)")
    charger_of = assign_chargers(site, sessions)
    keep = [i for i, c in enumerate(charger_of) if c is not None]
    got = np.zeros(len(sessions))
    plans = not_optimal = 0
    arrivals = sorted({sessions[i].arrival_s for i in keep})
    for k, now in enumerate(arrivals):
        until = arrivals[k + 1] if k + 1 < len(arrivals) else math.inf
        here = [
            i
            for i in keep
            if sessions[i].arrival_s <= now < sessions[i].departure_s
            and got[i] < sessions[i].energy_wh - 1e-6
        ]
        if not here:
            continue
        end = max(sessions[i].departure_s for i in here)
        n = max(1, math.ceil((end - now) / step_s))
        inp = PlanInput(
            site=site,
            start_s=now,
            slot_s=step_s,
            n_slots=n,
            sessions=tuple(
                Session(
                    session_id=str(i),
                    charger_id=charger_of[i] or "",
                    arrival_s=sessions[i].arrival_s,
                    departure_s=sessions[i].departure_s,
                    energy_wanted_wh=sessions[i].energy_wh,
                    energy_delivered_wh=float(got[i]),
                )
                for i in here
            ),
            linearisation=linearisation,
            max_facet_deg=max_facet_deg,
        )
        p = plan(inp)
        plans += 1
        not_optimal += p.status is not PlanStatus.OPTIMAL
        starts = now + step_s * np.arange(n, dtype=np.float64)
        for row, i in enumerate(here):
            lo = np.maximum(starts, now)
            hi = np.minimum(np.minimum(starts + step_s, until), sessions[i].departure_s)
            hours = np.clip(hi - lo, 0.0, None) / 3600.0
            wh = float(np.dot(p.current_a[row], hours)) * _watts_per_a(site, charger_of[i] or "")
            got[i] = min(sessions[i].energy_wh, got[i] + wh)
    return OnlineIdeal(delivered_wh=got, plans=plans, not_optimal=not_optimal)
