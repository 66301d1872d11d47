"""Benchmark the simulator's policies and baselines on real data; prints JSON.

Scenarios (``--scenario``, repeatable; default all):

* ``caltech``      — ACN Caltech, fall 2019 sessions, the site's real constraints
                     (examples/workplace-caltech.yaml: 150 kVA transformer, 80 A pods).
* ``caltech-80kw`` — the same with the transformer re-rated to 80 kVA.
* ``caltech-50kw`` — … and to 50 kVA.
* ``garage``       — apartment garage on a 3x63 A service (tests/fixtures/sim/garage-3x63.yaml,
                     22 chargers) with the Trondheim garage "Bl2" sessions (Sørensen et al.)
                     and a BDEW H0 household load for 22 flats x 3,000 kWh/a, Q4 2019.

Every scenario runs every policy of ``--policies`` and the offline optimum. Example::

    python3 bench/simulate.py --step 300 > bench-sim.json

Output: ``{"step_s": …, "results": [{"scenario": …, "policy": …, <metrics>}, …]}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from ampshare.config import load_site
from ampshare.sim.data import load_series, load_sessions
from ampshare.sim.run import SimSpec, optimum_metrics, simulate
from ampshare.sim.sites import tighten_transformers

ROOT = Path(__file__).resolve().parent.parent
DATA = Path("/work/shared/data")
POLICIES = "uncontrolled,static,greedy-clamp,all-stop,equal,fcfs,deadline,planned"
KEYS = (
    "energy_delivered_kwh",
    "energy_delivered_ratio",
    "demands_met_ratio",
    "unmet_kwh_p95",
    "peak_site_kw",
    "violation_amp_seconds",
    "max_violation_a",
    "start_stop_events",
    "jain_fairness",
    "energy_cost",
    "demand_charge",
    "wall_s",
    "steps",
    "decisions",
)


def caltech(kva: float | None, days: float | None) -> SimSpec:
    from ampshare.config.tariff_files import load_tariff

    site = load_site(ROOT / "examples" / "workplace-caltech.yaml")
    if kva is not None:
        site = tighten_transformers(site, kva)
    recs = load_sessions(
        DATA / "acn_caltech_jpl/sessions/caltech_2019-09-01_2019-12-31.csv.gz", "acn"
    ).records
    if days:
        recs = tuple(r for r in recs if r.arrival_s < recs[0].arrival_s + days * 86400)
    tariff = load_tariff(
        DATA / "tariffs/acnportal_tou/sce_tou_ev_4_march_2019.json", timezone="America/Los_Angeles"
    )
    return SimSpec(site=site, sessions=recs, tariff=tariff)


def garage(days: float | None) -> SimSpec:
    site = load_site(ROOT / "tests" / "fixtures" / "sim" / "garage-3x63.yaml")
    start = 1569880800.0  # 2019-10-01 00:00 Europe/Oslo (Q4: most sessions, winter load)
    end = start + (days or 90.0) * 86400
    recs = load_sessions(
        DATA / "norway_residential_ev/trondheim_sessions_normalized.csv",
        "norway,where=garage_id:Bl2",
        start,
        end,
    ).records
    # H0 is kW per 1,000 kWh/a; 22 flats at 3,000 kWh/a each.
    load = load_series(
        DATA / "building_load/bdew_slp/bdew_slp_2019_15min_kW_per_1000kWh.csv",
        "h0",
        scale=66.0,
        timezone="Europe/Berlin",
    )
    return SimSpec(site=site, sessions=recs, building=load, end_s=end)


SCENARIOS = {
    "caltech": lambda d: caltech(None, d),
    "caltech-80kw": lambda d: caltech(80.0, d),
    "caltech-50kw": lambda d: caltech(50.0, d),
    "garage": garage,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", action="append", choices=sorted(SCENARIOS))
    ap.add_argument("--policies", default=POLICIES)
    ap.add_argument("--step", type=float, default=300.0, help="grid step [s]")
    ap.add_argument("--days", type=float, default=None, help="replay only the first N days")
    ap.add_argument("--no-optimum", action="store_true")
    args = ap.parse_args()
    results = []
    for name in args.scenario or list(SCENARIOS):
        spec = dataclasses.replace(SCENARIOS[name](args.days), step_s=args.step)
        for policy in args.policies.split(","):
            t0 = time.perf_counter()
            m = simulate(dataclasses.replace(spec, policy=policy)).metrics
            row = {"scenario": name, "policy": policy, **{k: m.get(k) for k in KEYS}}
            row["wall_s"] = round(time.perf_counter() - t0, 2)
            results.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
        if not args.no_optimum:
            opt = optimum_metrics(spec)
            results.append(
                {"scenario": name, "policy": "offline optimum", **opt, "violation_amp_seconds": 0.0}
            )
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    json.dump({"step_s": args.step, "days": args.days, "results": results}, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
