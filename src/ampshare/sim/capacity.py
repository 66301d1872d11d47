"""Capacity study: how many chargers a service carries with enough demands met, per policy.

The site is scaled to N chargers (``sim.sites.scale_chargers``: existing chargers copied in
turn, same node, wiring and phase rotation) and the session stream with it: every charger is
given the sessions of one real station or user of the data (``scale_sessions``: streams drawn
without replacement while they last, then again under new ids), so demand grows like a garage
where each new wallbox serves one more household. A count *passes* a policy when at least
``target`` of the sessions get 99 % of their demand and no limit is exceeded.
"""

from __future__ import annotations

import dataclasses
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ampshare.sim.data import SessionRecord
from ampshare.sim.parallel import map_in_processes
from ampshare.sim.run import SimSpec, simulate
from ampshare.sim.sites import scale_chargers

__all__ = [
    "CapacityPoint",
    "CapacityResult",
    "capacity_point",
    "capacity_study",
    "plot_capacity",
    "scale_sessions",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class CapacityPoint:
    chargers: int
    policy: str
    sessions: int
    demands_met_ratio: float
    energy_delivered_ratio: float
    violation_amp_seconds: float
    peak_site_kw: float
    passed: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class CapacityResult:
    """Every run, and per policy the largest charger count that passed (None: none did)."""

    target: float
    points: tuple[CapacityPoint, ...]
    best: dict[str, int | None]


def scale_sessions(
    records: Sequence[SessionRecord], count: int, seed: int = 1
) -> tuple[SessionRecord, ...]:
    """Sessions of ``count`` station streams, each renamed to its own station id ``s{k}``."""
    streams: dict[str, list[SessionRecord]] = defaultdict(list)
    for r in records:
        streams[r.station_id].append(r)
    names = sorted(streams)
    rng = random.Random(seed)
    picked: list[str] = []
    while len(picked) < count:
        batch = names[:]
        rng.shuffle(batch)
        picked.extend(batch[: count - len(picked)])
    out = [
        dataclasses.replace(r, station_id=f"s{k}", session_id=f"{r.session_id}~{k}")
        for k, name in enumerate(picked)
        for r in streams[name]
    ]
    out.sort(key=lambda r: (r.arrival_s, r.session_id))
    return tuple(out)


def capacity_point(
    spec: SimSpec, chargers: int, policy: str, *, target: float = 0.95, seed: int = 1
) -> CapacityPoint:
    """One replay of the study: ``policy`` on the site and sessions scaled to ``chargers``."""
    run = dataclasses.replace(
        spec,
        site=scale_chargers(spec.site, chargers),
        sessions=scale_sessions(spec.sessions, chargers, seed),
        policy=policy,
        plan_provider=None,
        keep_ev=False,
    )
    m = simulate(run).metrics
    met = float(m["demands_met_ratio"] or 0.0)
    over = float(m["violation_amp_seconds"] or 0.0)
    return CapacityPoint(
        chargers=chargers,
        policy=policy,
        sessions=int(m["sessions"] or 0),
        demands_met_ratio=met,
        energy_delivered_ratio=float(m["energy_delivered_ratio"] or 0.0),
        violation_amp_seconds=over,
        peak_site_kw=float(m["peak_site_kw"] or 0.0),
        passed=met >= target and over == 0.0,
    )


def _point(spec: SimSpec, chargers: int, policy: str, target: float, seed: int) -> CapacityPoint:
    return capacity_point(spec, chargers, policy, target=target, seed=seed)


def capacity_study(
    spec: SimSpec,
    counts: Sequence[int],
    policies: Sequence[str] = ("static", "equal", "planned"),
    *,
    target: float = 0.95,
    seed: int = 1,
    on_point: Callable[[CapacityPoint], None] | None = None,
    workers: int = 1,
) -> CapacityResult:
    """Run every policy at every charger count (``spec`` gives data, window and options).

    The replays are independent: with ``workers`` > 1 they run in that many processes
    (spawned, so no thread state is copied), each the same deterministic replay as in one
    process. ``on_point`` hears of each point as it finishes; the result lists them by count
    and then in ``policies`` order either way."""
    jobs = [(spec, n, p, target, seed) for n in sorted(set(counts)) for p in policies]
    points = map_in_processes(_point, jobs, workers, on_result=on_point)
    best: dict[str, int | None] = {}
    for policy in policies:
        ok = [p.chargers for p in points if p.policy == policy and p.passed]
        best[policy] = max(ok) if ok else None
    return CapacityResult(target=target, points=tuple(points), best=best)


def plot_capacity(result: CapacityResult, path: str | Path, title: str = "") -> None:
    """Demands met against charger count, one line per policy, the target dashed."""
    fig = Figure(figsize=(8, 4.6))
    ax = fig.subplots()
    colors = ("#7f7f7f", "#1f77b4", "#2ca02c", "#d62728", "#9467bd", "#ff7f0e")
    for policy, color in zip(result.best, colors, strict=False):
        pts = [p for p in result.points if p.policy == policy]
        xs = [p.chargers for p in pts]
        ax.plot(
            xs,
            [p.demands_met_ratio for p in pts],
            "-o",
            color=color,
            ms=4,
            label=f"{policy}: {result.best[policy] or 'none'} chargers",
        )
        bad = [p for p in pts if p.violation_amp_seconds > 0]
        if bad:
            ax.plot(
                [p.chargers for p in bad],
                [p.demands_met_ratio for p in bad],
                "x",
                color=color,
                ms=9,
                mew=2,
            )
        most = result.best[policy]
        if most is not None:
            ax.axvline(most, color=color, ls=":", lw=1)
    if any(p.violation_amp_seconds > 0 for p in result.points):
        ax.plot([], [], "x", color="#333333", ms=8, mew=2, label="a limit was exceeded")
    ax.axhline(result.target, color="#333333", ls="--", lw=1)
    ax.text(
        ax.get_xlim()[0], result.target, f" target {result.target:.0%}", va="bottom", fontsize=8
    )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("chargers")
    ax.set_ylabel("sessions with ≥ 99 % of their demand")
    ax.set_ylim(0, 1.02)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower left", fontsize=9, title="most chargers passing")
    ax.set_title(title or "How many chargers can this service carry?", loc="left", fontsize=11)
    fig.savefig(path, dpi=110, bbox_inches="tight")
