"""A stationary battery driven live from the plan (site file ``battery:``).

The pure part (``core.planner.battery_command``) bounds the plan's power by the instant: never
charging into headroom the cars have or need, never discharging beyond what the site draws,
never past the state-of-charge bounds. The controller never counts on a discharge
(``uncredited``). The Modbus driver is tested against pymodbus's server on loopback; the
supervisor with the shipped ``FakeBattery`` and a real planner.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType as SimType
from pymodbus.simulator import SimData, SimDevice

from ampshare.adapters.battery import FakeBattery, ModbusBattery
from ampshare.adapters.meters import FakeMeter
from ampshare.adapters.meters._registers import DataType, encode_value
from ampshare.adapters.ocpp import FakeChargerLink
from ampshare.app import Supervisor, SupervisorOptions
from ampshare.app._battery import LiveBattery
from ampshare.clock import SystemClock, VirtualClock
from ampshare.config import load_config, parse_config
from ampshare.config.sections import ModbusBatteryDriver
from ampshare.config.tariff_files import battery_from_section, planner_from_section
from ampshare.core.allocate import allocate
from ampshare.core.allocation import (
    AllocationInput,
    ChargerLimits,
    NodeHeadroom,
    NodeMeasurement,
    Policy,
    PolicyName,
)
from ampshare.core.planner import (
    Battery,
    BatteryCommand,
    Plan,
    PlanStatus,
    battery_command,
    ev_gap_w,
    planned_battery_w,
    spare_power_w,
    uncredited,
)
from ampshare.core.snapshot import MeterReading, Session
from ampshare.errors import ConfigError, DeviceProtocolError, DeviceUnavailable
from test_run_modbus import _until

BAT = Battery(
    capacity_wh=20_000.0,
    max_charge_w=5_000.0,
    max_discharge_w=5_000.0,
    soc_wh=2_000.0,
    min_soc_wh=2_000.0,
    max_soc_wh=18_000.0,
)
SITE = """
nodes: [{id: main, limit_a: 63}]
meters: [{id: house, node: main}]
"""


# --- the pure rules -------------------------------------------------------------------------
def _decide(**kw: object) -> BatteryCommand:
    """``battery_command`` on a half-full battery, 4 kW planned, room and import to spare,
    with ``kw`` changed."""
    args: dict[str, object] = {
        "planned_w": 4000.0,
        "battery": BAT,
        "soc_wh": 10_000.0,
        "power_w": 0.0,
        "spare_w": 10_000.0,
        "import_w": 8000.0,
    }
    args.update(kw)
    return battery_command(**args)  # type: ignore[arg-type]


def _cmd(**kw: object) -> float:
    return _decide(**kw).power_w


def test_the_plan_is_followed_where_the_instant_allows_it() -> None:
    assert _cmd() == 4000.0
    assert _cmd(planned_w=9000.0) == 5000.0  # its charge limit
    assert _cmd(spare_w=1500.0) == 1500.0  # the root's headroom after the cars
    assert _cmd(spare_w=1500.0, power_w=2000.0) == 3500.0  # what it draws is its own already
    assert _cmd(shortfall_w=3000.0, spare_w=5000.0) == 2000.0  # the cars' targets come first
    assert _cmd(planned_w=-4000.0) == -4000.0
    assert _cmd(planned_w=-4000.0, import_w=1000.0) == -1000.0  # no export
    assert _cmd(planned_w=-4000.0, import_w=0.0, power_w=-2500.0) == -2500.0  # keeps shaving
    # Above the held peak it discharges to bring the import back, whatever the plan said.
    assert _cmd(over_peak_w=3000.0) == -3000.0
    assert _cmd(over_peak_w=3000.0, planned_w=-4500.0) == -4500.0
    assert _cmd(over_peak_w=9000.0, import_w=2000.0) == -2000.0  # still no export


@pytest.mark.parametrize(
    ("kw", "reason"),
    [
        ({"soc_wh": None, "power_w": None}, "battery not read: idle"),
        ({"planned_w": None}, "no plan: idle"),
        ({"soc_wh": 18_000.0}, "full (top state of charge): idle"),
        ({"planned_w": -3000.0, "soc_wh": 2_000.0}, "empty (bottom state of charge): idle"),
        ({"planned_w": -3000.0, "import_w": None}, "site import not known: idle"),
        ({"spare_w": 0.0}, "no headroom at the root: idle"),
        ({"spare_w": 2000.0, "shortfall_w": 2500.0}, "the cars need the headroom: idle"),
        ({"planned_w": 20.0}, "planned idle"),
        ({"ceiling_room_w": 0.0}, "holding the site's demand peak: idle"),
        ({"over_peak_w": 2000.0, "soc_wh": 2_000.0}, "empty (bottom state of charge): idle"),
    ],
)
def test_the_battery_idles_and_says_why(kw: dict[str, object], reason: str) -> None:
    got = _decide(**kw)
    assert (got.power_w, got.reason) == (0.0, reason)


_w = st.floats(-20_000, 20_000, allow_nan=False)


@given(
    planned=st.one_of(st.none(), _w),
    soc=st.one_of(st.none(), st.floats(0, 20_000)),
    power=_w,
    spare=st.floats(0, 30_000),
    imported=st.one_of(st.none(), st.floats(-10_000, 30_000)),
    short=st.floats(0, 10_000),
    ceiling=st.one_of(st.none(), st.floats(-5_000, 30_000)),
    over=st.one_of(st.none(), st.floats(-5_000, 30_000)),
)
def test_a_command_never_leaves_its_bounds(
    planned: float | None,
    soc: float | None,
    power: float,
    spare: float,
    imported: float | None,
    short: float,
    ceiling: float | None,
    over: float | None,
) -> None:
    got = battery_command(
        planned_w=planned,
        battery=BAT,
        soc_wh=soc,
        power_w=None if soc is None else power,
        spare_w=spare,
        import_w=imported,
        shortfall_w=short,
        ceiling_room_w=ceiling,
        over_peak_w=over,
    ).power_w
    if got == 0.0:
        return
    assert soc is not None
    assert planned is not None
    shaving = over is not None and over >= 50.0
    if not shaving:  # the plan's direction, unless the import is above the held peak
        assert math.copysign(1.0, got) == math.copysign(1.0, planned)
    if got > 0:
        assert not shaving  # never charging above the held peak
        assert got <= min(planned, BAT.max_charge_w, spare + max(0.0, power) - short) + 1e-9
        assert ceiling is None or got <= ceiling + 1e-9  # never above the plan's peak
        assert soc < (BAT.max_soc_wh or BAT.capacity_wh)
    else:
        assert imported is not None
        asked = max(-planned, over) if shaving and over is not None else -planned
        assert -got <= min(asked, BAT.max_discharge_w, imported - power) + 1e-9  # no export
        assert soc > BAT.min_soc_wh


def test_a_discharge_is_added_back_to_the_root_meter() -> None:
    seen = MeterReading(
        meter_id="house",
        t_s=1.0,
        current_a=(10.0, 12.0, 8.0),
        power_w=6900.0,
        power_per_line_w=(2300.0, 2760.0, 1840.0),
    )
    back = uncredited(seen, 3450.0, 230.0)
    assert back.current_a == pytest.approx((15.0, 17.0, 13.0))
    assert back.power_w == pytest.approx(10350.0)
    assert back.power_per_line_w == pytest.approx((3450.0, 3910.0, 2990.0))
    assert uncredited(seen, 0.0, 230.0) is seen


def test_spare_power_and_shortfall() -> None:
    site = parse_config(SITE, name="s.yaml").site

    def root(headroom: tuple[float, float, float], *, stale: bool = False) -> NodeHeadroom:
        return NodeHeadroom(
            node_id="main",
            limit_a=(63.0,) * 3,
            other_load_a=(10.0,) * 3,
            ev_load_a=(0.0,) * 3,
            headroom_a=headroom,
            measured=True,
            stale=stale,
        )

    assert spare_power_w(site, [root((20.0, 10.0, 30.0))]) == pytest.approx(3 * 10.0 * 230.0)
    assert spare_power_w(site, [root((20.0, 10.0, 30.0), stale=True)]) == 0.0
    assert spare_power_w(site, []) == 0.0
    limits = ChargerLimits(["cp1", "cp2"], [6.0, 16.0], [3, 1], [None, None], None)  # type: ignore[list-item]
    short, extra = ev_gap_w(
        limits, {"s1": 10.0, "s2": 10.0, "s9": 8.0}, {"s1": "cp1", "s2": "cp2"}, 230.0
    )
    assert short == pytest.approx(4.0 * 3 * 230.0)  # s1 lacks 4 A on three phases
    assert extra == pytest.approx(6.0 * 1 * 230.0)  # s2 draws 6 A beyond, on one phase


def _plan(battery_kw: float, start_s: float) -> Plan:
    return Plan(
        status=PlanStatus.OPTIMAL,
        start_s=start_s,
        slot_s=900.0,
        n_slots=4,
        session_ids=(),
        current_a=np.zeros((0, 4)),
        sessions=(),
        grid_kw=np.zeros(4),
        battery_kw=np.full(4, battery_kw),
        peak_kw=0.0,
    )


async def test_a_planned_charge_takes_back_the_cars_extra_after_they_make_room() -> None:
    """Two cars get their 6 A targets and, using every amp, 5 A more each; the battery's plan
    wants 5 kW. The extra is the battery's by the plan: reserved first (the controller counts
    it as load and lowers the cars), sent once the reservation has stood the hold time."""
    config = parse_config(
        """
nodes: [{id: main, limit_a: 32}]
meters: [{id: house, node: main}]
chargers:
  - {id: cp1, node: main, max_a: 16, connection: 3p}
  - {id: cp2, node: main, max_a: 16, connection: 3p}
planner: {enabled: true, battery_capacity_kwh: 20, battery_max_charge_kw: 5,
          battery_max_discharge_kw: 5}
battery: {driver: {type: sim}}
""",
        name="s.yaml",
    )
    site = config.site
    clock = VirtualClock(10_000.0)
    model = battery_from_section(config.planner)
    assert config.battery is not None
    assert model is not None
    fake = FakeBattery("battery", clock, model, soc_pct=50.0)
    live = LiveBattery(fake, config.battery, model, site, clock, hold_s=7.0)
    live.latest = await fake.read()
    sessions = tuple(
        Session(session_id=f"s{i}", charger_id=f"cp{i}", arrival_s=0.0) for i in (1, 2)
    )
    targets = {"s1": 6.0, "s2": 6.0}
    alloc = allocate(
        AllocationInput(
            site=site,
            now_s=clock.now_s(),
            sessions=sessions,
            measurements=(NodeMeasurement(node_id="main", current_a=(10.0, 10.0, 10.0)),),
            policy=Policy(name=PolicyName.PLANNED, planned_targets_a=targets),
        )
    )
    assert list(alloc.limits.limit_a) == pytest.approx([11.0, 11.0])  # 6 A + 5 A extra each
    plan = _plan(5.0, clock.now_s())
    kw = {"targets_a": targets, "charger_of": {"s1": "cp1", "s2": "cp2"}}
    planned = planned_battery_w(plan, clock.now_s())
    assert planned == 5000.0
    cmd = live.driver.decide(clock.now_s(), planned, alloc, **kw)  # type: ignore[arg-type]
    assert cmd.power_w == 0.0
    assert "5000 W reserved, the cars make room first" in cmd.reason
    assert live.load_to_add_w(clock.now_s()) == pytest.approx(5000.0)  # counted as load now
    clock.advance(7.0)
    cmd = live.driver.decide(clock.now_s(), planned, alloc, **kw)  # type: ignore[arg-type]
    assert (cmd.power_w, cmd.reason) == (5000.0, "charging as planned")
    # A fall goes out at once.
    await live.send(cmd)
    lower = planned_battery_w(_plan(2.0, clock.now_s()), clock.now_s())
    cmd = live.driver.decide(clock.now_s(), lower, alloc, **kw)  # type: ignore[arg-type]
    assert cmd.power_w == 2000.0


# --- the fake and the config -----------------------------------------------------------------
async def test_the_fake_battery_moves_its_charge_and_stops_at_its_bounds() -> None:
    clock = VirtualClock(1000.0)
    fake = FakeBattery("b", clock, BAT, soc_pct=15.0)
    await fake.set_power(9000.0)  # above its limit: it charges at 5 kW
    clock.advance(3600.0)
    r = await fake.read()
    assert r.power_w == 5000.0
    assert r.soc_pct == pytest.approx(100 * (3000 + 5000 * 0.95) / 20_000)
    clock.advance(3 * 3600.0)  # it reaches the top and stops
    r = await fake.read()
    assert r.power_w == 0.0
    assert r.soc_pct >= 90.0


def test_a_battery_section_needs_its_model_and_a_planner() -> None:
    with pytest.raises(ConfigError, match=r"s.yaml:4: battery: a battery to drive needs"):
        parse_config(SITE + "battery: {driver: {type: sim}}\n", name="s.yaml")
    sized = "planner: {battery_capacity_kwh: 20, battery_max_charge_kw: 5, "
    sized += "battery_max_discharge_kw: 5}\n"
    with pytest.raises(ConfigError, match="no planner runs"):
        parse_config(SITE + sized + "battery: {driver: {type: sim}}\n", name="s.yaml")
    with pytest.raises(ConfigError, match=r"the root \(main\) has none"):
        parse_config(
            "nodes: [{id: main, limit_a: 63}]\n"
            + sized.replace("{", "{enabled: true, ", 1)
            + "battery: {driver: {type: sim}}\n",
            name="s.yaml",
        )
    bad = "battery: {driver: {type: modbus, host: h, soc_pct: {address: 1}, "
    bad += "power_w: {address: 2}, setpoint_w: {address: 3, function: input}}}\n"
    with pytest.raises(ConfigError, match="setpoint_w is written, so it is a holding register"):
        parse_config(SITE + sized.replace("{", "{enabled: true, ", 1) + bad, name="s.yaml")


# --- Modbus against pymodbus's server ------------------------------------------------------
async def _server(registers: list[int]) -> tuple[ModbusTcpServer, asyncio.Task[None], int]:
    device = SimDevice(
        id=1, simdata=[SimData(address=0, values=registers, datatype=SimType.REGISTERS)]
    )
    server = ModbusTcpServer([device], address=("127.0.0.1", 0))
    serving = asyncio.create_task(server.serve_forever())
    while server.transport is None:
        await asyncio.sleep(0.01)
    port = server.transport.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    return server, serving, port


async def test_modbus_battery_reads_and_writes_its_registers() -> None:
    regs = [0] * 20
    regs[0] = 735  # state of charge, u16 in 0.1 %
    regs[2:4] = encode_value(-3200, DataType.I32, "big")  # discharging 3.2 kW
    server, serving, port = await _server(regs)
    driver = ModbusBatteryDriver(
        host="127.0.0.1",
        port=port,
        timeout_s=0.5,
        retries=0,
        soc_pct={"address": 0, "type": "u16", "scale": 0.1},  # type: ignore[arg-type]
        power_w={"address": 2, "type": "i32"},  # type: ignore[arg-type]
        setpoint_w={"address": 10, "type": "i16", "scale": 10},  # type: ignore[arg-type]
    )
    bat = ModbusBattery("store", driver, VirtualClock(50.0))
    peer = AsyncModbusTcpClient("127.0.0.1", port=port)
    await peer.connect()
    try:
        r = await bat.read()
        assert (r.battery_id, r.t_s, r.soc_pct, r.power_w) == ("store", 50.0, 73.5, -3200.0)
        await bat.set_power(-2500.0)  # in 10 W steps: -250 in an i16
        got = await peer.read_holding_registers(10, count=1, device_id=1)
        assert got.registers == encode_value(-250, DataType.I16, "big")
        # A setpoint its register cannot hold is refused, and nothing is written.
        with pytest.raises(DeviceProtocolError, match=r"holds -32768\.\.32767"):
            await bat.set_power(400_000.0)
        got = await peer.read_holding_registers(10, count=1, device_id=1)
        assert got.registers == encode_value(-250, DataType.I16, "big")
        # A register the device does not have: an exception reply, named.
        far = driver.model_copy(
            update={"setpoint_w": driver.setpoint_w.model_copy(update={"address": 500})}
        )
        with pytest.raises(DeviceProtocolError, match="writing 1 registers at 500"):
            await ModbusBattery("store", far, VirtualClock(0.0)).set_power(100.0)
        # A state of charge outside 0-100 % is a wrong map, never a number passed on.
        peer_write = await peer.write_register(0, 1735, device_id=1)
        assert not peer_write.isError()
        with pytest.raises(DeviceProtocolError, match=r"173\.5 % is not within 0-100"):
            await bat.read()
    finally:
        peer.close()
        await bat.close()
        await server.shutdown()  # type: ignore[no-untyped-call]
        serving.cancel()
    with pytest.raises(DeviceUnavailable, match=r"battery store at 127\.0\.0\.1"):
        await bat.read()  # the server is gone


# --- the live loop ------------------------------------------------------------------------------
def _prices(path: Path) -> None:
    """Cheap until two whole hours from now, dear for a day after: worth storing."""
    h0 = int(time.time() // 3600) * 3600
    rows = ["timestamp_utc,price_eur_per_mwh"]
    for k in range(-2, 30):
        stamp = dt.datetime.fromtimestamp(h0 + k * 3600, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        rows.append(f"{stamp},{20 if k < 2 else 400}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


async def test_run_drives_the_battery_from_the_plan_and_never_counts_on_it(
    tmp_path: Path,
) -> None:
    """A 20 kWh battery at 10 %, power cheap for the next hour or two and dear after: the plan
    charges it now. The supervisor sends the plan's 5 kW (the root has the headroom), tells
    the planner its charge, adds any discharge back to the root meter for the controller,
    idles it while it cannot be read, and idles it on stop."""
    _prices(tmp_path / "prices.csv")
    path = tmp_path / "site.yaml"
    path.write_text(
        SITE
        + "control: {max_period_s: 0.2, ev_reaction_s: 0.5}\n"
        + "planner: {enabled: true, horizon_h: 6, replan_interval_s: 0.5, "
        "price_file: prices.csv, battery_capacity_kwh: 20, battery_max_charge_kw: 5, "
        "battery_max_discharge_kw: 5}\n"
        + "battery: {poll_s: 0.1, timeout_s: 0.5, driver: {type: sim}}\n",
        encoding="utf-8",
    )
    config = load_config(path)
    clock = SystemClock()
    model = battery_from_section(config.planner)
    assert model is not None
    fake = FakeBattery("battery", clock, model, soc_pct=10.0)
    meter = FakeMeter("house", clock, current_a=(10.0, 10.0, 10.0))
    sup = Supervisor(
        config,
        clock=clock,
        link=FakeChargerLink((), clock),
        meter_sources=[meter],
        options=SupervisorOptions(
            planner=planner_from_section(config.planner, config.site, tmp_path, str(path))
        ),
        battery_link=fake,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(sup.run(stop))

    def root_other() -> tuple[float | None, ...]:
        res = sup.last_result
        if res is None or res.allocation is None:
            return (None,)
        return next(h for h in res.allocation.headroom if h.node_id == "main").other_load_a

    try:
        assert sup.battery is not None
        battery = sup.battery
        # The plan charges now, at the battery's limit: the root has 53 A per line to spare.
        await _until(
            lambda: 5000.0 in fake.setpoints, 10.0, lambda: (fake.setpoints, battery.command)
        )
        assert battery.command.reason == "charging as planned"
        planner = sup.planner
        assert planner is not None
        assert planner.latest is not None
        assert planner.latest.battery_kw[0] == pytest.approx(5.0)
        # The controller counts the charge as load once the meter shows it (the fake meter
        # does not: the told charge is added until the battery shows it, which it does).
        meter.set(current_a=(10.0 + 5000 / 690, 10.0 + 5000 / 690, 10.0 + 5000 / 690))
        await _until(
            lambda: root_other()[0] == pytest.approx(10.0 + 5000 / 690, abs=0.05),
            3.0,
            lambda: (root_other(), battery.latest, battery.driver),
        )
        # A discharge is never counted on: 3 kW out of the battery (its own controller took
        # over and refuses our setpoints) and a meter 4.35 A lower per line: the controller
        # counts the 3 kW back as load, on top of the charge still reserved for the plan.
        fake.soc_wh = 10_000.0  # half full: it can go on discharging
        await fake.set_power(-3000.0)
        fake.fail(DeviceProtocolError("local mode (fake)"), writes_only=True)
        meter.set(current_a=(10.0 - 3000 / 690,) * 3)  # type: ignore[arg-type]

        def added_back() -> bool:
            r = battery.fresh(clock.now_s())
            add = battery.load_to_add_w(clock.now_s())
            return (
                r is not None
                and r.power_w == -3000.0
                and add >= 3000.0
                and root_other()[0] == pytest.approx(10.0 - 3000 / 690 + add / 690, abs=0.05)
            )

        await _until(added_back, 3.0, lambda: (root_other(), battery.load_to_add_w(clock.now_s())))
        # Not read: idled, and counted at its full 5 kW discharge.
        fake.recover()
        fake.fail()
        await _until(
            lambda: battery.command.reason == "battery not read: idle", 3.0, lambda: battery.command
        )
        await _until(
            lambda: root_other()[0] == pytest.approx(10.0 - 3000 / 690 + 5000 / 690, abs=0.05),
            3.0,
            root_other,
        )
        fake.recover()
        n = len(fake.setpoints)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert fake.setpoints[-1] == 0.0  # idled on stop
    assert len(fake.setpoints) > n


def test_the_readme_battery_section_is_valid() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = readme.split("**A stationary battery, driven live**", 1)[1]
    yaml = block.split("```yaml\n", 1)[1].split("```", 1)[0]
    sized = "planner: {enabled: true, battery_capacity_kwh: 20, battery_max_charge_kw: 5, "
    sized += "battery_max_discharge_kw: 5}\n"
    config = parse_config(SITE + sized + yaml, name="README.md")
    assert config.battery is not None
    driver = config.battery.driver
    assert isinstance(driver, ModbusBatteryDriver)
    assert (driver.soc_pct.address, driver.power_w.address, driver.setpoint_w.address) == (
        843,
        842,
        37,
    )


def test_check_describes_the_battery(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ampshare.cli._app import _register, app

    site = tmp_path / "site.yaml"
    site.write_text(
        SITE + "planner: {enabled: true, battery_capacity_kwh: 20, battery_max_charge_kw: 5, "
        "battery_max_discharge_kw: 7}\n" + "battery: {driver: {type: sim}}\n",
        encoding="utf-8",
    )
    _register()
    res = CliRunner().invoke(app, ["check", str(site)])
    assert res.exit_code == 0, res.output
    assert (
        "battery battery (sim) behind the root meter: 20 kWh, 5 kW in / 7 kW out, 10-90 %; "
        "driven from the plan" in res.output
    )
