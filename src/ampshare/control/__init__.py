"""The control loop's decision step: leases, safe sequencing, fallbacks (no I/O).

``step(site, settings, policy, state, inputs, now_s) -> StepResult`` is the whole controller:
the live supervisor and the simulator both call it, with a ``Trigger`` deciding when.
See ``docs/scenarios.md`` and the README section "Control loop and scenarios".
"""

from __future__ import annotations

from ampshare.control._fallback import fallback_limits, round_down_to_charger
from ampshare.control._index import SiteIndex, charger_lines, index_site
from ampshare.control._sequence import Plan, plan_commands
from ampshare.control._settings import ControlSettings
from ampshare.control._step import initial_state, rebuild_state, step
from ampshare.control._table import sent_limits
from ampshare.control._trigger import Trigger
from ampshare.control._types import (
    ChargerTrack,
    Command,
    CommandAck,
    ControlInputs,
    ControllerState,
    Event,
    EventKind,
    InstallFallback,
    MeterTrack,
    SetLimit,
    Severity,
    StepResult,
)
from ampshare.control._watch import reclaim_due_s

__all__ = [
    "ChargerTrack",
    "Command",
    "CommandAck",
    "ControlInputs",
    "ControlSettings",
    "ControllerState",
    "Event",
    "EventKind",
    "InstallFallback",
    "MeterTrack",
    "Plan",
    "SetLimit",
    "Severity",
    "SiteIndex",
    "StepResult",
    "Trigger",
    "charger_lines",
    "fallback_limits",
    "index_site",
    "initial_state",
    "plan_commands",
    "rebuild_state",
    "reclaim_due_s",
    "round_down_to_charger",
    "sent_limits",
    "step",
]
