"""The ChargerLink conformance walk, against the fake and the real central system (1.6, 2.0.1)."""

from __future__ import annotations

import pytest

from ampshare.adapters.ocpp import (
    CentralSystem,
    FakeChargerLink,
    FakeDriver,
    LinkOptions,
    SimDriver,
    check_charger_link,
)
from ampshare.clock import VirtualClock
from ampshare.config.sections import OcppSection
from ampshare.core.site import Charger, CircuitNode, Connection, NodeKind, Site, VoltageSystem

T0 = 1_700_000_000.0


def site() -> Site:
    root = CircuitNode(id="main", kind=NodeKind.SERVICE, parent_id=None,
                       line_limit_a=(63.0, 63.0, 63.0))
    chargers = tuple(Charger(id=f"cp{i}", node_id="main", connection=Connection.THREE_PHASE,
                             max_current_a=32.0) for i in (1, 2))
    return Site(name="t", voltage=VoltageSystem.EU_230_400, nodes=(root,), chargers=chargers)


async def test_fake_link_conforms() -> None:
    clock = VirtualClock(T0)
    link = FakeChargerLink(site().chargers, clock)
    assert await check_charger_link(link, FakeDriver(link, "cp1")) == []


@pytest.mark.parametrize("protocol", ["1.6", "2.0.1"])
async def test_central_system_conforms(protocol: str) -> None:
    clock = VirtualClock(T0)
    settings = OcppSection(host="127.0.0.1", port=0, min_write_interval_s=0)
    async with CentralSystem(site=site(), settings=settings, clock=clock,
                             options=LinkOptions(boot_wait_s=0.2)) as cs:
        driver = SimDriver(f"ws://127.0.0.1:{cs.port}/ocpp", "cp1", protocol, clock)
        assert await check_charger_link(cs, driver) == []
