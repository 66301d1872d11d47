"""Charger report timing against the meter: safety and churn over the scenario files.

Every scenario file (``scenarios/*.yaml``) is run under each charger report timing below
(``physics:`` overrides of the file's own: period, offset from the meter's samples, staggered
chargers, reports on every change of draw). Per timing it sums over the files what the
controller costs and what it risks:

* ``amp_s_above``: ampere-seconds above any node line's limit, over the files that should
  end with none (every file but the load step, the grid cap and the non-compliant charger,
  where physics forces a bounded excess; theirs are in ``amp_s_above_allowed``);
* ``stops``: times a car stopped drawing (contactor cycles), ``paused``/``resumed``: the
  controller's pause and resume decisions, ``limit_changes``: changes of the limit the
  chargers enforce (flash writes), ``commands``: commands sent, ``energy_kwh``: energy the
  cars got.

Prints one JSON object per timing. Run: python3 bench/report_timing.py [--files GLOB...]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from ampshare.control import EventKind
from ampshare.scenario import load_scenario, run_scenario

ROOT = Path(__file__).resolve().parents[1]
#: files where physics forces an excess (the limit or the load moves faster than any car)
EXCESS_ALLOWED = {"load-step-63a.yaml", "grid-cap.yaml", "charger-ignores-limit.yaml"}

TIMINGS: dict[str, dict[str, Any]] = {
    "every 1 s with the meter (default)": {},
    "every 1 s, 0.5 s after the meter": {"charger_report_offset_s": 0.5},
    "every 2 s": {"charger_report_s": 2.0},
    "every 2 s, staggered": {"charger_report_s": 2.0, "charger_report_stagger": True},
    "every 1.3 s, staggered": {"charger_report_s": 1.3, "charger_report_stagger": True},
    "every 10 s, staggered": {"charger_report_s": 10.0, "charger_report_stagger": True},
    "every 30 s, staggered": {"charger_report_s": 30.0, "charger_report_stagger": True},
    "on change + every 10 s": {"charger_report_s": 10.0, "charger_report_on_change": True},
    "on change + every 10 s, 0.3 s after the meter": {
        "charger_report_s": 10.0,
        "charger_report_on_change": True,
        "charger_report_offset_s": 0.3,
    },
}


#: what a timing does not name is reset to this, whatever the file says
REPORTS_DEFAULT: dict[str, Any] = {
    "charger_report_s": 1.0,
    "charger_report_offset_s": 0.0,
    "charger_report_stagger": False,
    "charger_report_on_change": False,
}


def run_timing(files: list[Path], physics: dict[str, Any]) -> dict[str, float]:
    out = dict.fromkeys(
        (
            "amp_s_above",
            "amp_s_above_allowed",
            "stops",
            "paused",
            "resumed",
            "limit_changes",
            "commands",
            "energy_kwh",
        ),
        0.0,
    )
    for path in files:
        sc = load_scenario(path)
        reports = {**REPORTS_DEFAULT, **physics}
        decl = sc.decl.model_copy(update={"physics": sc.decl.physics.model_copy(update=reports)})
        res = run_scenario(replace(sc, decl=decl))
        above = sum(s.amp_seconds_above for node in res.lines.values() for s in node.values())
        out["amp_s_above_allowed" if path.name in EXCESS_ALLOWED else "amp_s_above"] += above
        out["stops"] += sum(c["stops"] for c in res.chargers.values())
        out["paused"] += sum(e.kind is EventKind.PAUSED for e in res.events)
        out["resumed"] += sum(e.kind is EventKind.RESUMED for e in res.events)
        out["limit_changes"] += sum(max(0, len(h) - 1) for h in res.limit_history.values())
        out["commands"] += res.commands
        out["energy_kwh"] += sum(c["energy_wh"] for c in res.chargers.values()) / 1000
    return {k: round(v, 1) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", nargs="*", default=None, help="scenario files (default: all)")
    args = ap.parse_args()
    files = [Path(f) for f in args.files] if args.files else sorted(ROOT.glob("scenarios/*.yaml"))
    for name, physics in TIMINGS.items():
        print(json.dumps({"timing": name, **run_timing(files, physics)}), flush=True)


if __name__ == "__main__":
    main()
