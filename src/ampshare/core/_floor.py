"""The minimum-current floor: who charges at all.

A car is either paused (0 A) or gets at least its minimum. When not every car fits at its
minimum, cars are admitted greedily in the policy's keep order: a car that does not fit on top
of those already admitted is left out, and one that fits is kept, even if a better-ranked car
further up the order did not fit (it may sit under another full circuit). Three-phase cars that
can switch and do not fit on three phases are retried on one phase.

Admission is vectorised: a pass drops every car that does not fit *alone* on top of the admitted
ones (it never will: admitted load only grows), then admits the longest prefix of the order that
fits at every node. Rows whose load can shrink when a car is added (transformer primaries,
where phasors of different lines partly cancel) are re-checked exactly after each pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ampshare.core._compiled import CompiledSite, site_pair_coefficients
from ampshare.core._grid import Grid
from ampshare.core._waterfill import node_sums, prefix_accept, slack_only, violations

__all__ = ["Floor", "decide"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True, kw_only=True)
class Floor:
    """Per charger (n,): ``running`` gets at least its minimum; ``forced`` runs although it may
    not fit (cannot be paused); ``one_phase`` counted on one phase; ``switched`` moved to one
    phase by this decision; ``plan_held`` (``planned`` only) would fit at its minimum but waits
    for the plan (``allocate._planned_floor``)."""

    running: B
    forced: B
    one_phase: B
    switched: B
    plan_held: B | None = None


def decide(
    cs: CompiledSite,
    grid: Grid,
    avail: F64,
    order: I64,
    cols: I64,
    *,
    after: Floor | None = None,
    held: F64 | None = None,
) -> Floor:
    """``avail`` holds the headroom of the columns ``cols`` only. ``after``: an earlier pass
    whose running cars stay admitted, counted at ``held`` (at least their minimum), while the
    cars of ``order`` are admitted at their minimum on top of them."""
    one = grid.one_phase.copy() if after is None else after.one_phase.copy()
    switched = np.zeros_like(one) if after is None else after.switched.copy()
    running = grid.forced.copy() if after is None else grid.forced | after.running
    counted = grid.lo if held is None else np.where(running, np.maximum(held, grid.lo), grid.lo)
    pcoef = site_pair_coefficients(cs, one, cols)
    remaining = order[~running[order]]
    # Usually everyone fits at the minimum: one exact check of the whole set settles it (only
    # when no row at all is over; rows already over need the car-by-car path below).
    everyone = running.copy()
    everyone[remaining] = True
    if not violations(node_sums(cs, pcoef, np.where(everyone, counted, 0.0)), avail).any():
        return Floor(running=everyone, forced=grid.forced.copy(), one_phase=one, switched=switched)
    for _ in range(len(order) + 2):
        if len(remaining) == 0:
            break
        v = node_sums(cs, pcoef, np.where(running, counted, 0.0))
        mask = np.zeros(len(cs.charger_ids), dtype=np.bool_)
        mask[remaining] = True
        slack = slack_only(cs, pcoef, v, avail, mask)
        fits = slack >= grid.lo - 1e-9
        retry = mask & ~fits & grid.switchable & ~one
        if retry.any():
            one |= retry
            switched |= retry
            pcoef = site_pair_coefficients(cs, one, cols)
            continue
        remaining = remaining[fits[remaining]]
        if len(remaining) == 0:
            break
        acc = prefix_accept(cs, pcoef, v, avail, remaining, delta=grid.lo)
        new = np.where(running, counted, np.where(acc, grid.lo, 0.0))
        if (violations(node_sums(cs, pcoef, new), avail) & ~violations(v, avail)).any():
            acc = np.zeros_like(acc)
            acc[remaining[0]] = True
        running |= acc
        remaining = remaining[~acc[remaining]]
    # A switched car that still did not make it goes back to its own connection.
    back = switched & ~running
    one &= ~back
    switched &= ~back
    return Floor(running=running, forced=grid.forced.copy(), one_phase=one, switched=switched)
