"""Planner solve time on synthetic 24 h workplace instances (Caltech-like site).

For each size: a site with one 208 V line-to-line charger per ~1.6 sessions (phases rotated
AB/BC/CA, pods of 8 chargers on 80 A sub-panels), a delta-wye transformer sized like
Caltech's (150 kVA per 54 chargers), workplace arrivals (mostly 7-10 h), dwell 2-10 h,
requests 5-30 kWh, SCE-like TOU prices and a demand charge; 5-minute slots over 24 h.
The timing covers ``plan()`` end to end (building the sparse LP and solving it with HiGHS).

    python3 bench/planner.py [--repeat 3] [--sizes 50 200 1000] [--slot-s 300]

Prints JSON: {"results": [{"sessions": N, "solve_median_ms": x, ...}, ...]}.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time

import numpy as np

from ampshare.core.planner import PlanInput, plan
from ampshare.core.site import (
    Charger,
    CircuitNode,
    Connection,
    NodeKind,
    PrimaryWinding,
    Site,
    TransformerPrimary,
    VoltageSystem,
)
from ampshare.core.snapshot import Session

CONNECTIONS = (Connection.L1_L2, Connection.L2_L3, Connection.L3_L1)


def caltech_like_site(n_chargers: int) -> Site:
    kva = 150.0 * n_chargers / 54
    root = CircuitNode(
        id="transformer",
        kind=NodeKind.TRANSFORMER,
        parent_id=None,
        line_limit_a=(kva * 1000 / 3 / 120,) * 3,
        primary=TransformerPrimary(
            winding=PrimaryWinding.DELTA, winding_ratio=4.0, line_limit_a=kva * 1000 / 3 / 277
        ),
    )
    nodes = [root]
    chargers = []
    for i in range(n_chargers):
        pod = i // 8
        if i % 8 == 0:
            nodes.append(
                CircuitNode(
                    id=f"pod{pod}",
                    kind=NodeKind.SUBPANEL,
                    parent_id="transformer",
                    line_limit_a=(80.0,) * 3,
                )
            )
        chargers.append(
            Charger(
                id=f"evse{i}",
                node_id=f"pod{pod}",
                connection=CONNECTIONS[pod % 3],
                max_current_a=32.0,
            )
        )
    return Site(
        name="caltech-like",
        voltage=VoltageSystem.US_120_208,
        nodes=tuple(nodes),
        chargers=tuple(chargers),
        frequency_hz=60.0,
    )


def sessions(n: int, site: Site, rng: np.random.Generator) -> tuple[Session, ...]:
    """Workplace sessions that never share a charger at the same time."""
    free_at = dict.fromkeys((c.id for c in site.chargers), 0.0)
    out = []
    for i in range(n):
        arrival = float(np.clip(rng.normal(8.5, 2.0), 0.0, 20.0)) * 3600
        dwell = float(rng.uniform(2.0, 10.0)) * 3600
        charger = min(free_at, key=lambda c: (free_at[c] > arrival, free_at[c]))
        arrival = max(arrival, free_at[charger])
        free_at[charger] = arrival + dwell
        out.append(
            Session(
                session_id=f"s{i}",
                charger_id=charger,
                arrival_s=arrival,
                departure_s=arrival + dwell,
                energy_wanted_wh=float(rng.uniform(5e3, 30e3)),
            )
        )
    return tuple(out)


def instance(n: int, slot_s: float, seed: int) -> PlanInput:
    rng = np.random.default_rng(seed)
    site = caltech_like_site(max(8, math.ceil(n / 1.6)))
    n_slots = round(86400 / slot_s)
    hour = (np.arange(n_slots) + 0.5) * slot_s / 3600
    prices = np.select(
        [hour < 8, hour < 12, hour < 18, hour < 23], [0.06087, 0.07492, 0.0869, 0.07492], 0.06087
    )
    return PlanInput(
        site=site,
        start_s=0.0,
        slot_s=slot_s,
        n_slots=n_slots,
        sessions=sessions(n, site, rng),
        prices_per_kwh=prices,
        demand_charge_per_kw=15.51,
    )


def run(n: int, repeat: int, slot_s: float) -> dict[str, object]:
    times = []
    for k in range(repeat):
        inp = instance(n, slot_s, seed=k)
        t0 = time.perf_counter()
        result = plan(inp)
        times.append((time.perf_counter() - t0) * 1000)
    return {
        "sessions": n,
        "solve_median_ms": round(statistics.median(times), 1),
        "solve_max_ms": round(max(times), 1),
        "repeat": repeat,
        "chargers": len(inp.site.chargers),
        "slots": inp.n_slots,
        "status": result.status.value,
        "energy_delivered_kwh": round(sum(s.expected_wh for s in result.sessions) / 1e3, 1),
        "energy_requested_kwh": round(sum(s.requested_wh or 0.0 for s in result.sessions) / 1e3, 1),
        "peak_kw": round(result.peak_kw, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[50, 200, 1000])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--slot-s", type=float, default=300.0)
    args = ap.parse_args()
    results = [run(n, args.repeat, args.slot_s) for n in args.sizes]
    print(json.dumps({"results": results, "slot_s": args.slot_s}, indent=1))


if __name__ == "__main__":
    main()
