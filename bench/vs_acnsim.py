"""ampshare's simulator against ACN-Sim (acnportal) on the same sessions, site and step.

Both replay the ACN Caltech fall 2019 sessions on the Caltech ACN (ACN-Sim: its own
``caltech_acn`` network; ampshare: examples/workplace-caltech.yaml, imported from the same
constraint set) at the same period, with what ACN-Sim assumes:

* demand = the metered kWh of each session (ACN-Sim's convention, preset ``acn-delivered``);
* the scheduler knows every true departure and demand (ACN-Sim's sorted algorithms read them
  from the EV), so ampshare's sessions declare them too;
* an ideal battery (ACN-Sim ``Battery``; ampshare EV model ``basic``) limited to 32 A at 208 V;
* cars plug in and out on the period grid: ACN-Sim rounds both times down to a period, so
  ampshare's replay is given the same rounded times (it would otherwise plug each car in and
  out at its true time).

ACN-Sim runs its sorted algorithms with EDF and LLF; ampshare runs ``deadline`` (EDF and LLF)
and ``equal``, both through the live controller (``ampshare.control``) and as the bare
allocator (``direct``: no sequencing, like ACN-Sim; a car whose charger reports it full is
paused, as ACN-Sim's schedulers no longer see an EV whose demand is met). ACN-Sim calls its
scheduler every period; ampshare's replay calls the controller when what it would see
changes (a car plugs in, leaves, fills up or changes its draw; the building load moves) and at
least every 5 minutes (``SimSpec.max_quiet_s``), so at a 5-minute period both decide every
period and at a 1-minute period ampshare decides in fewer than one period in four. Needs
``pip install acnportal`` (the ``bench`` extra). Prints JSON::

    python3 bench/vs_acnsim.py --period 1 > vs_acnsim-1min.json
    python3 bench/vs_acnsim.py --period 5 > vs_acnsim-5min.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from ampshare.config import load_site
from ampshare.sim.data import SessionRecord, load_sessions
from ampshare.sim.engine import EvOptions
from ampshare.sim.run import SimSpec, simulate

ROOT = Path(__file__).resolve().parent.parent
SESSIONS = Path("/work/shared/data/acn_caltech_jpl/sessions/caltech_2019-09-01_2019-12-31.csv.gz")
# Perfect knowledge as ACN-Sim has it: demand = metered kWh, declared = true values.
COLUMNS = (
    "acn-delivered,declared_departure=departure,declared_energy_kwh=delivered_energy (kWh),claimed="
)
MAX_KW = 32 * 208 / 1000


def acnsim_run(
    recs: tuple[SessionRecord, ...], period_min: int, algo: str, transformer_kva: float
) -> dict[str, object]:
    from acnportal import acnsim
    from acnportal.algorithms import (
        SortedSchedulingAlgo,
        earliest_deadline_first,
        least_laxity_first,
    )

    sort_fn = {"edf": earliest_deadline_first, "llf": least_laxity_first}[algo]
    t0 = time.perf_counter()
    network = acnsim.sites.caltech_acn(
        basic_evse=False, voltage=208, transformer_cap=transformer_kva
    )
    per_s = 60 * period_min
    offset = int(recs[0].arrival_s // per_s)
    evs = []
    for r in recs:
        if r.station_id not in network.station_ids:
            continue
        arrival = int(r.arrival_s // per_s) - offset
        departure = int(r.departure_s // per_s) - offset
        kwh = r.energy_wh / 1000
        batt = acnsim.models.Battery(kwh, 0, MAX_KW)
        evs.append(acnsim.models.EV(arrival, departure, kwh, r.station_id, r.session_id, batt))
    events = acnsim.EventQueue([acnsim.PluginEvent(ev.arrival, ev) for ev in evs])
    start = datetime.fromtimestamp(offset * per_s, UTC)
    sim = acnsim.Simulator(
        network, SortedSchedulingAlgo(sort_fn), events, start, period=period_min, verbose=False
    )
    sim.run()
    delivered = sum(ev.energy_delivered for ev in sim.ev_history.values())
    requested = sum(ev.requested_energy for ev in sim.ev_history.values())
    met = sum(ev.energy_delivered >= 0.99 * ev.requested_energy for ev in sim.ev_history.values())
    return {
        "simulator": "acnsim",
        "algorithm": algo.upper(),
        "sessions": len(evs),
        "energy_requested_kwh": round(requested, 3),
        "energy_delivered_kwh": round(delivered, 3),
        "energy_delivered_ratio": round(delivered / requested, 5),
        "demands_met_ratio": round(met / max(len(evs), 1), 5),
        "wall_s": round(time.perf_counter() - t0, 2),
    }


def ampshare_run(
    recs: tuple[SessionRecord, ...],
    period_min: int,
    policy: str,
    mode: str,
    direct: bool,
    transformer_kva: float,
) -> dict[str, object]:
    from ampshare.sim.sites import tighten_transformers

    per_s = 60.0 * period_min
    recs = tuple(
        dataclasses.replace(
            r,
            arrival_s=math.floor(r.arrival_s / per_s) * per_s,
            departure_s=math.floor(r.departure_s / per_s) * per_s,
            # told the truth, as ACN-Sim's schedulers are: the rounded departure
            declared_departure_s=math.floor(r.departure_s / per_s) * per_s,
        )
        for r in recs
    )
    site = load_site(ROOT / "examples" / "workplace-caltech.yaml")
    if transformer_kva != 150:
        site = tighten_transformers(site, transformer_kva)
    t0 = time.perf_counter()
    spec = SimSpec(
        site=site,
        sessions=recs,
        policy=policy,
        deadline_mode=mode,
        step_s=60.0 * period_min,
        direct=direct,
        ev=EvOptions(basic=True, max_current_a=32.0),
    )
    m = simulate(spec).metrics
    return {
        "simulator": "ampshare",
        "algorithm": f"{policy}{'-' + mode if policy == 'deadline' else ''}"
        f"{' (direct)' if direct else ' (control)'}",
        "sessions": m["sessions"],
        "energy_requested_kwh": m["energy_requested_kwh"],
        "energy_delivered_kwh": m["energy_delivered_kwh"],
        "energy_delivered_ratio": m["energy_delivered_ratio"],
        "demands_met_ratio": m["demands_met_ratio"],
        "violation_amp_seconds": m["violation_amp_seconds"],
        "decisions": m["decisions"],
        "wall_s": round(time.perf_counter() - t0, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--period", type=int, default=5, help="minutes per step (both sides)")
    ap.add_argument("--days", type=float, default=None, help="only the first N days")
    ap.add_argument("--transformer-kva", type=float, default=150.0)
    ap.add_argument("--skip-acnsim", action="store_true")
    ap.add_argument(
        "--only",
        default="",
        help="comma-separated runs to keep, e.g. acnsim-edf,deadline-edf-direct (default: all)",
    )
    args = ap.parse_args()
    keep = {k for k in args.only.split(",") if k}
    recs = load_sessions(SESSIONS, COLUMNS).records
    if args.days:
        recs = tuple(r for r in recs if r.arrival_s < recs[0].arrival_s + args.days * 86400)
    rows = []
    runs = [] if args.skip_acnsim else [("acnsim", "edf"), ("acnsim", "llf")]
    runs += [("deadline", "edf"), ("deadline", "llf"), ("equal", "edf")]
    for what, mode in runs:
        for direct in [None] if what == "acnsim" else [True, False]:
            name = f"{what}-{mode}" + (
                "" if direct is None else "-direct" if direct else "-control"
            )
            if keep and name not in keep:
                continue
            if what == "acnsim":
                row = acnsim_run(recs, args.period, mode, args.transformer_kva)
            else:
                row = ampshare_run(
                    recs, args.period, what, mode, bool(direct), args.transformer_kva
                )
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    json.dump(
        {
            "period_min": args.period,
            "days": args.days,
            "transformer_kva": args.transformer_kva,
            "results": rows,
        },
        sys.stdout,
        indent=1,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
