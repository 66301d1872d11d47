"""Benchmark ``allocate`` on a three-level tree with mixed connections.

    python3 bench/allocate.py [--repeat 30]

Prints JSON ``{"results": [{"chargers": N, "median_ms": x, "p99_ms": y, "median_cpu_ms": c,
"steady_median_ms": s}, ...]}`` (``steady``: with the previous answer's rotation memory passed
back in, as the live loop does) for
N = 10, 100, 1,000, 10,000. The site: a service, 10 sub-panels, 10 groups per sub-panel (the
groups sized so that most of them bind), chargers spread over the groups round-robin with
three-phase, line-to-neutral (rotated) and line-to-line connections on a 120/208 V system, a
metered service with building load, every charger plugged in with a measured current. The site
is compiled once (cached per Site object, as in the live loop), then ``allocate`` is timed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace

from ampshare.core.allocate import allocate
from ampshare.core.allocation import AllocationInput, NodeMeasurement, Policy, PolicyName
from ampshare.core.site import (
    Charger,
    CircuitNode,
    Connection,
    NodeKind,
    PhaseRotation,
    Site,
    VoltageSystem,
)
from ampshare.core.snapshot import ChargerState, ChargerStatus, Session

CONNS = (
    Connection.THREE_PHASE,
    Connection.L1,
    Connection.L2_L3,
    Connection.L3,
    Connection.L1_L2,
    Connection.L2,
    Connection.L3_L1,
)
ROT = tuple(PhaseRotation)


def build(n: int) -> AllocationInput:
    per_group = max(1, n // 100)
    nodes = [
        CircuitNode(
            id="main", kind=NodeKind.SERVICE, parent_id=None, line_limit_a=(12.0 * n + 200,) * 3
        )
    ]
    for p in range(10):
        nodes.append(
            CircuitNode(
                id=f"p{p}",
                kind=NodeKind.SUBPANEL,
                parent_id="main",
                line_limit_a=(1.5 * n + 40,) * 3,
                margin_a=2.0,
            )
        )
        for g in range(10):
            nodes.append(
                CircuitNode(
                    id=f"p{p}g{g}",
                    kind=NodeKind.GROUP,
                    parent_id=f"p{p}",
                    line_limit_a=(9.0 * per_group + 7.0 * (g % 3),) * 3,
                )
            )
    groups = [nd.id for nd in nodes if "g" in nd.id]
    chargers, sessions, states = [], [], []
    for i in range(n):
        conn = CONNS[i % len(CONNS)]
        chargers.append(
            Charger(
                id=f"c{i}",
                node_id=groups[i % len(groups)],
                connection=conn,
                max_current_a=32.0 if conn.is_line_to_line else 16.0,
                phase_rotation=ROT[i % 6],
                resolution_a=(0.1, 1.0)[i % 2],
                can_switch_phases=i % 5 == 0,
            )
        )
        sessions.append(
            Session(
                session_id=f"s{i}",
                charger_id=f"c{i}",
                arrival_s=float(i),
                departure_s=30000.0 + 10 * i,
                energy_wanted_wh=20000.0,
                priority=i % 3,
                vehicle_max_current_a=(None, 13.0)[i % 2],
            )
        )
        states.append(
            ChargerState(
                charger_id=f"c{i}",
                t_s=1000.0,
                status=ChargerStatus.CHARGING,
                measured_current_a=(6.0, 6.0, 6.0),
            )
        )
    site = Site(
        name=f"bench-{n}",
        voltage=VoltageSystem.US_120_208,
        nodes=tuple(nodes),
        chargers=tuple(chargers),
    )
    meas = (NodeMeasurement(node_id="main", current_a=(6.0 * n + 80,) * 3),)
    return AllocationInput(
        site=site,
        now_s=1000.0,
        sessions=tuple(sessions),
        charger_states=tuple(states),
        measurements=meas,
        policy=Policy(name=PolicyName.EQUAL),
    )


def _timed(inp: AllocationInput, repeat: int) -> tuple[list[float], list[float]]:
    wall, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        allocate(inp)
        wall.append((time.perf_counter() - t0) * 1000.0)
        cpu.append((time.process_time() - c0) * 1000.0)
    wall.sort()
    return wall, cpu


def bench(n: int, repeat: int) -> dict[str, float]:
    inp = build(n)
    first = allocate(inp)  # compile the site once, as the live loop does
    wall, cpu = _timed(inp, repeat)
    p99 = wall[min(len(wall) - 1, round(0.99 * (len(wall) - 1)))]
    # The live loop passes each answer's rotation memory into the next call; with nobody
    # paused and the same cars charging it comes back unchanged (``steady_*``). The main
    # figures start from an empty memory every call, the dearer case.
    steady, _ = _timed(replace(inp, rotation=first.rotation), repeat)
    # CPU time beside wall time: on a shared machine wall time includes waiting for a core.
    return {
        "chargers": n,
        "median_ms": round(statistics.median(wall), 3),
        "p99_ms": round(p99, 3),
        "median_cpu_ms": round(statistics.median(cpu), 3),
        "steady_median_ms": round(statistics.median(steady), 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--sizes", type=str, default="10,100,1000,10000")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(json.dumps({"results": [bench(n, args.repeat) for n in sizes]}))


if __name__ == "__main__":
    main()
