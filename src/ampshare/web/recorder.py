"""Writes the live state into the store's time series once per period (1 s by default), and
folds old raw samples into history now and then. Series names:

- ``node:<id>:<L1|L2|L3>:<limit_a|other_a|ev_a|headroom_a>`` (what the dashboard charts)
- ``charger:<id>:limit_a`` and ``charger:<id>:current_a`` (highest measured line)
"""

from __future__ import annotations

import asyncio
import math

from ampshare.clock import Clock
from ampshare.store import SeriesPoint, SqlStore
from ampshare.web.runtime import RuntimeView, SiteRuntime

__all__ = ["record_once", "run_recorder", "samples_of"]

_LINES = ("L1", "L2", "L3")


def samples_of(view: RuntimeView, t_s: float) -> list[SeriesPoint]:
    """The points one snapshot contributes (unknown and unlimited values are left out)."""
    t = float(int(t_s))  # one raw sample per second and series
    out: list[SeriesPoint] = []
    for h in view.headroom:
        for i, line in enumerate(_LINES):
            for name, per_line in (
                ("limit_a", h.limit_a),
                ("other_a", h.other_load_a),
                ("ev_a", h.ev_load_a),
                ("headroom_a", h.headroom_a),
            ):
                if math.isfinite(per_line[i]):
                    out.append(
                        SeriesPoint(
                            series=f"node:{h.node_id}:{line}:{name}", t_s=t, value=per_line[i]
                        )
                    )
    for lim in view.limits:
        out.append(
            SeriesPoint(series=f"charger:{lim.charger_id}:limit_a", t_s=t, value=lim.limit_a)
        )
    for cid, st in view.charger_states.items():
        known = [x for x in (st.measured_current_a or ()) if x is not None]
        if known:
            out.append(SeriesPoint(series=f"charger:{cid}:current_a", t_s=t, value=max(known)))
    return out


def record_once(runtime: SiteRuntime, store: SqlStore, t_s: float) -> int:
    """Store one snapshot's samples; returns how many."""
    pts = samples_of(runtime.view(), t_s)
    store.append(pts)
    return len(pts)


async def run_recorder(
    runtime: SiteRuntime,
    store: SqlStore,
    clock: Clock,
    *,
    period_s: float = 1.0,
    compact_every_s: float = 600.0,
) -> None:
    """Record until cancelled. Store writes run in a worker thread so that an fsync never
    stalls the event loop that also serves OCPP and the API."""
    last_compact = clock.now_s()
    while True:
        now = clock.now_s()
        await asyncio.to_thread(record_once, runtime, store, now)
        if now - last_compact >= compact_every_s:
            last_compact = now
            await asyncio.to_thread(store.compact, now)
        await asyncio.sleep(period_s)
