"""``simulate``: one replay of a session stream on a site under a named policy, with metrics.

Policy names: the allocator's (``equal``, ``fcfs``, ``priority``, ``deadline``, ``planned``,
``static``, ``uncontrolled``), run through the live controller ``ampshare.control.step``, and
the sim baselines ``greedy-clamp`` and ``all-stop`` (``ampshare.sim.baselines``), run through
a bare allocator loop.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ampshare.control import ControlSettings
from ampshare.core.allocate import allocate
from ampshare.core.allocation import Policy, PolicyName
from ampshare.core.planner import SessionPlan
from ampshare.core.site import Site
from ampshare.core.tariff import Tariff
from ampshare.errors import InputError
from ampshare.sim.baselines import BASELINES
from ampshare.sim.controllers import AllocatorController, Controller, ControlLoopController
from ampshare.sim.data import SessionRecord
from ampshare.sim.engine import EvOptions, PlanProvider, Replay, run_replay
from ampshare.sim.metrics import compute_metrics
from ampshare.sim.series import TimeSeries

if TYPE_CHECKING:  # the planner (scipy) is imported only when a replay plans
    from ampshare.sim.planning import PlannerOptions

__all__ = [
    "POLICY_NAMES",
    "SimOutcome",
    "SimSpec",
    "controller_factory",
    "optimum_metrics",
    "simulate",
]

POLICY_NAMES: tuple[str, ...] = (*(p.value for p in PolicyName), *BASELINES)


@dataclass(frozen=True, slots=True, kw_only=True)
class SimSpec:
    """Everything one replay needs. ``policy`` is a name from ``POLICY_NAMES``; ``control``
    the controller settings (None: defaults); ``direct`` runs an ampshare policy through the
    bare allocator instead of the controller (for comparisons with simulators that have no
    sequencing; a car whose charger reports it full is paused, ``AllocatorController``);
    ``plan_provider`` feeds the ``planned`` policy every ``replan_s`` (None: a
    ``PlannerProvider`` with ``planner``'s settings, the simulator's defaults without)."""

    site: Site
    sessions: tuple[SessionRecord, ...]
    policy: str = "equal"
    building: TimeSeries | None = None
    pv: TimeSeries | None = None
    tariff: Tariff | None = None
    step_s: float = 60.0
    start_s: float | None = None
    end_s: float | None = None
    ev: EvOptions = dataclasses.field(default_factory=EvOptions)
    control: ControlSettings | None = None
    deadline_mode: str = "edf"
    rotation_interval_s: float = 900.0
    direct: bool = False
    plan_provider: PlanProvider | None = None
    planner: PlannerOptions | None = None
    replan_s: float = 900.0
    max_quiet_s: float = 300.0
    keep_ev: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class SimOutcome:
    """``session_plans``: with the planner (``PlannerProvider``), each session's latest plan —
    energy expected by its departure and whether it was flagged "will not be ready"."""

    policy: str
    metrics: dict[str, float | int | None]
    replay: Replay
    session_plans: tuple[SessionPlan, ...] = ()


def _settings(spec: SimSpec) -> ControlSettings:
    base = spec.control or ControlSettings()
    # Leases only matter when the controller or the network dies, which a replay does not
    # simulate; a lease of many grid steps keeps refreshes from waking every quiet step.
    return dataclasses.replace(
        base, lease_s=max(base.lease_s, 30 * spec.step_s), ev_reaction_s=spec.ev.reaction_s
    )


def _static_site(spec: SimSpec) -> Site:
    """What an installer configures for a static split: the building's peak (over the replay)
    reserved as margin at the metered node and above it, the rest shared by the chargers."""
    if spec.building is None:
        return spec.site
    node_id = spec.site.meters[0].node_id if spec.site.meters else spec.site.root.id
    b = spec.building
    t0 = spec.start_s if spec.start_s is not None else min(r.arrival_s for r in spec.sessions)
    t1 = spec.end_s if spec.end_s is not None else max(r.departure_s for r in spec.sessions)
    peak = b.max_between(t0, t1)
    if b.per_line:
        peak_a = float(np.max(peak))
    else:
        n = len(spec.site.voltage.lines)
        peak_a = float(peak) * 1000.0 / (n * spec.site.voltage.line_to_neutral_v)
    above = set(spec.site.ancestors(node_id))
    nodes = tuple(
        dataclasses.replace(n, margin_a=n.margin_a + max(peak_a, 0.0)) if n.id in above else n
        for n in spec.site.nodes
    )
    return dataclasses.replace(spec.site, nodes=nodes)


def controller_factory(spec: SimSpec) -> Callable[[Site], Controller]:
    """How to build the controller of ``spec.policy`` for the (metered) site."""
    if spec.policy in BASELINES:
        fn = BASELINES[spec.policy]
        return lambda site: AllocatorController(site, fn)
    if spec.policy not in POLICY_NAMES:
        raise InputError(f"unknown policy {spec.policy!r}; choose one of {', '.join(POLICY_NAMES)}")
    if spec.direct:
        return lambda site: AllocatorController(site, allocate, pause_full=True)
    settings = _settings(spec)
    return lambda site: ControlLoopController(site, settings)


def simulate(spec: SimSpec, progress: Callable[[float], None] | None = None) -> SimOutcome:
    """Replay ``spec`` and compute its metrics."""
    if spec.step_s <= 0:
        raise InputError(f"step must be positive (got {spec.step_s} s)")
    provider = spec.plan_provider
    planned = spec.policy == PolicyName.PLANNED.value
    # The planner's battery is simulated where a plan drives it (``planned``); the others
    # have no plan for it, and a battery that only idles would change nothing.
    battery = spec.planner.battery if planned and spec.planner is not None else None
    if planned and provider is None:
        from ampshare.sim.planning import PlannerOptions, PlannerProvider

        provider = PlannerProvider.for_replay(
            spec.site,
            tariff=spec.tariff,
            building=spec.building,
            pv=spec.pv,
            options=spec.planner or PlannerOptions(),
        )
    policy = Policy(
        name=PolicyName(spec.policy)
        if spec.policy in PolicyName._value2member_map_
        else PolicyName.EQUAL,
        deadline_mode=spec.deadline_mode,
        rotation_interval_s=spec.rotation_interval_s,
    )
    site = _static_site(spec) if spec.policy == PolicyName.STATIC.value else spec.site
    rep = run_replay(
        site,
        spec.sessions,
        controller_factory(spec),
        policy,
        building=spec.building,
        pv=spec.pv,
        ev=spec.ev,
        step_s=spec.step_s,
        start_s=spec.start_s,
        end_s=spec.end_s,
        keep_ev=spec.keep_ev,
        plan_provider=provider,
        replan_s=spec.replan_s,
        max_quiet_s=spec.max_quiet_s,
        progress=progress,
        battery=battery,
        battery_hold_s=_settings(spec).ev_reaction_s + 2.0,
    )
    from ampshare.sim.planning import PlannerProvider

    plans = tuple(provider.expected.values()) if isinstance(provider, PlannerProvider) else ()
    return SimOutcome(
        policy=spec.policy,
        metrics=compute_metrics(rep, spec.tariff),
        replay=rep,
        session_plans=plans,
    )


def optimum_metrics(spec: SimSpec, step_s: float | None = None) -> dict[str, float | int | None]:
    """The offline optimum (``ampshare.sim.optimum``, perfect knowledge, an LP on HiGHS) for
    the sessions and site of ``spec``, with the simulator's metric keys it can fill."""
    from ampshare.sim.optimum import offline_optimum

    t0 = time.perf_counter()
    res = offline_optimum(
        spec.site,
        spec.sessions,
        spec.building,
        step_s=step_s or max(spec.step_s, 300.0),
        tariff=spec.tariff,
        vehicle_max_current_a=spec.ev.max_current_a,
    )
    out = dict(res.metrics())
    out["wall_s"] = round(time.perf_counter() - t0, 3)
    return out
