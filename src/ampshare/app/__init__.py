"""The supervisor that wires adapters, the control loop (and later store and web) for
``ampshare run``."""

from __future__ import annotations

from ampshare.app.supervisor import (
    Supervisor,
    SupervisorOptions,
    control_settings,
    policy_from,
    tune_gc,
)

__all__ = ["Supervisor", "SupervisorOptions", "control_settings", "policy_from", "tune_gc"]
