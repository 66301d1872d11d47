"""``plan``: solve one planning problem; ``targets_at``/``policy_at``: read a plan live."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from ampshare.core.allocation import Policy, PolicyName
from ampshare.core.planner._lp import LpMatrices, LpResult, build, build_and_solve
from ampshare.core.planner._sessions import LpSession, lp_sessions
from ampshare.core.planner._types import Plan, PlanInput, PlanStatus, SessionPlan
from ampshare.errors import InputError

__all__ = ["ceiling_w", "plan", "planning_lp", "policy_at", "targets_at"]

_STATUS = {0: PlanStatus.OPTIMAL, 1: PlanStatus.TIME_LIMIT, 2: PlanStatus.INFEASIBLE}
SHORT_REL, SHORT_WH = 0.01, 50.0  # "will not be ready": more than 1 % and 50 Wh short


def _check(inp: PlanInput) -> None:
    if inp.n_slots < 1 or not inp.slot_s > 0:
        raise InputError(
            f"planner: need n_slots >= 1 and slot_s > 0 (got {inp.n_slots}, {inp.slot_s})"
        )
    for name in ("prices_per_kwh",):
        arr = getattr(inp, name)
        if arr is not None and np.shape(arr) != (inp.n_slots,):
            raise InputError(f"planner: {name} must have one value per slot ({inp.n_slots})")
    f = inp.forecast
    for name, arr in (("building_power_w", f.building_power_w), ("pv_power_w", f.pv_power_w)):
        if arr is not None and np.shape(arr) != (inp.n_slots,):
            raise InputError(f"planner: forecast.{name} must have one value per slot")
    for nid, arr in f.building_line_a.items():
        if np.shape(arr) != (inp.n_slots, 3):
            raise InputError(f"planner: forecast.building_line_a[{nid!r}] must be (n_slots, 3)")


def _session_plan(inp: PlanInput, s: LpSession, current: np.ndarray) -> SessionPlan:
    planned_wh = float(np.dot(current[s.slots], s.kwh_per_a)) * 1000.0
    expected = s.session.energy_delivered_wh + planned_wh
    requested = s.session.energy_wanted_wh
    in_horizon = s.departure_s <= inp.start_s + inp.slot_s * inp.n_slots
    short = requested is not None and expected < requested - max(SHORT_WH, SHORT_REL * requested)
    return SessionPlan(
        session_id=s.session.session_id,
        charger_id=s.session.charger_id,
        departure_s=s.departure_s,
        requested_wh=requested,
        expected_wh=expected,
        will_not_be_ready=bool(short and in_horizon),
        departure_in_horizon=in_horizon,
    )


def plan(inp: PlanInput) -> Plan:
    """Schedule every session of ``inp`` over its horizon (see ``ampshare.core.planner``).

    Never raises for a late or failed solve: the returned ``Plan.status`` says so and the
    caller falls back to the ``deadline`` policy. Raises ``InputError`` for malformed input.
    """
    _check(inp)
    sessions = lp_sessions(inp)
    res: LpResult = build_and_solve(inp, sessions)
    status = _STATUS.get(res.status, PlanStatus.FAILED)
    return Plan(
        status=status,
        start_s=inp.start_s,
        slot_s=inp.slot_s,
        n_slots=inp.n_slots,
        session_ids=tuple(s.session.session_id for s in sessions),
        current_a=res.current_a,
        sessions=tuple(_session_plan(inp, s, res.current_a[i]) for i, s in enumerate(sessions)),
        grid_kw=res.grid_kw,
        battery_kw=res.battery_kw,
        peak_kw=res.peak_kw,
        peak_charged=inp.demand_charge_per_kw > 0,
        stays_known=bool(inp.stay_samples),
        message=res.message,
    )


def planning_lp(inp: PlanInput) -> LpMatrices:
    """The LP ``plan`` would solve for ``inp``, unsolved (sessions in input order), for
    callers that extend it — the offline bound with minimum currents adds integrality."""
    _check(inp)
    return build(inp, lp_sessions(inp))


def targets_at(plan: Plan, now_s: float) -> dict[str, float]:
    """Session id -> target current [A per phase] of the slot holding ``now_s``.

    Empty when the plan is not usable or ``now_s`` lies outside its horizon.
    """
    if not plan.status.usable or now_s < plan.start_s or now_s >= plan.end_s:
        return {}
    k = min(plan.n_slots - 1, math.floor((now_s - plan.start_s) / plan.slot_s))
    return {sid: float(plan.current_a[i, k]) for i, sid in enumerate(plan.session_ids)}


def ceiling_w(plan: Plan) -> float | None:
    """The site import [W] to hold live for the demand charge: the plan's peak (never below
    the peak already set this billing period, which the plan was given and which costs
    nothing more). None when the plan was not asked to lower a peak, is not usable, or did
    not know yet how drivers keep their declared departures (no stay samples): such a plan
    spreads each car's energy up to its declaration, and the cars that leave early would lose
    what the ceiling held back (Caltech 2019-10-07..11 from a cold start: −1.1 % energy held,
    −0.05 % with the stays learned)."""
    if not (plan.peak_charged and plan.stays_known) or not plan.status.usable:
        return None
    if not math.isfinite(plan.peak_kw):
        return None
    return plan.peak_kw * 1000.0


def policy_at(
    plan: Plan | None, now_s: float, *, fallback: Policy | None = None, hold_peak: bool = True
) -> Policy:
    """The ``planned`` policy with this slot's targets (and, with ``hold_peak``, the plan's
    demand peak as ``planned_ceiling_w``), or ``fallback`` (default: ``deadline``) when there
    is no usable plan covering ``now_s``. ``fallback``'s settings (rotation interval) carry
    over to the planned policy."""
    targets = targets_at(plan, now_s) if plan is not None else {}
    if targets and plan is not None:
        base = fallback if fallback is not None else Policy()
        return replace(
            base,
            name=PolicyName.PLANNED,
            planned_targets_a=targets,
            planned_ceiling_w=ceiling_w(plan) if hold_peak else None,
        )
    return fallback if fallback is not None else Policy(name=PolicyName.DEADLINE)
