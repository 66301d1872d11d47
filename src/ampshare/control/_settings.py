"""The controller's tuning knobs as one frozen value (built from ``ControlSection``)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ControlSettings"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ControlSettings:
    """Timing and safety settings of the decision step; all times in seconds, currents in A.

    Field names match ``ampshare.config.sections.ControlSection`` one to one, so
    ``ControlSettings(**section.model_dump())`` builds it from a validated site file.

    * ``max_period_s``: a step runs at least this often even without new input.
    * ``coalesce_s``: after a first new input, wait this long for more (a burst of 200 charger
      boots becomes one step); ``min_interval_s``: never two steps closer than this.
    * ``lease_s``: how long a limit is valid; it is refreshed after half of it.
    * ``ack_timeout_s``: a command not acknowledged this long is sent again (until then, and
      after, the charger stays counted at the higher of its old and new limit).
    * ``ev_reaction_s``: time an EV may take to obey a lower pilot (IEC 61851: 5 s); a decrease
      counts as confirmed after it even without a measurement.
    * ``confirm_tolerance_a``: a measured draw at or under the new limit plus this confirms a
      decrease early.
    * ``ramp_up_a_per_s``: fastest increase of one charger's limit (None: step at once).
    * ``deadband_a``: increases smaller than this are not sent (spares charger flash);
      decreases are always sent, because safety comes first.
    * ``min_charge_s`` / ``min_pause_s``: start/stop hysteresis; a paused car stays paused at
      least ``min_pause_s``; ``min_charge_s`` feeds the allocator's rotation.
    * ``meter_timeout_s``: a reading older than this is stale (None: each meter's own
      ``timeout_s``); ``meter_recover_s``: a stale meter must report fresh readings this long
      before it is trusted again (a flapping meter stays pessimistic).
    * ``noncompliance_tolerance_a`` / ``noncompliance_s``: drawing more than limit + tolerance
      for this long makes a charger non-compliant (counted at its draw, alert).
    * ``reclaim_below_a`` / ``reclaim_after_s`` / ``reclaim_margin_a``: an EV drawing more
      than ``reclaim_below_a`` under its limit for ``reclaim_after_s`` is capped at its draw
      plus the margin (again, lower, as it tapers further); drawing up to its cap lifts it.
      ``probe_interval_s`` after the cap was set it is lifted to see if the car takes more,
      if the car draws within the margin of it; each probe that finds nothing (or is
      skipped) doubles the wait, up to 8x. A car taking nothing while its charger reports
      SuspendedEV (full) for ``reclaim_after_s`` is capped at 0 A (paused) and probed alike.
    * ``startup_grace_s``: a charger not yet connected since the controller (re)started is
      counted pessimistically like any offline charger, but raises its "offline" alert only
      when it has not connected this long after the start.
    """

    max_period_s: float = 1.0
    coalesce_s: float = 0.05
    min_interval_s: float = 0.2
    lease_s: float = 120.0
    ack_timeout_s: float = 10.0
    ev_reaction_s: float = 5.0
    confirm_tolerance_a: float = 0.5
    ramp_up_a_per_s: float | None = None
    deadband_a: float = 1.0
    min_charge_s: float = 60.0
    min_pause_s: float = 30.0
    meter_timeout_s: float | None = None
    meter_recover_s: float = 10.0
    noncompliance_tolerance_a: float = 2.0
    noncompliance_s: float = 10.0
    reclaim_below_a: float = 4.0
    reclaim_after_s: float = 30.0
    reclaim_margin_a: float = 2.0
    probe_interval_s: float = 300.0
    startup_grace_s: float = 120.0
