"""Offline simulation on virtual time: replays real sessions and building load through the same
core and control code that runs live.

The public names below are loaded lazily, so that ``import ampshare.sim.ev`` (the EV physics
the OCPP simulated chargers and the scenario runner share) does not pull in the replay engine,
the controller or matplotlib.

* ``simulate(SimSpec) -> SimOutcome`` — one replay and its metrics (``ampshare.sim.run``);
* ``load_sessions`` / ``load_series`` / ``parse_columns`` — data loaders (``ampshare.sim.data``);
* ``capacity_study`` — charger counts per policy (``ampshare.sim.capacity``);
* ``write_trace`` / ``write_report`` — the CSV trace and the HTML report;
* ``greedy_clamp`` / ``allstop_waterfill`` — the sim baselines (``ampshare.sim.baselines``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ampshare.sim.baselines import allstop_waterfill, greedy_clamp
    from ampshare.sim.capacity import (
        CapacityPoint,
        CapacityResult,
        capacity_study,
        plot_capacity,
        scale_sessions,
    )
    from ampshare.sim.data import (
        SESSION_PRESETS,
        LoadedSessions,
        SessionColumns,
        SessionRecord,
        load_series,
        load_sessions,
        parse_columns,
    )
    from ampshare.sim.engine import EvOptions, PlanProvider, PlanView, Replay, run_replay
    from ampshare.sim.metrics import METRIC_KEYS, compute_metrics
    from ampshare.sim.report import render_report, write_report
    from ampshare.sim.run import POLICY_NAMES, SimOutcome, SimSpec, optimum_metrics, simulate
    from ampshare.sim.series import TimeSeries
    from ampshare.sim.sites import scale_chargers, tighten_transformers
    from ampshare.sim.trace import write_trace

_WHERE = {
    "allstop_waterfill": "baselines",
    "greedy_clamp": "baselines",
    "CapacityPoint": "capacity",
    "CapacityResult": "capacity",
    "capacity_study": "capacity",
    "plot_capacity": "capacity",
    "scale_sessions": "capacity",
    "SESSION_PRESETS": "data",
    "LoadedSessions": "data",
    "SessionColumns": "data",
    "SessionRecord": "data",
    "load_series": "data",
    "load_sessions": "data",
    "parse_columns": "data",
    "EvOptions": "engine",
    "PlanProvider": "engine",
    "PlanView": "engine",
    "Replay": "engine",
    "run_replay": "engine",
    "METRIC_KEYS": "metrics",
    "compute_metrics": "metrics",
    "render_report": "report",
    "write_report": "report",
    "POLICY_NAMES": "run",
    "SimOutcome": "run",
    "SimSpec": "run",
    "optimum_metrics": "run",
    "simulate": "run",
    "TimeSeries": "series",
    "scale_chargers": "sites",
    "tighten_transformers": "sites",
    "write_trace": "trace",
}

__all__ = [
    "METRIC_KEYS",
    "POLICY_NAMES",
    "SESSION_PRESETS",
    "CapacityPoint",
    "CapacityResult",
    "EvOptions",
    "LoadedSessions",
    "PlanProvider",
    "PlanView",
    "Replay",
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
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'ampshare.sim' has no attribute {name!r}")
    return getattr(importlib.import_module(f"ampshare.sim.{module}"), name)
