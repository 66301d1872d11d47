"""Exact electrical accounting: which phasor each charger adds to each site line.

Every charger is modelled as a unity-power-factor load (what EVs are to within a few percent)
drawing ``I`` amperes RMS per phase. Its contribution to the site's line currents is a fixed
complex vector per ampere, so the current of any node line is ``|sum_i c_i * I_i|`` — the same
linear phasor model ACN-Sim uses for the Caltech garage.

* line-to-neutral on site line ``k``: ``I∠θ_k`` on line ``k``;
* line-to-line between site lines ``a`` and ``b``: the current flows in phase with
  ``V_a - V_b``, adding ``+I∠arg(V_a - V_b)`` to line ``a`` and its negative to line ``b``;
* three-phase (balanced): ``I∠θ_k`` on each line ``k``; with ``phases=1`` a three-phase
  charger's car charges on the charger's L1 terminal only.

Line angles come from ``VoltageSystem.line_angles_deg``; the charger's ``PhaseRotation`` maps
its terminals onto site lines. Lines the site does not have carry nothing.

A transformer node with a ``primary`` also limits its primary line currents: delta primary
``(I_a - I_c)/n, (I_b - I_a)/n, (I_c - I_b)/n`` of the secondary line phasors, wye ``I/n``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from ampshare.core.site import (
    Charger,
    CircuitNode,
    Connection,
    Line,
    PrimaryWinding,
    Site,
    TransformerPrimary,
)

__all__ = [
    "charger_power_w",
    "charger_voltage_v",
    "connection_phasors",
    "effective_phases",
    "line_of",
    "line_phasors",
    "node_line_currents_a",
    "primary_line_currents_a",
    "primary_matrix",
]

ComplexArray = npt.NDArray[np.complex128]
PerLine = tuple[float, float, float]


def line_phasors(site: Site) -> ComplexArray:
    """Unit line-to-neutral voltage phasors of L1..L3 (zero for lines the site lacks)."""
    present = {line.index for line in site.voltage.lines}
    angles = site.voltage.line_angles_deg
    return np.array(
        [np.exp(1j * math.radians(angles[k])) if k in present else 0j for k in range(3)],
        dtype=np.complex128,
    )


def effective_phases(charger: Charger, phases: int | None = None) -> int:
    """How many phases the charger draws on: 1 for line-to-neutral and line-to-line chargers,
    3 for three-phase ones unless ``phases=1`` (a one-phase car or a 1p switch)."""
    if charger.connection is Connection.THREE_PHASE:
        return 1 if phases == 1 else 3
    return 1


def connection_phasors(site: Site, charger: Charger, phases: int | None = None) -> ComplexArray:
    """Per-ampere contribution of ``charger`` to the site's line currents L1..L3, shape (3,).

    ``phases=1`` on a three-phase charger: the car charges on the charger's L1 terminal only.
    """
    v = line_phasors(site)
    out = np.zeros(3, dtype=np.complex128)
    conn = charger.connection
    if conn is Connection.THREE_PHASE and effective_phases(charger, phases) == 1:
        conn = Connection.L1
    if conn.is_line_to_line:
        a, b = (charger.phase_rotation.site_line(t).index for t in conn.terminals)
        diff = v[a] - v[b]
        if v[a] == 0 or v[b] == 0 or abs(diff) < 1e-12:
            # A line-to-line charger across a missing line cannot draw current; the config
            # layer rejects such sites, the core simply counts nothing here.
            return out
        u = diff / abs(diff)
        out[a] += u
        out[b] -= u
        return out
    for t in conn.terminals:
        k = charger.phase_rotation.site_line(t).index
        out[k] += v[k]
    return out


def charger_voltage_v(site: Site, charger: Charger, phases: int | None = None) -> float:
    """Watts per ampere of limit: V_LN per phase for line-to-neutral and three-phase charging
    (times the phases drawn), V_LL for line-to-line chargers."""
    if charger.connection.is_line_to_line:
        return site.voltage.line_to_line_v or 0.0
    n_lines = int(np.count_nonzero(connection_phasors(site, charger, phases)))
    return site.voltage.line_to_neutral_v * n_lines


def charger_power_w(
    site: Site, charger: Charger, current_a: float, phases: int | None = None
) -> float:
    """Active power [W] of ``charger`` drawing ``current_a`` per phase (unity power factor)."""
    return charger_voltage_v(site, charger, phases) * current_a


def primary_matrix(primary: TransformerPrimary | None) -> ComplexArray:
    """3x3 map from secondary line phasors to primary line phasors (zeros without a primary)."""
    if primary is None:
        return np.zeros((3, 3), dtype=np.complex128)
    n = primary.winding_ratio
    if primary.winding is PrimaryWinding.DELTA:
        m = np.array([[1, 0, -1], [-1, 1, 0], [0, -1, 1]], dtype=np.complex128)
    else:
        m = np.eye(3, dtype=np.complex128)
    return m / n


def _below(site: Site) -> dict[str, list[str]]:
    """Node id -> ids of chargers anywhere below it (the node itself included)."""
    out: dict[str, list[str]] = {n.id: [] for n in site.nodes}
    for c in site.chargers:
        for nid in site.ancestors(c.node_id):
            out[nid].append(c.id)
    return out


def _node_phasors(
    site: Site, currents_a: Mapping[str, float], phases: Mapping[str, int] | None
) -> dict[str, ComplexArray]:
    per_charger = {
        c.id: connection_phasors(site, c, (phases or {}).get(c.id)) * float(currents_a[c.id])
        for c in site.chargers
        if currents_a.get(c.id)
    }
    out: dict[str, ComplexArray] = {}
    for nid, ids in _below(site).items():
        total = np.zeros(3, dtype=np.complex128)
        for cid in ids:
            if cid in per_charger:
                total += per_charger[cid]
        out[nid] = total
    return out


def _mags(z: ComplexArray) -> PerLine:
    a = np.abs(z)
    return (float(a[0]), float(a[1]), float(a[2]))


def node_line_currents_a(
    site: Site, currents_a: Mapping[str, float], phases: Mapping[str, int] | None = None
) -> dict[str, PerLine]:
    """Exact EV line current magnitudes at every node for the given per-charger currents.

    ``currents_a`` maps charger id to its current per phase (missing: 0); ``phases`` maps a
    three-phase charger to 1 when its car charges on one phase.
    """
    return {nid: _mags(z) for nid, z in _node_phasors(site, currents_a, phases).items()}


def primary_line_currents_a(
    site: Site, currents_a: Mapping[str, float], phases: Mapping[str, int] | None = None
) -> dict[str, PerLine]:
    """Exact EV primary line current magnitudes of every transformer node with a ``primary``."""
    node_z = _node_phasors(site, currents_a, phases)
    with_primary: list[CircuitNode] = [n for n in site.nodes if n.primary is not None]
    return {n.id: _mags(primary_matrix(n.primary) @ node_z[n.id]) for n in with_primary}


def line_of(index: int) -> Line:
    """The ``Line`` with 0-based ``index``."""
    return (Line.L1, Line.L2, Line.L3)[index]
