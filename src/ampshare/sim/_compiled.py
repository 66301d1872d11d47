"""The site's limits as matrices, so that a whole replay is checked in a few numpy operations.

Each *row* is one limited quantity: a node's line (L1..L3) or a transformer primary's line.
``coef[j, r]`` is the complex current that 1 A of charger ``j`` adds to row ``r`` (from
``ampshare.core.electrical.connection_phasors``, the same phasor model the allocator uses,
summed up the tree; primaries apply the delta or wye transform of ``core/site.py``).
Building load is a measured magnitude with unknown angle, so it is added as a magnitude —
the pessimistic bound the allocator also uses (triangle inequality). A stationary battery at
the root is a balanced load at unity power factor, its phasors known (``battery``), so it is
summed with the chargers' exactly: its discharge lowers a line's current, never raises it as a
magnitude would. A test pins these matrices
against ``node_line_currents_a`` / ``primary_line_currents_a``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ampshare.core.electrical import (
    charger_voltage_v,
    connection_phasors,
    line_phasors,
    primary_matrix,
)
from ampshare.core.site import Connection, Site

__all__ = ["CompiledSite", "compile_site"]

FloatArray = npt.NDArray[np.float64]
ComplexArray = npt.NDArray[np.complex128]


@dataclass(frozen=True, slots=True, kw_only=True)
class CompiledSite:
    """Row labels, limits, charger coefficients and building-load incidence of a site.

    ``labels[r]`` is ``"node/L1"`` or ``"node/primary/L1"``; ``limit_a[r]`` the row's limit
    (without margin: a violation is a current above the rated limit itself); ``coef`` shape
    (chargers, rows); ``building`` shape (3, rows): how 1 A of building load on each line at
    the metered node shows up (magnitude bound) in every row; ``volts_v[j]`` and
    ``phases[j]`` the voltage across one phase of charger j and its phase count.
    ``coef_1p`` is ``coef`` for a car drawing on one phase only (a single-phase car on a
    three-phase charger); for other chargers it equals ``coef``. ``battery`` (rows,): the
    complex current 1 A per line of a balanced load at the root adds to each row.
    """

    labels: tuple[str, ...]
    node_of_row: tuple[str, ...]
    limit_a: FloatArray
    coef: ComplexArray
    coef_1p: ComplexArray
    building: FloatArray
    volts_v: FloatArray
    phases: npt.NDArray[np.int64]
    charger_ids: tuple[str, ...]
    battery: ComplexArray

    def row_currents_a(
        self,
        currents_a: FloatArray,
        single_a: FloatArray,
        building_a: FloatArray,
        battery_a: FloatArray | None = None,
    ) -> FloatArray:
        """Line current magnitude of every row: ``currents_a`` (steps, chargers) in A per
        phase drawn on the charger's whole connection, ``single_a`` the same for cars drawing
        on one phase only, ``building_a`` (steps, 3) magnitudes per line at the metered node,
        ``battery_a`` (steps,) a balanced load at the root in A per line (negative:
        discharging)."""
        known = currents_a @ self.coef + single_a @ self.coef_1p
        if battery_a is not None:
            known = known + np.outer(battery_a, self.battery)
        ev = np.abs(known)
        return np.asarray(ev + np.abs(building_a) @ self.building, dtype=np.float64)

    def power_w(self, currents_a: FloatArray, single_a: FloatArray) -> FloatArray:
        """Active power of the chargers at each step (W), unity power factor."""
        full = currents_a @ (self.volts_v * self.phases)
        return np.asarray(full + single_a @ self.volts_v, dtype=np.float64)


def compile_site(site: Site, building_node_id: str | None = None) -> CompiledSite:
    """Matrices of ``site``; building load is measured at ``building_node_id`` (default root)."""
    index = {n.id: i for i, n in enumerate(site.nodes)}
    n_ch = len(site.chargers)
    node_coef = np.zeros((2, n_ch, len(site.nodes), 3), dtype=np.complex128)
    for j, ch in enumerate(site.chargers):
        full = connection_phasors(site, ch)
        single = (
            connection_phasors(site, ch, 1) if ch.connection is Connection.THREE_PHASE else full
        )
        for nid in site.ancestors(ch.node_id):
            node_coef[0, j, index[nid]] += full
            node_coef[1, j, index[nid]] += single
    bnode = building_node_id or site.root.id
    b_nodes = set(site.ancestors(bnode))
    bat = line_phasors(site)  # 1 A per line, in phase with each line's voltage
    bat_rows: list[complex] = []
    labels: list[str] = []
    owners: list[str] = []
    limits: list[float] = []
    cols: list[ComplexArray] = []  # (2, chargers) per row: full connection and one phase
    brows: list[FloatArray] = []
    lines = site.voltage.lines
    for i, node in enumerate(site.nodes):
        for ln in lines:
            labels.append(f"{node.id}/{ln.value}")
            owners.append(node.id)
            limits.append(node.line_limit_a[ln.index])
            cols.append(node_coef[:, :, i, ln.index])
            bat_rows.append(complex(bat[ln.index]) if node.parent_id is None else 0j)
            brow = np.zeros(3)
            if node.id in b_nodes:
                brow[ln.index] = 1.0
            brows.append(brow)
        if node.primary is not None:
            m = primary_matrix(node.primary)
            for k in range(3):
                labels.append(f"{node.id}/primary/L{k + 1}")
                owners.append(node.id)
                limits.append(node.primary.line_limit_a)
                cols.append(node_coef[:, :, i, :] @ m[k])
                bat_rows.append(complex(bat @ m[k]) if node.parent_id is None else 0j)
                brows.append(np.abs(m[k]) if node.id in b_nodes else np.zeros(3))
    phases = np.array(
        [3 if c.connection is Connection.THREE_PHASE else 1 for c in site.chargers], dtype=np.int64
    )
    coef = np.stack(cols, axis=2) if cols else np.zeros((2, n_ch, 0), dtype=np.complex128)
    return CompiledSite(
        labels=tuple(labels),
        node_of_row=tuple(owners),
        limit_a=np.asarray(limits, dtype=np.float64),
        coef=coef[0],
        coef_1p=coef[1],
        building=np.stack(brows, axis=1) if brows else np.zeros((3, 0)),
        # watts per ampere per phase: V_LL for line-to-line, V_LN otherwise
        volts_v=np.array([charger_voltage_v(site, c, 1) for c in site.chargers], dtype=np.float64),
        phases=phases,
        charger_ids=tuple(c.id for c in site.chargers),
        battery=np.asarray(bat_rows, dtype=np.complex128),
    )
