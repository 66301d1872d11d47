"""The replay as a CSV anyone can check against the site's limits without ampshare.

One row per segment (a stretch of constant currents, at most one grid step long) and charger
that drew current, plus one ``_building`` row per segment for the building load (minus PV) at
the metered node. Columns::

    time_utc, t_s, dt_s, station_id, node_id, L1_a, L2_a, L3_a

``L1_a..L3_a`` is the current magnitude the charger puts on each *site* line (phase rotation
applied; a line-to-line charger loads two lines with its full current). Adding these per line
over the chargers below a node, plus the building rows, bounds that node's line current from
above (exact for line-to-neutral and three-phase chargers; line-to-line phasors partly cancel).
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ampshare.core.site import Connection, Site
from ampshare.sim.engine import Replay

__all__ = ["TRACE_COLUMNS", "write_trace"]

FloatArray = npt.NDArray[np.float64]
TRACE_COLUMNS = ("time_utc", "t_s", "dt_s", "station_id", "node_id", "L1_a", "L2_a", "L3_a")


def _line_masks(site: Site) -> tuple[FloatArray, FloatArray]:
    """(full connection, one-phase use) 0/1 masks of the site lines each charger loads."""
    full = np.zeros((len(site.chargers), 3))
    single = np.zeros((len(site.chargers), 3))
    for j, ch in enumerate(site.chargers):
        for ln in ch.site_lines():
            full[j, ln.index] = 1.0
        one = Connection.L1 if ch.connection is Connection.THREE_PHASE else None
        for ln in ch.site_lines(one):
            single[j, ln.index] = 1.0
    return full, single


def write_trace(rep: Replay, site: Site, path: str | Path, building_node_id: str) -> int:
    """Write the trace (needs a replay run with ``keep_ev=True``); returns the rows written."""
    if rep.seg_ev_a is None or rep.seg_single is None:
        raise ValueError("the replay kept no per-charger currents (run it with keep_ev=True)")
    full, single = _line_masks(site)
    rows = 0
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(TRACE_COLUMNS)
        for k, t in enumerate(rep.seg_t_s):
            stamp = datetime.fromtimestamp(float(t), UTC).isoformat(timespec="seconds")
            dt = f"{rep.seg_dt_s[k]:.3f}"
            bl = np.abs(rep.seg_building_a[k])
            w.writerow(
                [stamp, f"{t:.1f}", dt, "_building", building_node_id, *(f"{x:.3f}" for x in bl)]
            )
            amps = rep.seg_ev_a[k]
            for j in np.nonzero(amps > 0)[0]:
                mask = single[j] if rep.seg_single[k, j] else full[j]
                cur = mask * float(amps[j])
                w.writerow(
                    [
                        stamp,
                        f"{t:.1f}",
                        dt,
                        site.chargers[j].id,
                        site.chargers[j].node_id,
                        *(f"{x:.3f}" for x in cur),
                    ]
                )
                rows += 1
            rows += 1
    return rows
