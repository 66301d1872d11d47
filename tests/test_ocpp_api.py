"""The deliberate public API of ``ampshare.adapters.ocpp`` and ``ampshare.app``."""

from __future__ import annotations

import ampshare.adapters.ocpp as ocpp
import ampshare.app as app
from ampshare.adapters.ocpp import CentralSystem, ChargerLink, FakeChargerLink
from ampshare.clock import VirtualClock
from ampshare.config.sections import OcppSection
from ampshare.control import InstallFallback, SetLimit


def test_exported_names() -> None:
    assert sorted(ocpp.__all__) == sorted([
        "SUBPROTOCOLS", "CentralSystem", "ChargerLink", "CommandOutcome", "FakeChargerLink",
        "FakeDriver", "FallbackCommand", "InstallFallback", "LimitCommand", "LinkDriver",
        "LinkOptions", "LinkSnapshot", "OutcomeStatus", "ProfilePurpose", "SetLimit",
        "SimDriver", "SimOptions", "charge_point_id", "check_charger_link", "connect_sim",
        "drive", "hash_password", "verify_password",
    ])
    assert sorted(app.__all__) == ["Supervisor", "SupervisorOptions", "control_settings",
                                   "policy_from", "tune_gc"]
    for name in ocpp.__all__:
        assert getattr(ocpp, name) is not None


def test_both_links_satisfy_the_port() -> None:
    fake = FakeChargerLink((), VirtualClock(0))
    real = CentralSystem(site=None, settings=OcppSection(port=0), clock=VirtualClock(0))
    assert isinstance(fake, ChargerLink)
    assert isinstance(real, ChargerLink)


async def test_control_commands_plug_in_as_they_are() -> None:
    # ampshare.control's own command types are accepted structurally by the port.
    from ampshare.core.site import Charger, Connection

    link = FakeChargerLink((Charger(id="c", node_id="n", connection=Connection.L1),),
                           VirtualClock(100))
    link.connect("c")
    fb = await link.install_fallback(InstallFallback(charger_id="c", limit_a=8.0, phases=1))
    live = await link.set_limit(SetLimit(charger_id="c", limit_a=10.0, phases=1,
                                         lease_until_s=200.0, reason="test"))
    assert fb.ok
    assert live.ok
    assert link.applied_a == {"c": 10.0}
