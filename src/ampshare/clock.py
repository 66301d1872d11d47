"""The Clock port: every component asks it for the time instead of calling ``time`` itself.

``SystemClock`` is the real one; ``VirtualClock`` is moved by hand (tests, the simulator, the
scenario runner) so that a simulated month takes seconds and tests never sleep.
Times are seconds since the Unix epoch as floats (``t_s``).
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "SystemClock", "VirtualClock"]


@runtime_checkable
class Clock(Protocol):
    """Source of the current time in seconds since the epoch."""

    def now_s(self) -> float:
        """Current time [s since epoch]."""
        ...


class SystemClock:
    """Wall-clock time from the operating system."""

    def now_s(self) -> float:
        return time.time()


class VirtualClock:
    """A clock that only moves when told to; it never goes backwards."""

    def __init__(self, start_s: float = 0.0) -> None:
        self._now_s = float(start_s)

    def now_s(self) -> float:
        return self._now_s

    def advance(self, dt_s: float) -> float:
        """Move forward by ``dt_s`` seconds (must be >= 0); returns the new time."""
        if dt_s < 0:
            raise ValueError(f"a VirtualClock cannot go backwards (dt_s={dt_s})")
        self._now_s += dt_s
        return self._now_s

    def set(self, t_s: float) -> None:
        """Jump to ``t_s`` (must not be earlier than now)."""
        if t_s < self._now_s:
            raise ValueError(f"a VirtualClock cannot go backwards ({t_s} < {self._now_s})")
        self._now_s = float(t_s)
