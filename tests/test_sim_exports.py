"""The simulator's public names are pinned, resolve, and stay lazy."""

from __future__ import annotations

import subprocess
import sys

import ampshare.sim

EXPECTED = {
    "CapacityPoint",
    "CapacityResult",
    "EvOptions",
    "LoadedSessions",
    "METRIC_KEYS",
    "POLICY_NAMES",
    "PlanProvider",
    "PlanView",
    "Replay",
    "SESSION_PRESETS",
    "SessionColumns",
    "SessionRecord",
    "SimOutcome",
    "SimSpec",
    "TimeSeries",
    "allstop_waterfill",
    "capacity_study",
    "compute_metrics",
    "greedy_clamp",
    "load_series",
    "load_sessions",
    "optimum_metrics",
    "parse_columns",
    "plot_capacity",
    "render_report",
    "run_replay",
    "scale_chargers",
    "scale_sessions",
    "simulate",
    "tighten_transformers",
    "write_report",
    "write_trace",
}


def test_exported_names() -> None:
    assert set(ampshare.sim.__all__) == EXPECTED
    for name in EXPECTED:
        assert getattr(ampshare.sim, name) is not None


def test_ev_physics_import_stays_light() -> None:
    code = (
        "import sys, ampshare.sim.ev; "
        "print('matplotlib' in sys.modules, 'ampshare.control' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
