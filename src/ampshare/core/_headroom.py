"""Headroom per node and column: limit − margin − (measured total − measured EV below).

Non-EV ("other") load is a magnitude of unknown angle, so it is subtracted from the limit as a
magnitude (triangle inequality: ``|B + E| <= |B| + |E|`` never under-estimates a line).

* Metered, fresh: ``max(0, |T| - |E_meas|)`` per line, ``E_meas`` the phasor sum of the
  chargers' measured currents below (a charger without a measurement counts as 0 EV, which
  makes the building look larger — the pessimistic side).
* Metered, stale or missing: the worst case given by the controller, else the node's whole
  rating — its configured limit before margin and external caps, what its breaker lets
  through (nothing below gets current, and the nodes above count it at all it may carry:
  the pessimistic truth; the margin is room kept at the node, not a bound on its load).
* Unmetered: the other load of the metered nodes below it plus the known loads (``Site.loads``)
  hanging below it outside any meter, at their maximum.
* Fixed loads (chargers not controlled this cycle) are added at every node above them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain, compress, repeat
from operator import attrgetter, is_not

import numpy as np
import numpy.typing as npt

from ampshare.core._compiled import (
    COL_POWER,
    COL_PRIMARY,
    COL_SUM,
    CompiledSite,
    K,
    freeze,
    last_read,
)
from ampshare.core._rows import row_max, row_sum
from ampshare.core.allocation import AllocationInput, NodeMeasurement
from ampshare.core.snapshot import ChargerState

__all__ = ["Headroom", "headroom"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True, kw_only=True)
class Headroom:
    """``limit`` after margin and external caps, ``other`` non-EV load, both (m, K);
    ``cap_source`` names the external cap that set a row's limit ('' where none)."""

    limit: F64
    other: F64
    measured: B
    stale: B
    cap_source: list[list[str]]

    @property
    def available(self) -> F64:
        return np.asarray(self.limit - self.other, dtype=np.float64)


def _caps(cs: CompiledSite, inp: AllocationInput) -> tuple[F64, list[list[str]]]:
    lim = cs.base_limit.copy()
    src = [[""] * K for _ in cs.node_ids]
    for cap in inp.external_caps:
        if cap.until_s is not None and cap.until_s <= inp.now_s:
            continue
        j = cs.node_index.get(cap.node_id)
        if j is None:
            continue
        values = list(cap.line_limit_a or (np.inf,) * 3)
        for k, val in enumerate(values):
            if val < lim[j, k] and np.isfinite(lim[j, k]):
                lim[j, k], src[j][k] = val, cap.source
        if cap.max_power_w is not None and cap.max_power_w < lim[j, COL_POWER]:
            lim[j, COL_POWER], src[j][COL_POWER] = cap.max_power_w, cap.source
    return lim - cs.margin, src


def _ev_measured(cs: CompiledSite, inp: AllocationInput) -> tuple[F64, F64]:
    """Per node: |phasor sum| of measured EV line currents (m, 3) and measured EV power (m,).
    Kept for the very same ``charger_states`` object: a step woken by a meter reading alone
    (the overload path) sees the charger reports of the step before."""
    states = inp.charger_states
    return last_read(cs, "ev_measured", states, lambda: _ev_sums(cs, states))


def _ev_sums(cs: CompiledSite, states: Sequence[ChargerState]) -> tuple[F64, F64]:
    n = len(cs.charger_ids)
    meas = np.zeros((n, 3))
    power = np.full(n, np.nan)
    idx, rows, watts = _readings(cs, states)
    if len(idx):
        meas[idx] = np.where(np.isnan(rows), 0.0, rows)
        power[idx] = watts
    # Without a reported power, the charger's W per A times its largest line current.
    power = np.where(np.isnan(power), cs.volt3 * row_max(meas), power)
    # Sparse incidence products: every node's sum over the chargers below it in one step.
    z = meas * cs.unit3
    out = (
        np.abs(np.asarray(cs.incidence @ z, dtype=np.complex128)),
        np.asarray(cs.incidence @ power, dtype=np.float64),
    )
    freeze(*out)
    return out


def _readings(cs: CompiledSite, states: Sequence[ChargerState]) -> tuple[I64, F64, F64]:
    """Charger index, measured line currents (k, 3) and reported power (k,) of the states that
    carry a measurement of a charger of this site. ``map``/``attrgetter`` rather than a loop:
    this reads thousands of states every cycle."""
    cur = list(map(attrgetter("measured_current_a"), states))
    idx = np.fromiter(
        map(cs.charger_index.get, map(attrgetter("charger_id"), states), repeat(-1)),
        dtype=np.int64,
        count=len(states),
    )
    keep = (idx >= 0) & np.fromiter(map(is_not, cur, repeat(None)), dtype=np.bool_, count=len(cur))
    flags = keep.tolist()
    known = list(compress(cur, flags))
    watts = list(compress(map(attrgetter("power_w"), states), flags))
    try:
        flat = np.fromiter(chain.from_iterable(known), dtype=np.float64, count=3 * len(known))
        rows = flat.reshape(-1, 3)
    except TypeError:
        # A line not reported (None) becomes NaN here and then 0 A: a missing EV reading makes
        # the building look larger, the pessimistic side.
        rows = np.array(known, dtype=np.float64).reshape(-1, 3)
    if watts.count(None) == len(watts):
        pw = np.full(len(watts), np.nan)
    else:
        pw = np.array(watts, dtype=np.float64)
    return idx[keep], rows, pw


def _metered_other(
    ms: NodeMeasurement, rating: F64, ev: F64, ev_power: float, *, v_ln: float, present: B
) -> tuple[F64, float, bool]:
    """Other line load (3,) and power at a metered node, and whether it counted as stale.

    ``rating`` is the node's configured row (K,), before margin and caps: a stale meter
    without a worst case takes all of it."""
    cur = ms.current_a
    out = np.zeros(3)
    stale_any = ms.stale or cur is None
    for k in range(3):
        val = None if ms.stale or cur is None else cur[k]
        if val is None:
            stale_any = True
            worst = ms.worst_case_line_a
            out[k] = worst[k] if worst is not None else max(float(rating[k]), 0.0)
        elif ms.includes_ev_load:
            out[k] = max(0.0, val - ev[k])
        else:
            out[k] = val
    # A line the site does not have carries nothing, whatever a worst case says about it.
    out = np.where(np.isfinite(out) & present, out, 0.0)
    power = float(v_ln * out.sum())
    if stale_any and ms.worst_case_line_a is None and np.isfinite(rating[COL_POWER]):
        power = max(float(rating[COL_POWER]), power)
    if ms.power_w is not None and not stale_any:
        p = ms.power_w - ev_power if ms.includes_ev_load else ms.power_w
        power = max(0.0, p)
    return out, power, stale_any


def _fixed(cs: CompiledSite, inp: AllocationInput) -> F64:
    m = len(cs.node_ids)
    out = np.zeros((m, 3))
    for fl in inp.fixed_loads:
        i = cs.charger_index.get(fl.charger_id)
        if i is None:
            continue
        for j in cs.ancestors[int(cs.leaf[i])]:
            out[j] += fl.current_a
    return out


def _known_loads(cs: CompiledSite) -> F64:
    m = len(cs.node_ids)
    out = np.zeros((m, 3))
    for load in getattr(cs.site, "loads", ()):
        j = cs.node_index.get(load.node_id)
        if j is None:
            continue
        for line in load.site_lines():
            out[j, line.index] += load.max_current_a
    return out


def headroom(cs: CompiledSite, inp: AllocationInput) -> Headroom:
    """Limits and other load of every node for this instant."""
    lim, src = _caps(cs, inp)
    m = len(cs.node_ids)
    by_node = {ms.node_id: ms for ms in inp.measurements}
    ev, ev_power = _ev_measured(cs, inp)
    v_ln = cs.site.voltage.line_to_neutral_v
    measured = np.zeros(m, dtype=np.bool_)
    stale = np.zeros(m, dtype=np.bool_)
    present = np.zeros(3, dtype=np.bool_)
    present[[line.index for line in cs.site.voltage.lines]] = True
    # Plain lists: one small tree walk per cycle, where numpy's per-row overhead would dominate.
    own = _known_loads(cs).tolist()
    lines = [[0.0, 0.0, 0.0] for _ in range(m)]
    power = [0.0] * m
    parent = cs.parent.tolist()
    # Children after parents in site order: walk backwards so children are done first.
    for j in range(m - 1, -1, -1):
        ms = by_node.get(cs.node_ids[j])
        row = lines[j]
        if ms is not None:
            out, power[j], stale[j] = _metered_other(
                ms, cs.base_limit[j], ev[j], ev_power[j], v_ln=v_ln, present=present
            )
            row[:] = out.tolist()
            measured[j] = True
        else:
            o = own[j]
            row[0], row[1], row[2] = row[0] + o[0], row[1] + o[1], row[2] + o[2]
            power[j] += v_ln * (o[0] + o[1] + o[2])
        p = parent[j]
        if p >= 0 and cs.node_ids[p] not in by_node:
            up = lines[p]
            up[0], up[1], up[2] = up[0] + row[0], up[1] + row[1], up[2] + row[2]
            power[p] += power[j]
    fixed = _fixed(cs, inp)
    lines_a = np.asarray(lines, dtype=np.float64).reshape(m, 3) + fixed
    power_a = np.asarray(power, dtype=np.float64) + v_ln * row_sum(fixed)
    other = np.zeros((m, K))
    other[:, :3] = lines_a
    other[:, COL_POWER] = power_a
    other[:, COL_SUM] = row_sum(lines_a)
    other[:, COL_PRIMARY : COL_PRIMARY + 3] = np.einsum("mij,mj->mi", np.abs(cs.prim), lines_a)
    return Headroom(limit=lim, other=other, measured=measured, stale=stale, cap_source=src)
