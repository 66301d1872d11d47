"""What the planner learns from the sessions it has seen end: default stays and energies, and
how long drivers really stayed against what they declared. The simulator's planner and the
live one learn the same way (``DriverHistory``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ampshare.core.planner._mpc import RecedingHorizonPlanner, learn_defaults
from ampshare.core.snapshot import Session

__all__ = ["DriverHistory"]


@dataclass(slots=True, kw_only=True)
class DriverHistory:
    """Sessions that ended, as ``(session as the plan knew it, when it ended)``, oldest first.

    ``observe`` is called with the plugged-in sessions at each decision; a session that is gone
    has ended then. Every ``every`` endings (and on ``teach``) the planner learns from the last
    ``keep``, once there are ``min_sessions``: its ``defaults`` (``learn_defaults`` on the true
    stays) and its ``stay_samples`` (declared stay, true / declared; a session that declared
    nothing counts as declared for the site's default stay, which is what the plan assumed).
    """

    every: int = 10
    keep: int = 500
    min_sessions: int = 10  # fewer: the planner keeps the defaults it has (the site file's)
    ended: list[tuple[Session, float]] = field(default_factory=list)
    _seen: dict[str, Session] = field(default_factory=dict)
    _endings: int = 0  # seen to end during this run

    def seed(self, ended: Iterable[tuple[Session, float]]) -> None:
        """Sessions that ended before this run (a live site's store, a replay's history)."""
        self.ended.extend(ended)
        del self.ended[: -self.keep]

    def observe(self, now_s: float, sessions: Sequence[Session]) -> bool:
        """Record the sessions gone since the last call as ended at ``now_s``; True when that
        completes another ``every`` endings (time to ``teach``)."""
        ids = {s.session_id for s in sessions}
        gone = [sid for sid in self._seen if sid not in ids]
        for sid in gone:
            self.ended.append((self._seen.pop(sid), now_s))
        del self.ended[: -self.keep]
        self._seen.update({s.session_id: s for s in sessions})
        before, self._endings = self._endings, self._endings + len(gone)
        return before // self.every != self._endings // self.every

    def teach(self, mpc: RecedingHorizonPlanner) -> None:
        """Set ``mpc.defaults`` and ``mpc.stay_samples`` from the sessions kept."""
        if len(self.ended) < self.min_sessions:
            return
        mpc.defaults = learn_defaults(
            [dataclasses.replace(s, departure_s=t) for s, t in self.ended]
        )
        samples = []
        for s, t in self.ended:
            declared = s.departure_s
            if declared is None:
                declared = s.arrival_s + mpc.defaults.dwell_s
            if declared > s.arrival_s:
                stay_s = declared - s.arrival_s
                samples.append((stay_s, (t - s.arrival_s) / stay_s))
        mpc.stay_samples = tuple(samples)
