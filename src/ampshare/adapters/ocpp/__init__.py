"""OCPP 1.6J and 2.0.1 central system, the ``ChargerLink`` port, its fake and a simulator.

Public API (pinned by ``tests/test_ocpp_api.py``)::

    CentralSystem(site=..., settings=OcppSection(...), clock=..., options=LinkOptions(...))
    ChargerLink, LinkSnapshot, SetLimit, InstallFallback, CommandOutcome, OutcomeStatus
    FakeChargerLink(chargers, clock)
    check_charger_link(link, driver) -> list[str]; FakeDriver, SimDriver
    SimOptions, connect_sim(url, cp_id, "1.6"|"2.0.1", options=..., clock=...)
    hash_password(password) -> str
"""

from __future__ import annotations

from ampshare.adapters.ocpp._hub import LinkOptions
from ampshare.adapters.ocpp.auth import hash_password, verify_password
from ampshare.adapters.ocpp.conformance import (
    FakeDriver,
    LinkDriver,
    SimDriver,
    check_charger_link,
)
from ampshare.adapters.ocpp.fake import FakeChargerLink
from ampshare.adapters.ocpp.port import (
    ChargerLink,
    CommandOutcome,
    FallbackCommand,
    InstallFallback,
    LimitCommand,
    LinkSnapshot,
    OutcomeStatus,
    ProfilePurpose,
    SetLimit,
)
from ampshare.adapters.ocpp.server import SUBPROTOCOLS, CentralSystem, charge_point_id
from ampshare.adapters.ocpp.sim import SimOptions, connect_sim, drive

__all__ = [
    "SUBPROTOCOLS",
    "CentralSystem",
    "ChargerLink",
    "CommandOutcome",
    "FakeChargerLink",
    "FakeDriver",
    "FallbackCommand",
    "InstallFallback",
    "LimitCommand",
    "LinkDriver",
    "LinkOptions",
    "LinkSnapshot",
    "OutcomeStatus",
    "ProfilePurpose",
    "SetLimit",
    "SimDriver",
    "SimOptions",
    "charge_point_id",
    "check_charger_link",
    "connect_sim",
    "drive",
    "hash_password",
    "verify_password",
]
