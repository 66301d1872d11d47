"""MQTT: meter input, state publishing, Home Assistant discovery and commands, against Mosquitto.

Uses the local broker on 127.0.0.1:1883 when one runs, otherwise starts ``mosquitto`` on a free
port; skips only when no broker runs and the binary is absent. Every test uses its own topics.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import aiomqtt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ampshare.adapters.meters import MqttMeter, Quantity, TopicValue, check_conformance
from ampshare.adapters.meters._mqtt import extract_value
from ampshare.adapters.mqtt import (
    ChargerView,
    MqttBridge,
    NodeView,
    SessionCommand,
    SiteView,
    apply_command,
    discovery_messages,
    parse_command,
    site_view,
)
from ampshare.clock import VirtualClock
from ampshare.config import load_site
from ampshare.control import (
    CommandAck,
    ControlInputs,
    ControlSettings,
    SetLimit,
    initial_state,
    step,
)
from ampshare.core.allocation import Policy, PolicyName
from ampshare.core.snapshot import ChargerState, ChargerStatus, MeterReading, Session
from ampshare.errors import DeviceProtocolError, DeviceUnavailable, InputError

Q = Quantity
Broker = tuple[str, int]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    if _listening(1883):
        yield ("127.0.0.1", 1883)
        return
    exe = shutil.which("mosquitto")
    if exe is None:
        pytest.skip("no MQTT broker on 127.0.0.1:1883 and no mosquitto binary to start one")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([exe, "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if _listening(port):
                break
            proc.poll()
            if proc.returncode is not None:
                pytest.fail(f"mosquitto exited with {proc.returncode}")
            time.sleep(0.05)
        yield ("127.0.0.1", port)
    finally:
        proc.terminate()
        proc.wait(5)


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


async def _publish(broker: Broker, topic: str, payload: str, retain: bool = False) -> None:
    async with aiomqtt.Client(broker[0], broker[1]) as c:
        await c.publish(topic, payload, qos=1, retain=retain)


async def _until(cond: Callable[[], bool], timeout_s: float = 3.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not cond():
            await asyncio.sleep(0.01)


# --- meter input -----------------------------------------------------------------------------

def test_value_paths() -> None:
    shelly = b'{"id":0,"a_current":12.5,"b_current":0.9,"total_act_power":3012.4}'
    assert extract_value(shelly, "/a_current") == 12.5
    assert extract_value(b'{"SML":{"Power_curr":417}}', "/SML/Power_curr") == 417.0
    assert extract_value(b'{"a/b":{"x~y":[1, 2.5]}}', "/a~1b/x~0y/1") == 2.5
    assert extract_value(b"230.4", "") == 230.4
    assert extract_value(b'"7.5"', "") == 7.5  # Home Assistant states arrive as strings
    for bad, ptr in [(b"unavailable", ""), (b'{"a":1}', "/b"), (b'{"a":true}', "/a"),
                     (b'{"a":[1]}', "/a/x")]:
        with pytest.raises(DeviceProtocolError):
            extract_value(bad, ptr)


@settings(max_examples=100, deadline=None)
@given(st.one_of(st.binary(max_size=64), st.recursive(
           st.one_of(st.none(), st.booleans(), st.floats(), st.integers(), st.text(max_size=8)),
           lambda inner: st.one_of(st.lists(inner, max_size=3),
                                   st.dictionaries(st.text(max_size=4), inner, max_size=3)),
           max_leaves=10).map(lambda doc: json.dumps(doc).encode())),
       st.one_of(st.just(""), st.text(alphabet="/ab01~", max_size=8)))
def test_any_payload_gives_a_number_or_our_error(payload: bytes, pointer: str) -> None:
    try:
        value = extract_value(payload, pointer)
    except DeviceProtocolError:
        return
    assert isinstance(value, float)


def test_a_deeply_nested_payload_is_our_error() -> None:
    with pytest.raises(DeviceProtocolError):
        extract_value(b"[" * 100_000 + b"]" * 100_000, "/0")


def _shelly(prefix: str, clock: VirtualClock, broker: Broker) -> MqttMeter:
    topic = f"{prefix}/shellypro3em/status/em:0"
    values = [TopicValue(quantity=q, topic=topic, pointer=p) for q, p in [
        (Q.CURRENT_L1, "/a_current"), (Q.CURRENT_L2, "/b_current"), (Q.CURRENT_L3, "/c_current"),
        (Q.POWER, "/total_act_power")]]
    return MqttMeter("shelly", host=broker[0], port=broker[1], values=values, clock=clock)


def _em(a: float, b: float, c: float, p: float) -> str:
    return json.dumps({"id": 0, "a_current": a, "b_current": b, "c_current": c,
                       "a_voltage": 230.1, "total_act_power": p})


async def test_shelly_pro_3em_json_topic(broker: Broker, prefix: str) -> None:
    clock = VirtualClock(1000.0)
    topic = f"{prefix}/shellypro3em/status/em:0"
    await _publish(broker, topic, _em(10.0, 5.5, 1.0, 3800.0), retain=True)
    meter = _shelly(prefix, clock, broker)
    try:
        r = await meter.read()
        assert r.current_a == (10.0, 5.5, 1.0)
        assert (r.power_w, r.t_s) == (3800.0, 1000.0)
        clock.advance(2.0)
        await _publish(broker, topic, _em(16.0, 5.5, 1.0, 5200.0))
        await _until(lambda: meter._latest[Q.POWER].value == 5200.0)
        r = await meter.read()
        assert r.current_a == (16.0, 5.5, 1.0)
        assert r.t_s == 1002.0
    finally:
        await meter.close()
        await _publish(broker, topic, "", retain=True)  # clear the retained message


async def test_plain_number_topics_age_with_the_oldest(broker: Broker, prefix: str) -> None:
    # Home Assistant statestream / zigbee2mqtt style: one number per topic, kW scaled to W.
    clock = VirtualClock(0.0)
    values = [TopicValue(quantity=Q.CURRENT_L1, topic=f"{prefix}/l1"),
              TopicValue(quantity=Q.POWER, topic=f"{prefix}/p", scale=1000.0)]
    meter = MqttMeter("ha", host=broker[0], port=broker[1], values=values, clock=clock,
                      first_message_s=0.3)
    try:
        with pytest.raises(DeviceUnavailable, match="nothing received"):
            await meter.read()
        await _publish(broker, f"{prefix}/l1", "8.25")
        await _until(lambda: meter._latest[Q.CURRENT_L1].value is not None)
        clock.advance(10.0)
        await _publish(broker, f"{prefix}/p", "1.9")
        await _until(lambda: meter._latest[Q.POWER].value is not None)
        r = await meter.read()
        assert r.current_a == (8.25, None, None)
        assert r.power_w == pytest.approx(1900.0)
        assert r.t_s == 0.0  # the L1 value is 10 s old, so the reading is too
    finally:
        await meter.close()


async def test_garbage_payload_then_recovery(broker: Broker, prefix: str) -> None:
    clock = VirtualClock(5.0)
    topic = f"{prefix}/shellypro3em/status/em:0"
    meter = _shelly(prefix, clock, broker)
    try:
        first = asyncio.create_task(meter.read())
        await _until(lambda: meter.connected)
        await _publish(broker, topic, _em(1.0, 1.0, 1.0, 100.0))
        await first
        await _publish(broker, topic, '{"a_current": "n/a"}')
        await _until(lambda: meter._latest[Q.CURRENT_L1].error is not None)
        with pytest.raises(DeviceProtocolError, match="not a number"):
            await meter.read()
        await _publish(broker, topic, _em(2.0, 1.0, 1.0, 1e12))  # absurd power
        await _until(lambda: "plausible" in str(meter._latest[Q.POWER].error))
        with pytest.raises(DeviceProtocolError, match="plausible"):
            await meter.read()
        await _publish(broker, topic, _em(3.0, 1.0, 1.0, 700.0))
        await _until(lambda: meter._latest[Q.POWER].value == 700.0)
        assert (await meter.read()).current_a == (3.0, 1.0, 1.0)
    finally:
        await meter.close()


async def test_no_broker_is_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    meter = MqttMeter("x", host="127.0.0.1", port=port, clock=VirtualClock(),
                      values=[TopicValue(quantity=Q.POWER, topic="x/p")], first_message_s=0.3)
    with pytest.raises(DeviceUnavailable, match="MQTT broker"):
        await meter.read()
    await meter.close()


async def test_mqtt_meter_conforms(broker: Broker, prefix: str) -> None:
    topic = f"{prefix}/shellypro3em/status/em:0"
    await _publish(broker, topic, _em(4.0, 4.0, 4.0, 2700.0), retain=True)
    clock = VirtualClock(77.0)
    try:
        assert await check_conformance(_shelly(prefix, clock, broker), clock) == []
    finally:
        await _publish(broker, topic, "", retain=True)


# --- commands and discovery (pure) -----------------------------------------------------------

NOW = datetime(2026, 11, 22, 14, 0, tzinfo=UTC).timestamp()


def test_parse_commands() -> None:
    [dep] = parse_command("p", "p/charger/cp-1/set/departure", b"2026-11-22T17:30+01:00", NOW)
    assert dep == SessionCommand(charger_id="cp-1", field="departure",
                                 value=NOW + 2.5 * 3600, received_s=NOW)
    [e] = parse_command("p", "p/charger/cp-1/set/energy_kwh", "22.5", NOW)
    assert e.value == 22_500.0
    many = parse_command("p", "p/charger/cp-2/set", '{"priority": 2, "departure": null}', NOW)
    assert [(c.field, c.value) for c in many] == [("priority", 2.0), ("departure", None)]


@pytest.mark.parametrize(("topic", "payload", "text"), [
    ("p/charger/c/set/departure", "2026-11-22T17:30", "no UTC offset"),
    ("p/charger/c/set/departure", "2026-11-22T13:00Z", "not in the future"),
    ("p/charger/c/set/departure", "soon", "not a time"),
    ("p/charger/c/set/energy_kwh", "-3", "outside"),
    ("p/charger/c/set/priority", "1.5", "whole number"),
    ("p/charger/c/set/colour", "red", "unknown field"),
    ("p/charger/c/set", "[1]", "JSON object"),
    ("p/site/set", "1", "not a command topic"),
])
def test_bad_commands_say_why(topic: str, payload: str, text: str) -> None:
    with pytest.raises(InputError, match=text):
        parse_command("p", topic, payload, NOW)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(["p/charger/c/set", "p/charger/c/set/departure",
                        "p/charger/c/set/energy_kwh", "p/charger/c/set/priority",
                        "p/charger/c/set/x", "p/charger//set", "p/other"]),
       st.one_of(st.binary(max_size=40), st.text(max_size=40).map(str.encode),
                 st.dictionaries(st.sampled_from(["departure", "energy_kwh", "priority", "x"]),
                                 st.one_of(st.none(), st.floats(), st.integers(), st.text(
                                     max_size=30), st.lists(st.integers(), max_size=2)),
                                 max_size=3).map(lambda d: json.dumps(d).encode())))
def test_any_command_message_is_commands_or_input_error(topic: str, payload: bytes) -> None:
    try:
        commands = parse_command("p", topic, payload, NOW)
    except InputError:
        return
    for c in commands:
        assert c.field in ("departure", "energy_kwh", "priority")
        assert c.value is None or (c.value == c.value and abs(c.value) != float("inf"))
        if c.field == "departure" and c.value is not None:
            assert c.value > NOW


def test_a_deeply_nested_command_is_refused() -> None:
    with pytest.raises(InputError, match="not JSON"):
        parse_command("p", "p/charger/c/set", b"[" * 100_000 + b"]" * 100_000, NOW)


def test_apply_command_changes_only_its_field() -> None:
    s = Session(session_id="s1", charger_id="c", arrival_s=NOW - 60, energy_wanted_wh=5000.0)
    s2 = apply_command(s, SessionCommand(charger_id="c", field="priority", value=3.0,
                                         received_s=NOW))
    s3 = apply_command(s2, SessionCommand(charger_id="c", field="energy_kwh", value=None,
                                          received_s=NOW))
    assert (s2.priority, s2.energy_wanted_wh) == (3, 5000.0)
    assert (s3.priority, s3.energy_wanted_wh) == (3, None)
    assert s.priority == 0


def test_discovery_entities_are_unique_and_linked() -> None:
    msgs = discovery_messages(prefix="ampshare/home", site_id="home", site_name="Home",
                              nodes=[("main", "Main fuse")],
                              chargers=[("cp-1", "Drive"), ("cp 2", "")])
    configs = [json.loads(m.payload) for m in msgs]
    assert len(configs) == 1 + 4 + 2 * 8
    assert len({c["unique_id"] for c in configs}) == len(configs)
    assert all(c["availability_topic"] == "ampshare/home/status" for c in configs)
    limit = next(c for c in configs if c["unique_id"] == "ampshare_home_cp-1_limit_a")
    assert limit["state_topic"] == "ampshare/home/charger/cp-1/state"
    assert limit["device"]["via_device"] == "ampshare_home"
    assert limit["unit_of_measurement"] == "A"
    prio = next(c for c in configs if c["unique_id"] == "ampshare_home_cp_2_priority")
    assert prio["command_topic"] == "ampshare/home/charger/cp_2/set/priority"
    assert all(m.retain for m in msgs)
    assert msgs[0].topic == "homeassistant/sensor/ampshare_home/site_headroom/config"


def test_site_view_from_a_real_control_step() -> None:
    site = load_site(Path(__file__).resolve().parents[1] / "examples" / "home-modbus-meter.yaml")
    settings = ControlSettings()
    inputs = ControlInputs(
        readings=(MeterReading(meter_id="house", t_s=100.0, current_a=(20.0, 8.0, 8.0)),),
        charger_states=(
            ChargerState(charger_id="drive-left", t_s=100.0, status=ChargerStatus.CHARGING,
                         measured_current_a=(10.0, 10.0, 10.0), power_w=6900.0),
            ChargerState(charger_id="drive-right", t_s=100.0, status=ChargerStatus.AVAILABLE)),
        sessions=(Session(session_id="s1", charger_id="drive-left", arrival_s=50.0),))
    policy = Policy(name=PolicyName.EQUAL)
    first = step(site, settings, policy, initial_state(site, settings), inputs, 100.0)
    [main] = site_view(site, first).nodes
    # Until drive-right acknowledges its 0 A hold, a car plugging in there would get its 6 A
    # fallback at once: house 10 A on L1 (20 measured - 10 EV) + 6 A reserved + 16 A allocated.
    assert main.line_current_a == pytest.approx((32.0, 22.0, 22.0))
    assert main.headroom_a == pytest.approx(0.0)
    hold = next(c for c in first.commands
                if isinstance(c, SetLimit) and c.charger_id == "drive-right")
    assert hold.limit_a == 0.0
    acked = ControlInputs(acks=(CommandAck(charger_id="drive-right", t_s=100.5, limit_a=0.0,
                                           lease_until_s=hold.lease_until_s),))
    result = step(site, settings, policy, first.state, acked, 101.0)
    view = site_view(site, result)
    [main] = view.nodes
    # Held at 0 A: the reserve is released. House 10 A + 16 A allocated = 26 A of 35 - 3 margin.
    assert main.line_current_a == pytest.approx((26.0, 16.0, 16.0))
    assert view.headroom_a == main.headroom_a == pytest.approx(6.0)
    left, right = view.chargers
    assert (left.limit_a, left.current_a, left.status) == (16.0, 10.0, "Charging")
    assert left.reason
    assert (right.limit_a, right.status) == (0.0, "Available")
    assert "idle" in right.reason


# --- the bridge against Mosquitto --------------------------------------------------------------

@pytest.fixture
async def watcher(broker: Broker, prefix: str) -> AsyncIterator[dict[str, str]]:
    seen: dict[str, str] = {}
    async with aiomqtt.Client(broker[0], broker[1]) as c:
        await c.subscribe(f"{prefix}/#")
        await c.subscribe(f"ha-{prefix}/#")

        async def collect() -> None:
            async for m in c.messages:
                seen[str(m.topic)] = m.payload.decode() if isinstance(m.payload, bytes) else ""

        task = asyncio.create_task(collect())
        yield seen
        task.cancel()


async def test_bridge_publishes_discovery_state_and_takes_commands(
    broker: Broker, prefix: str, watcher: dict[str, str]
) -> None:
    clock = VirtualClock(NOW)
    got: list[SessionCommand] = []
    rejected: list[InputError] = []
    bridge = MqttBridge(host=broker[0], port=broker[1], site_id="home", site_name="Home",
                        nodes=[("main", "Main")], chargers=[("cp-1", "Drive")], clock=clock,
                        on_command=got.append, on_rejected=rejected.append, prefix=prefix,
                        discovery_prefix=f"ha-{prefix}")
    task = asyncio.create_task(bridge.run())
    try:
        await asyncio.wait_for(bridge.connected.wait(), 3.0)
        await _until(lambda: watcher.get(f"{prefix}/status") == "online")
        assert f"ha-{prefix}/sensor/ampshare_home/cp-1_limit_a/config" in watcher
        view = SiteView(t_s=NOW, headroom_a=14.5,
                        nodes=(NodeView(node_id="main", line_current_a=(20.0, 9.5, None),
                                        headroom_a=14.5),),
                        chargers=(ChargerView(charger_id="cp-1", limit_a=16.0, current_a=15.8,
                                              power_w=10_900.0, status="Charging",
                                              reason="circuit main, line L1"),))
        assert await bridge.publish_state(view)
        await _until(lambda: f"{prefix}/charger/cp-1/state" in watcher)
        state = json.loads(watcher[f"{prefix}/charger/cp-1/state"])
        assert state == {"limit_a": 16.0, "current_a": 15.8, "power_w": 10900.0,
                         "status": "Charging", "reason": "circuit main, line L1"}
        node = json.loads(watcher[f"{prefix}/node/main/state"])
        assert (node["l1_a"], node["l3_a"]) == (20.0, None)
        await _publish(broker, f"{prefix}/charger/cp-1/set/energy_kwh", "30")
        await _publish(broker, f"{prefix}/charger/cp-1/set/priority", "high")
        await _until(lambda: bool(got) and bool(rejected))
        assert got == [SessionCommand(charger_id="cp-1", field="energy_kwh", value=30_000.0,
                                      received_s=NOW)]
        assert "not a number" in str(rejected[0])
    finally:
        bridge.stop()
        await asyncio.wait_for(task, 5.0)
    await _until(lambda: watcher.get(f"{prefix}/status") == "offline")
    async with aiomqtt.Client(broker[0], broker[1]) as c:  # leave no retained clutter behind
        for topic in list(watcher):
            await c.publish(topic, "", retain=True)


async def test_bridge_without_broker_retries_quietly() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    bridge = MqttBridge(host="127.0.0.1", port=port, site_id="x", site_name="x", nodes=[],
                        chargers=[], clock=VirtualClock(), on_command=lambda c: None,
                        reconnect_s=0.05)
    task = asyncio.create_task(bridge.run())
    await asyncio.sleep(0.2)
    view = SiteView(t_s=0.0, headroom_a=None)
    assert not await bridge.publish_state(view)
    assert not task.done()
    bridge.stop()
    await asyncio.wait_for(task, 2.0)


async def test_a_failing_command_handler_does_not_end_the_bridge(
    broker: Broker, prefix: str
) -> None:
    """A fault behind the handler (a store that is down, a bug) loses that command only: the
    bridge keeps listening, and the next command arrives."""
    got: list[SessionCommand] = []

    def handler(cmd: SessionCommand) -> None:
        if not got:
            got.append(cmd)
            raise RuntimeError("store went away")
        got.append(cmd)

    bridge = MqttBridge(host=broker[0], port=broker[1], site_id="home", site_name="Home",
                        nodes=[], chargers=[("cp-1", "Drive")], clock=VirtualClock(NOW),
                        on_command=handler, prefix=prefix, discovery_prefix=f"ha-{prefix}")
    task = asyncio.create_task(bridge.run())
    try:
        await asyncio.wait_for(bridge.connected.wait(), 3.0)
        await _publish(broker, f"{prefix}/charger/cp-1/set/energy_kwh", "30")
        await _until(lambda: len(got) == 1)
        await _publish(broker, f"{prefix}/charger/cp-1/set/energy_kwh", "40")
        await _until(lambda: len(got) == 2)
        assert got[1].value == 40_000.0
        assert bridge.connected.is_set()
        assert not task.done()
    finally:
        bridge.stop()
        await asyncio.wait_for(task, 5.0)
    async with aiomqtt.Client(broker[0], broker[1]) as c:  # leave no retained clutter behind
        for topic in (f"{prefix}/status",):
            await c.publish(topic, "", retain=True)
