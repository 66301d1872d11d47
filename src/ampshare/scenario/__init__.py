"""Scenario files: a site run through timed events on virtual time, checked against
expectations (``ampshare scenario FILE.yaml``; format in docs/scenarios.md)."""

from __future__ import annotations

from pathlib import Path

from ampshare.scenario._checks import evaluate
from ampshare.scenario._load import Scenario, load_scenario, parse_scenario
from ampshare.scenario._metrics import LineStats
from ampshare.scenario._model import ScenarioDecl
from ampshare.scenario._plot import plot_result
from ampshare.scenario._runner import RunResult, Trace, run_scenario

__all__ = [
    "LineStats",
    "RunResult",
    "Scenario",
    "ScenarioDecl",
    "Trace",
    "evaluate",
    "load_scenario",
    "parse_scenario",
    "plot_result",
    "run_file",
    "run_scenario",
]


def run_file(path: str | Path, *, plot: str | Path | None = None) -> RunResult:
    """Load, run and check one scenario file; with ``plot``, also save a PNG there."""
    sc = load_scenario(path)
    result = evaluate(sc, run_scenario(sc, trace=plot is not None))
    if plot is not None:
        plot_result(result, plot, [n.id for n in sc.site.nodes])
    return result
