"""What a scenario run measured: per node and line, current against the limit in force."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LineStats"]


@dataclass(slots=True)
class LineStats:
    """Accumulated over a run for one node line (or transformer primary line)."""

    limit_a: float
    peak_a: float = 0.0
    amp_seconds_above: float = 0.0
    seconds_above: float = 0.0
    longest_above_s: float = 0.0
    _run_s: float = 0.0

    def add(self, current_a: float, limit_a: float, dt_s: float) -> None:
        """One tick of ``dt_s`` at ``current_a`` under ``limit_a`` (which may change)."""
        self.limit_a = min(self.limit_a, limit_a)
        self.peak_a = max(self.peak_a, current_a)
        over = current_a - limit_a
        if over > 1e-6:
            self.amp_seconds_above += over * dt_s
            self.seconds_above += dt_s
            self._run_s += dt_s
            self.longest_above_s = max(self.longest_above_s, self._run_s)
        else:
            self._run_s = 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "limit_a": round(self.limit_a, 3),
            "peak_a": round(self.peak_a, 3),
            "amp_seconds_above": round(self.amp_seconds_above, 3),
            "seconds_above": round(self.seconds_above, 3),
            "longest_above_s": round(self.longest_above_s, 3),
        }
