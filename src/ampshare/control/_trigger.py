"""When to run the decision step: on fresh input, coalescing bursts, at least every period.

Used by the asyncio supervisor and by the simulator alike, so both run steps at the same
moments. It holds no clock: callers pass ``now`` and ask ``next_run_s()`` when to wake up.

Rules:

* A new input (meter reading, charger report, session change) asks for a step; the step runs
  ``coalesce_s`` after the first such input, so that a burst (200 chargers booting at once)
  becomes one step, not 200.
* Two steps are never closer than ``min_interval_s``.
* A step runs at least every ``max_period_s``, and no later than the wake-up the previous step
  asked for (a decrease whose EV reaction time runs out, a lease to refresh, a meter timeout).
"""

from __future__ import annotations

import math

from ampshare.control._settings import ControlSettings

__all__ = ["Trigger"]


class Trigger:
    """Decides when the next step is due (mutable helper; one per site controller)."""

    def __init__(self, settings: ControlSettings) -> None:
        self._settings = settings
        self._pending_since_s: float | None = None
        self._last_run_s: float | None = None
        self._wakeup_s = math.inf

    @property
    def last_run_s(self) -> float | None:
        return self._last_run_s

    def notify(self, t_s: float) -> None:
        """New input arrived at ``t_s``; only the first of a burst sets the coalescing clock."""
        if self._pending_since_s is None:
            self._pending_since_s = t_s

    def next_run_s(self) -> float:
        """The time the next step should run (``-inf``: now; never ``inf``)."""
        s = self._settings
        if self._last_run_s is None:
            if self._pending_since_s is None:
                return -math.inf
            return self._pending_since_s + s.coalesce_s
        earliest = self._last_run_s + s.min_interval_s
        due = min(self._last_run_s + s.max_period_s, max(self._wakeup_s, earliest))
        if self._pending_since_s is not None:
            due = min(due, max(self._pending_since_s + s.coalesce_s, earliest))
        return due

    def due(self, now_s: float) -> bool:
        """True when a step should run at ``now_s``."""
        return now_s >= self.next_run_s() - 1e-9

    def ran(self, now_s: float, next_wakeup_s: float = math.inf) -> None:
        """Record that a step ran at ``now_s`` and asked to run again by ``next_wakeup_s``."""
        self._last_run_s = now_s
        self._pending_since_s = None
        self._wakeup_s = next_wakeup_s
