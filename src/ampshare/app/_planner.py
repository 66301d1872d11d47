"""The receding-horizon planner beside the live loop (site file ``planner: {enabled: true}``).

The control step stays synchronous and quick: it reads the newest plan's targets for the slot
in force (``core.planner.policy_at``) when the policy is ``planned``, and the ``deadline``
policy while there is no usable plan (none yet, or the last solve was late or infeasible).
Solves run in a worker thread — HiGHS releases the GIL, so the event loop keeps serving the
chargers — whenever ``RecedingHorizonPlanner.needs_replan`` says so (interval, arrivals and
departures, plan running out, last solve unusable), one at a time. A car whose charger reports
SuspendedEV counts as full (the plan reserves nothing for it) until it draws again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace

from ampshare.core.allocation import Policy, PolicyName
from ampshare.core.planner import (
    Plan,
    RecedingHorizonPlanner,
    full_sessions,
    policy_at,
    without_full,
)
from ampshare.core.snapshot import ChargerState, Session

__all__ = ["LivePlanner"]


class LivePlanner:
    """The planner of one supervised site; ``latest`` is its newest plan (None: none yet)."""

    def __init__(self, mpc: RecedingHorizonPlanner) -> None:
        self.mpc = mpc
        self.latest: Plan | None = None
        self.solves = 0
        self._full: frozenset[str] = frozenset()
        self._running = False

    def policy(self, base: Policy, now_s: float) -> Policy:
        """What this step runs: ``base`` unless it is ``planned``; then the plan's targets for
        the slot holding ``now_s``, or ``deadline`` (same settings) without a usable plan."""
        if base.name is not PolicyName.PLANNED:
            return base
        return policy_at(self.latest, now_s, fallback=replace(base, name=PolicyName.DEADLINE))

    def wants(
        self, now_s: float, sessions: Sequence[Session], states: Sequence[ChargerState]
    ) -> bool:
        """A new plan is due and no solve is running (marks full cars as a side effect)."""
        self._full = full_sessions(self._full, sessions, states)
        return not self._running and self.mpc.needs_replan(now_s, sessions)

    async def replan(self, now_s: float, sessions: Sequence[Session]) -> Plan:
        """Solve for ``sessions`` at ``now_s`` in a worker thread; the result is ``latest``."""
        self._running = True
        try:
            known = without_full(sessions, self._full)
            self.latest = await asyncio.to_thread(self.mpc.step, now_s, known)
            self.solves += 1
        finally:
            self._running = False
        return self.latest
