"""Baselines to compare the policies against — deliberately naive.

* ``static``: what installers configure today. Each charger gets the smallest, over the nodes
  above it, of (node line limit − margin) ÷ (number of chargers below that node), ignoring
  measurements, sessions elsewhere and building load; capped by its own and the vehicle's
  maximum; a share below the charger's minimum means 0.
* ``uncontrolled``: every plugged-in car at its maximum, ignoring every limit (the simulator
  reports the violations).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ampshare.core._compiled import CompiledSite, K, site_pair_coefficients
from ampshare.core._headroom import Headroom
from ampshare.core._reasons import node_headroom
from ampshare.core._waterfill import node_sums
from ampshare.core.allocation import (
    Allocation,
    AllocationInput,
    ChargerLimit,
    ChargerLimits,
    PolicyName,
    Reason,
    ReasonKind,
)
from ampshare.core.site import LimitUnit
from ampshare.core.snapshot import Session

__all__ = ["baseline"]

F64 = npt.NDArray[np.float64]


def _static_share(cs: CompiledSite) -> tuple[F64, list[str]]:
    m = len(cs.node_ids)
    count = np.bincount(cs.pair_n, minlength=m).astype(np.float64)
    lim = cs.base_limit[:, :3] - cs.margin[:, :3]
    per_node = lim.min(axis=1) / np.maximum(count, 1.0)
    share = np.full(len(cs.charger_ids), np.inf)
    where = [""] * len(cs.charger_ids)
    for i in range(len(cs.charger_ids)):
        anc = cs.ancestors[int(cs.leaf[i])]
        j = min(anc, key=lambda a: (per_node[a], a))
        share[i], where[i] = per_node[j], cs.node_ids[j]
    return share, where


def baseline(
    cs: CompiledSite, inp: AllocationInput, hr: Headroom, sessions: tuple[Session | None, ...]
) -> Allocation:
    static = inp.policy.name is PolicyName.STATIC
    share, where = _static_share(cs) if static else (np.full(len(cs.charger_ids), np.inf), [])
    limits = []
    x = np.zeros(len(cs.charger_ids))
    for i, c in enumerate(cs.site.chargers):
        sess = sessions[i]
        phases = 3 if c.connection.value == "3p" else 1
        if sess is None:
            limits.append(
                ChargerLimit(
                    charger_id=c.id,
                    limit_a=0.0,
                    phases=phases,
                    reason=Reason(kind=ReasonKind.NO_SESSION),
                )
            )
            continue
        vmax = sess.vehicle_max_current_a
        best = float(min(c.max_current_a, vmax if vmax is not None else np.inf))
        kind = ReasonKind.VEHICLE_MAX if best < c.max_current_a else ReasonKind.CHARGER_MAX
        reason = Reason(kind=kind)
        val = best
        if static and share[i] < best:
            val = float(np.floor(share[i] / c.resolution_a + 1e-9) * c.resolution_a)
            reason = Reason(
                kind=ReasonKind.STATIC_SHARE, node_id=where[i], detail=f"{share[i]:g} A per charger"
            )
            if val < c.min_current_a - 1e-9:
                val = 0.0
        x[i] = val
        power = val * float(cs.volt3[i]) if c.limit_unit is LimitUnit.WATT else None
        limits.append(
            ChargerLimit(charger_id=c.id, limit_a=val, phases=phases, reason=reason, power_w=power)
        )
    # Every column, so that the controller also knows what the primary, power and line-sum
    # limits have left for decreases in flight (``NodeHeadrooms.any_a``).
    cols = np.arange(K, dtype=np.int64)
    v = node_sums(cs, site_pair_coefficients(cs, np.zeros(len(x), dtype=np.bool_), cols), x)
    room = node_headroom(cs, hr, v[:, :3], (cols, hr.available, v))
    return Allocation(limits=ChargerLimits.of(limits), headroom=room, rotation=inp.rotation)
