"""Caltech fall 2019 with SCE TOU-EV-4: uncontrolled, equal, deadline, planned and the offline
optimum through the simulator (README "Planner" rows).

    python3 bench/planner_caltech.py --kva 150      # the site's own transformer
    python3 bench/planner_caltech.py --kva 50       # re-rated to 50 kVA
        [--start 2019-09-01 --end 2020-01-01 --policies optimum,planned,deadline,equal,uncontrolled
         --step 300 --slot 900]

Site: examples/workplace-caltech.yaml (``ampshare import-acn``), its transformer re-rated to
``--kva`` (``sim.sites.tighten_transformers``). Sessions: ACN-Data Caltech 2019-09..12, demand
= the driver's request (``acn`` preset), declared departure/energy only where the driver
entered them. Cars: ideal batteries (``EvOptions(basic=True)``), like the optimum's. The planner
is seeded with the (at most 500) sessions that ended before ``--start`` — from the same file
and from the site's summer 2019 (2019-05..08, what a live site's store would hold on
September 1st; ``--no-history`` starts cold) — for stay ratios and default stay and energy,
and keeps learning during the replay. Prints one JSON object per policy (``planned`` also gives
``energy_vs_optimum`` when the optimum ran first). ``--perfect-info`` tells the controller every
session's true departure and demand (a diagnostic: what is lost to the drivers' declarations
rather than to the controller).

``optimum-min`` (not in the default list) is a tighter bound that respects the minimum
current: every car is off or at least at its charger's minimum (6 A; 8 A at the CC pod) in
each replay step (``sim.optimum_min.offline_optimum_min``: a MILP per busy stretch with HiGHS,
``--mip-time`` seconds each, relative gap 1e-3). Its row gives ``energy_bound_kwh`` (HiGHS's
dual bound: no schedule of that class delivers more), ``energy_delivered_kwh`` (the best
schedule found), ``mip_gap`` and ``timed_out`` stretches; the bound is what to compare with
(controlled rows then also give ``energy_vs_min_bound``). It bounds schedules that hold each
car at 0 or at least its minimum per replay step, up to the transients its docstring lists.
``--pilot-steps`` also holds the CC pod's chargers to 8/16/24/32 A.

``--energy-priority expected`` plans as a site file's ``planner: {energy_priority: expected}``
does (a kWh worth its chance of delivery against the demand peak; default ``strict``).

``--prefer ready`` plans as a site file's ``planner: {prefer: ready}`` does (the cars closest
to their request first among plans with the same energy; default ``energy``).

``--battery-kwh N --battery-kw P`` gives ``planned`` a stationary battery at the site's root
(N kWh between 10 and 90 %, P kW each way, 95 % efficient each way, starting at
``--battery-soc-pct``, default 10 %): the
planner plans it and the replay drives it as ``ampshare run`` does (README "Planner").

``online-ideal`` (a diagnostic, after ``optimum``): an ideal re-planning planner told every
plugged-in car's true departure and demand but no future arrival, its plan followed exactly
(``sim.optimum.online_ideal``: the optimum's LP re-solved at each arrival); its
``energy_vs_optimum`` is what not knowing the future arrivals costs, whatever the controller.

``optimum-grid`` (a diagnostic) is the offline optimum with every arrival moved to the next
``--step`` grid time: the replay plugs a car in only there, so no replayed policy can use the
minutes before (the optimum row uses the true arrivals).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path

from ampshare.cli.simulate import parse_time_s
from ampshare.config import load_site
from ampshare.config.tariff_files import load_tariff
from ampshare.core.planner import Battery, EnergyPriority, Prefer
from ampshare.sim.data import load_sessions
from ampshare.sim.engine import EvOptions
from ampshare.sim.optimum import offline_optimum, online_ideal
from ampshare.sim.optimum_min import offline_optimum_min
from ampshare.sim.planning import PlannerOptions, PlannerProvider
from ampshare.sim.run import SimSpec, simulate
from ampshare.sim.sites import tighten_transformers

ROOT = Path(__file__).resolve().parent.parent
DATA = Path("/work/shared/data")
SESSIONS = DATA / "acn_caltech_jpl/sessions/caltech_2019-09-01_2019-12-31.csv.gz"
HISTORY = DATA / "acn_caltech_jpl/sessions/caltech_2019-05-01_2019-08-31.csv.gz"
TARIFF = DATA / "tariffs/acnportal_tou/sce_tou_ev_4_march_2019.json"
TZ = "America/Los_Angeles"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kva", type=float, default=150.0)
    ap.add_argument("--start", default="2019-09-01")
    ap.add_argument("--end", default="2020-01-01")
    ap.add_argument("--step", type=float, default=300.0, help="replay grid [s]")
    ap.add_argument("--slot", type=float, default=900.0, help="planner slot [s]")
    ap.add_argument("--policies", default="optimum,planned,deadline,equal,uncontrolled")
    ap.add_argument("--mip-time", type=float, default=60.0, help="optimum-min, per stretch [s]")
    ap.add_argument(
        "--pilot-steps", dest="steps", action="store_true", help="optimum-min: CC pod in 8 A steps"
    )
    ap.add_argument("--perfect-info", action="store_true", help="declared = true values")
    ap.add_argument(
        "--no-history", action="store_true", help="seed the planner with no earlier sessions"
    )
    ap.add_argument(
        "--no-hold-peak",
        dest="hold_peak",
        action="store_false",
        help="planned: do not hold the plan's demand peak live (use every amp, as before)",
    )
    ap.add_argument(
        "--prefer",
        choices=[p.value for p in Prefer],
        default=Prefer.ENERGY.value,
        help="planned: what the plan serves first among equal plans (site file's planner.prefer)",
    )
    ap.add_argument(
        "--energy-priority",
        choices=[p.value for p in EnergyPriority],
        default=EnergyPriority.STRICT.value,
        help="planned: how far energy comes before the demand peak (planner.energy_priority)",
    )
    ap.add_argument("--battery-kwh", type=float, default=0.0, help="planned: a battery [kWh]")
    ap.add_argument("--battery-kw", type=float, default=0.0, help="its power each way [kW]")
    ap.add_argument(
        "--battery-soc-pct", type=float, default=10.0, help="its charge at the start [%%]"
    )
    args = ap.parse_args()
    battery = None
    if args.battery_kwh > 0:
        cap = args.battery_kwh * 1000
        battery = Battery(
            capacity_wh=cap,
            max_charge_w=args.battery_kw * 1000,
            max_discharge_w=args.battery_kw * 1000,
            soc_wh=args.battery_soc_pct / 100 * cap,
            min_soc_wh=0.1 * cap,
            max_soc_wh=0.9 * cap,
        )
    start, end = parse_time_s(args.start, TZ), parse_time_s(args.end, TZ)
    assert start is not None
    assert end is not None
    every = load_sessions(SESSIONS, "acn").records
    recs = tuple(r for r in every if start <= r.arrival_s < end)
    if args.perfect_info:
        recs = tuple(
            dataclasses.replace(
                r, declared_departure_s=r.departure_s, declared_energy_wh=r.energy_wh
            )
            for r in recs
        )
    past = () if args.no_history else load_sessions(HISTORY, "acn").records
    history = [r for r in (*past, *every) if r.departure_s < start][-500:]
    tariff = load_tariff(TARIFF, timezone=TZ)
    site = tighten_transformers(load_site(ROOT / "examples/workplace-caltech.yaml"), args.kva)
    best_kwh: float | None = None
    bound_kwh: float | None = None
    for policy in args.policies.split(","):
        t0 = time.perf_counter()
        row: dict[str, object]
        if policy == "optimum":
            best = offline_optimum(site, recs, None, args.step, tariff=tariff).metrics()
            best_kwh = float(best["energy_delivered_kwh"] or 0.0)
            row = dict(best)
        elif policy == "optimum-grid":
            on_grid = tuple(
                dataclasses.replace(
                    r,
                    arrival_s=min(r.departure_s, math.ceil(r.arrival_s / args.step) * args.step),
                )
                for r in recs
            )
            grid = offline_optimum(site, on_grid, None, args.step, tariff=tariff)
            row = dict(grid.metrics())
            if best_kwh:
                row["bound_vs_optimum"] = round(grid.energy_delivered_wh / 1000 / best_kwh, 5)
        elif policy == "online-ideal":
            online = online_ideal(site, recs, args.step)
            got_kwh = online.energy_delivered_wh / 1000
            row = {
                "energy_delivered_kwh": round(got_kwh, 3),
                "plans": online.plans,
                "not_optimal": online.not_optimal,
            }
            if best_kwh:
                row["energy_vs_optimum"] = round(got_kwh / best_kwh, 5)
        elif policy == "optimum-min":
            bound = offline_optimum_min(
                site, recs, None, args.step, time_limit_s=args.mip_time, pilot_steps=args.steps
            )
            bound_kwh = bound.bound_wh / 1000
            row = dict(bound.metrics(), pilot_steps=args.steps)
            if best_kwh:
                row["bound_vs_optimum"] = round(bound.bound_wh / 1000 / best_kwh, 5)
        else:
            provider = None
            if policy == "planned":
                provider = PlannerProvider(
                    site=site,
                    tariff=tariff,
                    slot_s=args.slot,
                    hold_peak=args.hold_peak,
                    battery=battery,
                    prefer=Prefer(args.prefer),
                    energy_priority=EnergyPriority(args.energy_priority),
                )
                provider.seed(history)
            out = simulate(
                SimSpec(
                    site=site,
                    sessions=recs,
                    policy=policy,
                    tariff=tariff,
                    step_s=args.step,
                    ev=EvOptions(basic=True),
                    plan_provider=provider,
                    planner=PlannerOptions(battery=battery) if policy == "planned" else None,
                    replan_s=300.0,
                )
            )
            row = dict(out.metrics)
            got_kwh = float(out.metrics["energy_delivered_kwh"] or 0.0)
            if best_kwh:
                row["energy_vs_optimum"] = round(got_kwh / best_kwh, 5)
            if bound_kwh:
                row["energy_vs_min_bound"] = round(got_kwh / bound_kwh, 5)
            if provider is not None:
                row.update(
                    plans=provider.plans,
                    fallbacks=provider.fallbacks,
                    not_ready_warnings=len(provider.warnings),
                )
        row.update(
            policy=policy,
            kva=args.kva,
            perfect_info=args.perfect_info,
            hold_peak=args.hold_peak,
            prefer=args.prefer,
            energy_priority=args.energy_priority,
            battery_kwh=args.battery_kwh if policy == "planned" else 0.0,
            battery_kw=args.battery_kw if policy == "planned" else 0.0,
            battery_soc_pct=args.battery_soc_pct if policy == "planned" else 0.0,
            start=args.start,
            end=args.end,
            run_s=round(time.perf_counter() - t0, 1),
        )
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
