"""The central system against simulated charge points over real websockets on loopback.

Each test runs for OCPP 1.6J and 2.0.1: a car arrives, reports, gets its limit, a second car
arrives and both are rebalanced (decrease first), the cars leave; reconnects, chargers that
reject TxProfile, a W-only charger. Time is a VirtualClock shared by both sides.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from ampshare.adapters.ocpp import (
    CentralSystem,
    InstallFallback,
    LinkOptions,
    OutcomeStatus,
    ProfilePurpose,
    SetLimit,
    SimOptions,
    connect_sim,
)
from ampshare.clock import VirtualClock
from ampshare.config.sections import OcppSection
from ampshare.core.site import (
    Charger,
    CircuitNode,
    Connection,
    NodeKind,
    PhaseRotation,
    Site,
    VoltageSystem,
)
from ampshare.core.snapshot import ChargerStatus
from ampshare.sim.ev import EvSpec

T0 = 1_700_000_000.0
PROTOCOLS = ["1.6", "2.0.1"]


def make_site() -> Site:
    root = CircuitNode(id="main", kind=NodeKind.SERVICE, parent_id=None,
                       line_limit_a=(32.0, 32.0, 32.0))
    three = tuple(Charger(id=f"cp{i}", node_id="main", connection=Connection.THREE_PHASE,
                          max_current_a=32.0) for i in (1, 2, 3))
    rotated = Charger(id="rot", node_id="main", connection=Connection.L1,
                      phase_rotation=PhaseRotation.L2L3L1, max_current_a=32.0)
    whole = Charger(id="whole", node_id="main", connection=Connection.THREE_PHASE,
                    resolution_a=1.0, zero_pauses=False)
    return Site(name="t", voltage=VoltageSystem.EU_230_400, nodes=(root,),
                chargers=(*three, rotated, whole))


async def until(cond: Callable[[], bool], timeout_s: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while not cond():
        assert loop.time() < end, "condition not reached in time"
        await asyncio.sleep(0.01)


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(T0)


@pytest.fixture
async def cs(clock: VirtualClock) -> AsyncIterator[CentralSystem]:
    settings = OcppSection(host="127.0.0.1", port=0, min_write_interval_s=0,
                           call_timeout_s=5)
    async with CentralSystem(site=make_site(), settings=settings, clock=clock,
                             options=LinkOptions(boot_wait_s=0.2)) as server:
        yield server


def url(cs: CentralSystem) -> str:
    return f"ws://127.0.0.1:{cs.port}/ocpp"


async def join(cs: CentralSystem, cp_id: str, protocol: str, clock: VirtualClock,
               **opts: Any) -> Any:
    cp = await connect_sim(url(cs), cp_id, protocol, options=SimOptions(**opts), clock=clock)
    await cs.wait_ready(cp_id)
    return cp


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_session_lifecycle_and_rebalance(cs: CentralSystem, clock: VirtualClock,
                                               protocol: str) -> None:
    cp1 = await join(cs, "cp1", protocol, clock)
    fb = await cs.install_fallback(InstallFallback(charger_id="cp1", limit_a=10.0, phases=3))
    assert fb.ok
    assert fb.purpose is ProfilePurpose.TX_DEFAULT
    assert cp1.offered_a() == 10.0  # the fallback alone governs before any live limit
    await cp1.start_transaction()
    await until(lambda: cs.snapshot().session("cp1") is not None)
    assert cs.snapshot().state("cp1").status is ChargerStatus.CHARGING  # type: ignore[union-attr]

    out = await cs.set_limit(SetLimit(charger_id="cp1", limit_a=32.0, phases=3,
                                      lease_until_s=T0 + 120))
    assert out.ok
    assert out.purpose is ProfilePurpose.TX
    assert out.sent_limit == 32.0
    tx = cp1.received[-1]
    assert tx.purpose == "TxProfile"
    assert tx.transaction_id == cp1.tx_id
    assert tx.duration_s == 120
    clock.advance(5)  # the car reacts after its reaction delay
    await cp1.meter_values()
    await until(lambda: cs.snapshot().state("cp1").measured_current_a == (32.0, 32.0, 32.0))  # type: ignore[union-attr]
    assert cs.snapshot().state("cp1").offered_current_a == 32.0  # type: ignore[union-attr]

    # A second car arrives: lower the first before raising the second (decrease first).
    cp2 = await join(cs, "cp2", protocol, clock)
    await cp2.start_transaction()
    await until(lambda: cs.snapshot().session("cp2") is not None)
    down = await cs.set_limit(SetLimit(charger_id="cp1", limit_a=16.0, phases=3,
                                       lease_until_s=T0 + 125))
    assert down.ok
    assert cp1.offered_a() == 16.0
    up = await cs.set_limit(SetLimit(charger_id="cp2", limit_a=16.0, phases=3,
                                     lease_until_s=T0 + 125))
    assert up.ok
    assert cp2.offered_a() == 16.0
    clock.advance(5)
    await cp1.meter_values()
    await cp2.meter_values()
    await until(lambda: cs.snapshot().state("cp2").measured_current_a == (16.0, 16.0, 16.0))  # type: ignore[union-attr]
    snap = cs.snapshot()
    assert snap.state("cp1").measured_current_a == (16.0, 16.0, 16.0)  # type: ignore[union-attr]
    assert snap.state("cp1").installed_limit_a == 16.0  # type: ignore[union-attr]

    clock.advance(600)
    await cp1.meter_values()
    await until(lambda: (cs.snapshot().session("cp1") or _none()).energy_delivered_wh > 0)
    delivered = cs.snapshot().session("cp1").energy_delivered_wh  # type: ignore[union-attr]
    assert delivered > 16 * 230 * 3 * 600 / 3600 * 0.9  # ~1.8 kWh at 16 A for 10 min
    await cp1.stop_transaction()
    await until(lambda: cs.snapshot().session("cp1") is None)
    assert cs.snapshot().session("cp2") is not None
    for cp in (cp1, cp2):
        await cp.close()
    await until(lambda: not cs.snapshot().state("cp1").online)  # type: ignore[union-attr]
    assert cs.snapshot().state("cp1").status is ChargerStatus.OFFLINE  # type: ignore[union-attr]


def _none() -> Any:
    class _S:
        energy_delivered_wh = 0.0
    return _S()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_reconnect_with_running_transaction_reasserts(
        cs: CentralSystem, clock: VirtualClock, protocol: str) -> None:
    cp = await join(cs, "cp1", protocol, clock)
    await cs.install_fallback(InstallFallback(charger_id="cp1", limit_a=8.0, phases=3))
    tx = await cp.start_transaction()
    await until(lambda: cs.snapshot().session("cp1") is not None)
    assert (await cs.set_limit(SetLimit(charger_id="cp1", limit_a=20.0, phases=3,
                                        lease_until_s=T0 + 300))).ok
    clock.advance(5)
    await cp.meter_values()
    await until(lambda: cs.snapshot().state("cp1").measured_current_a is not None)  # type: ignore[union-attr]
    session_before = cs.snapshot().session("cp1")

    # The network drops; the charger lost its profiles (say, a firmware that keeps none).
    cp.store.clear()
    cp.received.clear()
    await cp.reconnect(url(cs))
    await until(lambda: any(p.purpose == "TxProfile" for p in cp.received))
    live = next(p for p in cp.received if p.purpose == "TxProfile")
    assert live.transaction_id == tx
    assert live.limit == 20.0
    assert any(p.purpose == "TxDefaultProfile" and p.connector_id == 0 for p in cp.received)
    assert cs.snapshot().session("cp1").session_id == session_before.session_id  # type: ignore[union-attr]

    # Buffered values replayed after the reconnect are placed by time, not arrival.
    clock.advance(10)
    await cp.meter_values()
    await until(lambda: cs.snapshot().state("cp1").measured_current_a == (20.0, 20.0, 20.0))  # type: ignore[union-attr]
    cp.store.clear()  # makes the old sample differ: offered 32 (hardware max)
    await cp.meter_values(t_s=clock.now_s() - 8)
    await asyncio.sleep(0.1)
    st = cs.snapshot().state("cp1")
    assert st is not None
    assert st.offered_current_a == 20.0
    await cp.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(("rejects", "expected"), [
    ({"TxProfile"}, ProfilePurpose.TX_DEFAULT),
    ({"TxProfile", "TxDefaultProfile"}, ProfilePurpose.CHARGE_POINT_MAX),
])
async def test_fallback_chain_when_a_purpose_is_rejected(
        cs: CentralSystem, clock: VirtualClock, protocol: str, rejects: set[str],
        expected: ProfilePurpose) -> None:
    cp = await join(cs, "cp1", protocol, clock, reject_purposes=frozenset(rejects))
    await cp.start_transaction()
    await until(lambda: cs.snapshot().session("cp1") is not None)
    out = await cs.set_limit(SetLimit(charger_id="cp1", limit_a=13.0, phases=3,
                                      lease_until_s=T0 + 60))
    assert out.ok
    assert out.purpose is expected
    assert cp.offered_a() == 13.0
    # The next limit goes straight to the purpose that worked.
    cp.received.clear()
    assert (await cs.set_limit(SetLimit(charger_id="cp1", limit_a=9.0, phases=3,
                                        lease_until_s=T0 + 60))).ok
    assert [p.purpose for p in cp.received] == [expected.value]
    assert cp.offered_a() == 9.0
    await cp.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_every_purpose_rejected_is_reported(cs: CentralSystem, clock: VirtualClock,
                                                  protocol: str) -> None:
    cp = await join(cs, "cp1", protocol, clock, reject_purposes=frozenset(
        {"TxProfile", "TxDefaultProfile", "ChargePointMaxProfile"}))
    await cp.start_transaction()
    await until(lambda: cs.snapshot().session("cp1") is not None)
    out = await cs.set_limit(SetLimit(charger_id="cp1", limit_a=13.0, phases=3))
    assert out.status is OutcomeStatus.REJECTED
    assert "TxProfile" in out.detail
    assert "ChargePointMaxProfile" in out.detail
    await cp.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_watt_only_charger_gets_watts(cs: CentralSystem, clock: VirtualClock,
                                            protocol: str) -> None:
    cp = await join(cs, "cp1", protocol, clock, rate_units=("W",))
    fb = await cs.install_fallback(InstallFallback(charger_id="cp1", limit_a=6.0, phases=3))
    assert fb.ok
    assert fb.unit == "W"
    assert fb.sent_limit == 6 * 230 * 3
    await cp.start_transaction()
    await until(lambda: cs.snapshot().session("cp1") is not None)
    out = await cs.set_limit(SetLimit(charger_id="cp1", limit_a=16.0, phases=3))
    assert out.ok
    assert out.unit == "W"
    assert out.sent_limit == 16 * 230 * 3
    assert cp.received[-1].unit == "W"
    assert cp.offered_a() == pytest.approx(16.0)
    # GetCompositeSchedule verifies what the charger applies, in its own unit.
    assert await cs.composite_limit("cp1") == pytest.approx(16 * 230 * 3)
    await cp.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_rounding_pause_and_minimum(cs: CentralSystem, clock: VirtualClock,
                                          protocol: str) -> None:
    cp = await join(cs, "cp1", protocol, clock)
    await cp.start_transaction()
    whole = await join(cs, "whole", protocol, clock)
    await whole.start_transaction()
    await until(lambda: cs.snapshot().session("whole") is not None
                and cs.snapshot().session("cp1") is not None)
    out = await cs.set_limit(SetLimit(charger_id="cp1", limit_a=12.37, phases=3))
    assert out.sent_limit == 12.3  # 0.1 A steps, rounded down (never above the decision)
    out = await cs.set_limit(SetLimit(charger_id="cp1", limit_a=0.0, phases=3))
    assert out.sent_limit == 0.0
    assert cp.offered_a() == 0.0
    out = await cs.set_limit(SetLimit(charger_id="whole", limit_a=12.9, phases=3))
    assert out.sent_limit == 12.0  # a whole-amp charger
    out = await cs.set_limit(SetLimit(charger_id="whole", limit_a=0.0, phases=3))
    assert out.sent_limit == 6.0  # cannot pause: its minimum
    for c in (cp, whole):
        await c.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_phase_rotation_and_units(cs: CentralSystem, clock: VirtualClock,
                                        protocol: str) -> None:
    # A single-phase car on charger terminal L1, wired to the site's L2; energy in kWh.
    cp = await join(cs, "rot", protocol, clock, energy_unit="kWh",
                    ev=EvSpec(phases=1, reaction_s=0.0, max_current_a=32.0))
    await cp.start_transaction()
    await until(lambda: cs.snapshot().session("rot") is not None)
    assert (await cs.set_limit(SetLimit(charger_id="rot", limit_a=20.0, phases=1))).ok
    clock.advance(3600)
    await cp.meter_values()
    await until(lambda: cs.snapshot().state("rot").measured_current_a is not None)  # type: ignore[union-attr]
    st = cs.snapshot().state("rot")
    assert st is not None
    assert st.measured_current_a == (0.0, 20.0, 0.0)
    assert st.power_w == pytest.approx(20 * 230)
    assert st.energy_wh == pytest.approx(20 * 230, rel=0.01)  # reported in kWh, stored in Wh
    assert st.active_phases == 1
    await cp.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_resume_from_suspended_evse_reasserts(cs: CentralSystem, clock: VirtualClock,
                                                    protocol: str) -> None:
    cp = await join(cs, "cp1", protocol, clock)
    await cp.start_transaction()
    await until(lambda: cs.snapshot().session("cp1") is not None)
    assert (await cs.set_limit(SetLimit(charger_id="cp1", limit_a=14.0, phases=3))).ok
    cp.received.clear()
    if protocol == "1.6":
        await cp.status("SuspendedEVSE")
        await cp.status("Charging")
    else:
        await cp.charging_state("SuspendedEVSE")
        await cp.charging_state("Charging")
    await until(lambda: any(p.purpose == "TxProfile" for p in cp.received))
    assert cp.received[-1].limit == 14.0
    await cp.close()


async def test_v201_charging_needs_and_external_limit(cs: CentralSystem,
                                                      clock: VirtualClock) -> None:
    cp = await join(cs, "cp1", "2.0.1", clock)
    await cp.start_transaction()
    await until(lambda: cs.snapshot().session("cp1") is not None)
    res = await cp.ev_needs(departure_s=T0 + 4 * 3600, energy_wh=30_000, max_current_a=16)
    assert res.status == "Accepted"
    s = cs.snapshot().session("cp1")
    assert s is not None
    assert s.departure_s == T0 + 4 * 3600
    assert s.energy_wanted_wh == 30_000
    assert s.vehicle_max_current_a == 16

    await cp.external_limit(10.0)
    assert cs.snapshot().hard_caps_a == {"cp1": 10.0}
    out = await cs.set_limit(SetLimit(charger_id="cp1", limit_a=25.0, phases=3))
    assert out.ok
    assert out.sent_limit == 10.0
    await cp.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_charger_offering_more_than_it_confirmed_is_flagged(
        cs: CentralSystem, clock: VirtualClock, protocol: str,
        caplog: pytest.LogCaptureFixture) -> None:
    cp = await join(cs, "cp1", protocol, clock, ignores_limit=True)
    await cp.start_transaction()
    await until(lambda: cs.snapshot().session("cp1") is not None)
    assert (await cs.set_limit(SetLimit(charger_id="cp1", limit_a=10.0, phases=3))).ok
    clock.advance(5)
    await cp.meter_values()
    await until(lambda: cs.snapshot().state("cp1").offered_current_a is not None)  # type: ignore[union-attr]
    st = cs.snapshot().state("cp1")
    assert st is not None
    assert st.installed_limit_a == 10.0
    assert st.offered_current_a == 32.0
    assert st.measured_current_a == (32.0, 32.0, 32.0)  # what the controller will count
    assert "offers 32.0 A although it confirmed a 10.0 A limit" in caplog.text
    # It may have lost the profile: the limit went out again (once per episode).
    await until(lambda: len([p for p in cp.received if p.purpose == "TxProfile"]) >= 2)
    await cp.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_limit_verified_by_composite_schedule_without_offered_reports(
        cs: CentralSystem, clock: VirtualClock, protocol: str,
        caplog: pytest.LogCaptureFixture) -> None:
    good = await join(cs, "cp1", protocol, clock, reports_offered=False)
    bad = await join(cs, "cp2", protocol, clock, reports_offered=False, ignores_limit=True)
    for cp in (good, bad):
        await cp.start_transaction()
    await until(lambda: cs.snapshot().session("cp2") is not None
                and cs.snapshot().session("cp1") is not None)
    for cp_id in ("cp1", "cp2"):
        assert (await cs.set_limit(SetLimit(charger_id=cp_id, limit_a=10.0, phases=3))).ok
    # Neither has reported Current.Offered: each is asked once what it applies.
    await until(lambda: good.composite_requests == 1 and bad.composite_requests == 1)
    await until(lambda: len([p for p in bad.received if p.purpose == "TxProfile"]) == 2)
    assert "cp2: applies 32 A although it accepted 10 A" in caplog.text
    assert "cp1: applies" not in caplog.text
    assert [p.limit for p in good.received if p.purpose == "TxProfile"] == [10.0]
    # Once per connection, not per limit.
    assert (await cs.set_limit(SetLimit(charger_id="cp1", limit_a=9.0, phases=3))).ok
    await asyncio.sleep(0.05)
    assert good.composite_requests == 1
    for cp in (good, bad):
        await cp.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_paused_car_is_reported_suspended_and_resumes(
        cs: CentralSystem, clock: VirtualClock, protocol: str) -> None:
    cp = await join(cs, "cp1", protocol, clock)
    await cp.start_transaction()
    await until(lambda: cs.snapshot().session("cp1") is not None)

    def status() -> ChargerStatus:
        st = cs.snapshot().state("cp1")
        assert st is not None
        return st.status

    assert status() is ChargerStatus.CHARGING
    assert (await cs.set_limit(SetLimit(charger_id="cp1", limit_a=0.0, phases=3))).ok
    await until(lambda: status() is ChargerStatus.SUSPENDED_EVSE)  # the charger says so
    cp.received.clear()
    assert (await cs.set_limit(SetLimit(charger_id="cp1", limit_a=10.0, phases=3))).ok
    await until(lambda: status() is ChargerStatus.CHARGING)
    # SuspendedEVSE -> Charging: the central system re-asserted the live limit.
    await until(lambda: [p.limit for p in cp.received if p.purpose == "TxProfile"] == [10.0,
                                                                                    10.0])
    await cp.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_restarted_central_system_learns_the_running_transaction_at_once(
        clock: VirtualClock, protocol: str) -> None:
    settings = OcppSection(host="127.0.0.1", port=0, min_write_interval_s=0, call_timeout_s=5)
    options = LinkOptions(boot_wait_s=0.1)
    async with CentralSystem(site=make_site(), settings=settings, clock=clock,
                             options=options) as first:
        cp = await join(first, "cp1", protocol, clock)
        tx = await cp.start_transaction()
        port = first.port
    # The first process is gone; a new one listens on the same port. The charger reconnects
    # without rebooting and says nothing by itself: the new one asks (TriggerMessage).
    again = settings.model_copy(update={"port": port})
    async with CentralSystem(site=make_site(), settings=again, clock=clock,
                             options=options) as second:
        await cp.reconnect(f"ws://127.0.0.1:{port}/ocpp")
        await second.wait_ready("cp1")
        await until(lambda: second.snapshot().session("cp1") is not None)
        assert second.snapshot().session("cp1").session_id == f"cp1:{tx}"  # type: ignore[union-attr]
        await until(lambda: second.snapshot().state("cp1").status  # type: ignore[union-attr]
                    is ChargerStatus.CHARGING)
        # ... so the first live limit is a TxProfile for that transaction.
        assert (await second.set_limit(SetLimit(charger_id="cp1", limit_a=12.0,
                                                phases=3))).purpose is ProfilePurpose.TX
        assert cp.received[-1].transaction_id == tx
        await cp.close()


async def test_a_charger_not_yet_joined_is_offline_since_the_start(
        cs: CentralSystem, clock: VirtualClock) -> None:
    clock.advance(30)
    st = cs.snapshot().state("cp3")
    assert st is not None
    assert not st.online
    assert st.t_s == T0  # dated when the central system started, not 1970


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_heartbeat_authorize_and_data_transfer_answered(
        cs: CentralSystem, clock: VirtualClock, protocol: str) -> None:
    from ampshare.adapters.ocpp._lib import call as ocpp_call

    if protocol == "1.6":
        from ocpp.v16 import call
        auth: Any = call.Authorize(id_tag="TAG1")
        data: Any = call.DataTransfer(vendor_id="com.example", data="x")
    else:
        from ocpp.v201 import call  # type: ignore[no-redef]
        auth = call.Authorize(id_token={"id_token": "TAG1", "type": "ISO14443"})
        data = call.DataTransfer(vendor_id="com.example", data="x")
    cp = await join(cs, "cp1", protocol, clock)
    beat = await ocpp_call(cp, call.Heartbeat())
    assert beat.current_time.startswith("2023-11-14T22:13:20")  # the central system's clock
    res = await ocpp_call(cp, auth)
    info = res.id_tag_info if protocol == "1.6" else res.id_token_info
    assert info["status"] == "Accepted"
    assert (await ocpp_call(cp, data)).status == "UnknownVendorId"  # declined, politely
    await cp.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_second_connection_of_an_id_replaces_the_first(
        cs: CentralSystem, clock: VirtualClock, protocol: str) -> None:
    first = await join(cs, "cp1", protocol, clock)
    second = await connect_sim(url(cs), "cp1", protocol, clock=clock)
    await until(first.run_task.done)  # the stale socket was closed by the server
    await second.start_transaction()
    await until(lambda: cs.snapshot().session("cp1") is not None)
    assert (await cs.set_limit(SetLimit(charger_id="cp1", limit_a=11.0, phases=3))).ok
    assert second.offered_a() == 11.0
    assert cs.connected() == frozenset({"cp1"})
    await second.close()


async def test_writes_are_rate_limited_but_decreases_are_not(clock: VirtualClock) -> None:
    settings = OcppSection(host="127.0.0.1", port=0, min_write_interval_s=0.3)
    async with CentralSystem(site=make_site(), settings=settings, clock=clock,
                             options=LinkOptions(boot_wait_s=0.1)) as server:
        cp = await join(server, "cp1", "1.6", clock)
        await cp.start_transaction()
        await until(lambda: server.snapshot().session("cp1") is not None)
        loop = asyncio.get_running_loop()
        assert (await server.set_limit(SetLimit(charger_id="cp1", limit_a=10.0, phases=3))).ok
        t0 = loop.time()
        down = await server.set_limit(SetLimit(charger_id="cp1", limit_a=8.0, phases=3))
        assert down.ok
        assert loop.time() - t0 < 0.25  # a decrease goes out at once
        # Two increases in quick succession: the first waits its turn, the second replaces it.
        first, second = await asyncio.gather(
            server.set_limit(SetLimit(charger_id="cp1", limit_a=12.0, phases=3)),
            server.set_limit(SetLimit(charger_id="cp1", limit_a=14.0, phases=3)))
        assert loop.time() - t0 >= 0.29
        assert first.status is OutcomeStatus.SUPERSEDED
        assert second.ok
        assert cp.offered_a() == 14.0
        assert [p.limit for p in cp.received if p.purpose == "TxProfile"] == [10.0, 8.0, 14.0]
        await cp.close()
