"""Policies as data: who keeps charging when not everyone fits (``keep_order``) and how the
level ``t`` of the water-filling maps to each car's current (``profiles``).

* ``equal``: ``x = clip(w t, min, max)`` — max-min fair, weighted by ``Session.weight``.
* ``priority``: the same inside a tier; tiers are offset along ``t`` so a higher tier reaches
  its maximum (or a binding limit) before the next tier rises above its minimum.
* ``fcfs``: every car its own tier, in arrival order.
* ``deadline``: stage 1 raises cars in EDF (or LLF) order up to the rate they need
  (energy still needed ÷ (V · time to departure)); stage 2 shares what is left max-min fair.
* ``planned``: stage 1 raises every car proportionally towards the planner's target; stage 2
  as for ``deadline``.

Pausing order (who keeps its minimum): ``equal`` and ``priority`` (within a tier) rotate —
cars that started less than ``rotation_interval_s`` ago come first (a car that got its turn
charges a whole interval before a paused car takes it: were paused cars first, a second car
paused as long as the one just started would stop it again at the next cycle), then cars
paused for at least an interval, then cars that have charged longer (longest last), then
recently paused cars.
``fcfs`` keeps the earliest arrivals, ``deadline`` the earliest deadline (least laxity),
``planned`` the largest targets (then rotation).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import repeat

import numpy as np
import numpy.typing as npt

from ampshare.core._compiled import CompiledSite, freeze, last_read
from ampshare.core._sessions import SessionFacts
from ampshare.core._waterfill import Profiles
from ampshare.core.allocation import (
    AllocationInput,
    PolicyName,
    RotationState,
    SinceByCharger,
)
from ampshare.core.snapshot import Session

__all__ = ["Cars", "charging_now", "keep_order", "planned_targets_a", "profiles", "rotation_key"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True, kw_only=True)
class Cars:
    """Per-charger facts the policies look at (n,): effective min/max current, W per A,
    and the sessions (``facts.sessions[i]`` None when no car is plugged in)."""

    lo: F64
    hi: F64
    volt: F64
    facts: SessionFacts

    @property
    def sessions(self) -> tuple[Session | None, ...]:
        return self.facts.sessions


def rotation_key(inp: AllocationInput, cid: str, sess: Session) -> tuple[int, float]:
    """Smaller keeps charging first (see the module docstring)."""
    rot, now, interval = inp.rotation, inp.now_s, inp.policy.rotation_interval_s
    return rotation_key_at(rot, now, interval, cid, sess.arrival_s)


def rotation_key_at(
    rot: RotationState, now: float, interval: float, cid: str, arrival_s: float
) -> tuple[int, float]:
    if rot.keeps_charging(cid):
        since = rot.charging_since_s[cid]
        return (0, -since) if now - since < interval else (2, -since)
    paused = rot.paused_since_s.get(cid, arrival_s)
    return (1, paused) if now - paused >= interval else (3, paused)


def _deadline_key(inp: AllocationInput, cars: Cars, i: int, sess: Session) -> float:
    if sess.departure_s is None:
        return np.inf
    if inp.policy.deadline_mode == "llf":
        need = sess.energy_needed_wh or 0.0
        full_w = max(cars.volt[i] * cars.hi[i], 1e-9)
        return float(sess.departure_s - inp.now_s - 3600.0 * need / full_w)
    return float(sess.departure_s)


def _rotation_keys(
    inp: AllocationInput, cs: CompiledSite, cand: I64, arrival: F64
) -> tuple[F64, F64]:
    """``rotation_key`` for the cars ``cand`` at once: (group, time) arrays."""
    rot, now, interval = inp.rotation, inp.now_s, inp.policy.rotation_interval_s
    if not rot.charging_since_s and not rot.paused_since_s:
        group = np.where(now - arrival >= interval, 1.0, 3.0)
        return group, arrival
    # The memory as arrays over every charger, read once per ``RotationState`` object (a busy
    # site passes the same one back cycle after cycle), then the same cases as
    # ``rotation_key_at`` as array operations (a Python call per car cost ~0.4 ms per 1,000).
    charging_all, paused_all = rotation_memory(cs, rot)
    charging, paused_at = charging_all[cand], paused_all[cand]
    is_charging = charging_now(cs, rot)[cand]
    paused = np.where(np.isnan(paused_at), arrival, paused_at)
    charge_group = np.where(now - charging < interval, 0.0, 2.0)
    pause_group = np.where(now - paused >= interval, 1.0, 3.0)
    group = np.where(is_charging, charge_group, pause_group)
    since = np.where(is_charging, -charging, paused)
    return group, since


def rotation_memory(cs: CompiledSite, rot: RotationState) -> tuple[F64, F64]:
    """``_memory``, read once per ``RotationState`` object."""
    return last_read(cs, "rotation", rot, lambda: _memory(rot, cs))


def charging_now(cs: CompiledSite, rot: RotationState) -> npt.NDArray[np.bool_]:
    """Per charger (site order): the memory says it charges (and is not paused)."""
    charging, paused = rotation_memory(cs, rot)
    return np.asarray(~np.isnan(charging) & np.isnan(paused))


def _memory(rot: RotationState, cs: CompiledSite) -> tuple[F64, F64]:
    """Per charger (site order): since when it charges, since when it is paused (nan: not)."""
    return _since(cs, rot.charging_since_s), _since(cs, rot.paused_since_s)


def _since(cs: CompiledSite, known: Mapping[str, float]) -> F64:
    ids = cs.charger_ids
    if isinstance(known, SinceByCharger) and known.ids is ids:
        return known.since  # the allocator's own array for this site (read-only)
    out = np.fromiter(map(known.get, ids, repeat(float("nan"))), dtype=np.float64, count=len(ids))
    freeze(out)
    return out


def keep_order(inp: AllocationInput, cars: Cars, cs: CompiledSite, cand: I64) -> I64:
    """``cand`` sorted best-first: the first ones keep their minimum when not all fit.
    Ties end in charger order (the site's order), so the result is deterministic."""
    name = inp.policy.name
    arrival = cars.facts.arrival_s[cand]
    group, since = _rotation_keys(inp, cs, cand, arrival)
    if name is PolicyName.FCFS:
        first, group, since = arrival, np.zeros(len(cand)), np.zeros(len(cand))
    elif name is PolicyName.PRIORITY:
        first = -cars.facts.priority[cand]
    elif name in (PolicyName.DEADLINE, PolicyName.PLANNED):
        idx = cand.tolist()
        # Candidates all have a session (``Grid.candidate``); the filter only narrows the type.
        ss = [s for s in (cars.sessions[i] for i in idx) if s is not None]
        if name is PolicyName.DEADLINE:
            first = np.array([_deadline_key(inp, cars, i, s) for i, s in zip(idx, ss, strict=True)])
        else:
            targets = inp.policy.planned_targets_a
            first = -np.array([targets.get(s.session_id, 0.0) for s in ss], dtype=np.float64)
    else:
        first = np.zeros(len(cand))
    order = np.lexsort((cand, since, group, first))
    return np.asarray(cand[order], dtype=np.int64)


def _need_a(inp: AllocationInput, cars: Cars, i: int, sess: Session) -> float:
    """Current needed to deliver the declared energy by the declared departure."""
    need = sess.energy_needed_wh
    if need is None or sess.departure_s is None:
        return float(cars.lo[i])
    hours = (sess.departure_s - inp.now_s) / 3600.0
    if hours <= 0 or cars.volt[i] <= 0:
        return float(cars.hi[i]) if need > 0 else float(cars.lo[i])
    return float(need / (cars.volt[i] * hours))


def _two_stage(lo: F64, hi: F64, target: F64, start1: F64, slope1: F64) -> Profiles:
    tgt = np.clip(target, lo, hi)
    stage2 = float(start1.max(initial=0.0) + (tgt - lo).max(initial=0.0) + 1.0)
    return Profiles(
        base=lo.copy(),
        start=np.stack([start1, stage2 + tgt], axis=1),
        slope=np.stack([slope1, np.ones_like(lo)], axis=1),
        length=np.stack([tgt - lo, hi - tgt], axis=1),
    )


def profiles(inp: AllocationInput, cars: Cars, order: I64) -> Profiles:
    """Each charger's current as a function of the shared level (only ``order`` matter)."""
    n = len(cars.lo)
    lo, hi = cars.lo, np.maximum(cars.hi, cars.lo)
    name = inp.policy.name
    w = np.ones(n)
    offset = np.zeros(n)
    span = float((hi / 1e-3).max(initial=1.0)) + 1.0
    facts = cars.facts
    if name in (PolicyName.EQUAL, PolicyName.PRIORITY):
        w[order] = facts.weight[order]
        span = float((hi / w).max(initial=1.0)) * 2.0 + 1.0
    if name is PolicyName.PRIORITY:
        # Rank 0 for the highest tier present among all plugged-in cars, 1 for the next, ...
        tiers = np.unique(facts.priority[facts.has])[::-1]
        rank = np.searchsorted(-tiers, -facts.priority[order])
        offset[order] = rank * span
    if name is PolicyName.FCFS:
        by_arrival = order[np.argsort(facts.arrival_s[order], kind="stable")]
        offset[by_arrival] = np.arange(len(by_arrival)) * (float(hi.max(initial=1.0)) + 1.0)
    if name is PolicyName.DEADLINE:
        target = np.array([_deadline_target(inp, cars, i) for i in range(n)])
        step = float((target - lo).max(initial=0.0)) + 1.0
        start1 = np.zeros(n)
        start1[order] = np.arange(len(order)) * step
        return _two_stage(lo, hi, target, start1, np.ones(n))
    if name is PolicyName.PLANNED:
        target = planned_targets_a(inp, cars)
        safe = np.maximum(np.clip(target, lo, hi), 1e-9)
        return _two_stage(lo, hi, target, lo / safe, safe)
    return Profiles(
        base=lo.copy(),
        start=(offset + lo / w)[:, None],
        slope=w[:, None],
        length=(hi - lo)[:, None],
    )


def planned_targets_a(inp: AllocationInput, cars: Cars) -> F64:
    """The plan's current for each charger's car now (its minimum when the plan does not
    know the session yet, e.g. a car that arrived since the last plan)."""
    targets = inp.policy.planned_targets_a
    lows = cars.lo.tolist()
    return np.array(
        [
            lo if s is None else targets.get(s.session_id, lo)
            for s, lo in zip(cars.sessions, lows, strict=True)
        ],
        dtype=np.float64,
    )


def _deadline_target(inp: AllocationInput, cars: Cars, i: int) -> float:
    sess = cars.sessions[i]
    return float(cars.lo[i]) if sess is None else _need_a(inp, cars, i, sess)
