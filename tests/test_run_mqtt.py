"""``ampshare run`` with an ``mqtt:`` section, against Mosquitto: the supervisor publishes
Home Assistant discovery and the site's state (rate-limited), and a departure command sent
over MQTT changes the session the controller works with (with and without the web store).

Uses the local broker on 127.0.0.1:1883 when one runs, otherwise starts ``mosquitto`` on a free
port; skips only when neither is possible. Every test uses its own topic prefixes.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import aiomqtt
import pytest

from ampshare.adapters.mqtt import SessionCommand
from ampshare.adapters.ocpp import CentralSystem, LinkOptions, SimOptions, connect_sim
from ampshare.app import Supervisor, SupervisorOptions
from ampshare.app._mqtt import SessionEdits, mqtt_password
from ampshare.config import load_config, parse_config
from ampshare.core.snapshot import Session
from ampshare.errors import ConfigError
from ampshare.sim.ev import EvSpec

Broker = tuple[str, int]

SITE = """
site: Mqtt garage
voltage: "230/400"
nodes:
  - id: main
    limit_a: 32
chargers:
  - {{id: cp1, node: main, max_a: 32}}
control:
  max_period_s: 0.1
  min_interval_s: 0.05
ocpp: {{host: 127.0.0.1, port: 0, min_write_interval_s: 0}}
web:
  host: 127.0.0.1
  port: {web_port}
  store_url: sqlite:///{db}
mqtt:
  host: {host}
  port: {port}
  prefix: {prefix}
  discovery_prefix: {disc}
  publish_interval_s: {interval}
"""


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    if _listening(1883):
        yield ("127.0.0.1", 1883)
        return
    exe = shutil.which("mosquitto")
    if exe is None:
        pytest.skip("no MQTT broker on 127.0.0.1:1883 and no mosquitto binary to start one")
    port = _free_port()
    proc = subprocess.Popen([exe, "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if _listening(port):
                break
            time.sleep(0.05)
        yield ("127.0.0.1", port)
    finally:
        proc.terminate()
        proc.wait(5)


async def until(cond: Callable[[], bool], timeout_s: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while not cond():
        assert loop.time() < end, "condition not reached in time"
        await asyncio.sleep(0.05)


def _site_file(tmp_path: Path, broker: Broker, interval_s: float) -> tuple[Path, str, str]:
    tag = uuid.uuid4().hex[:8]
    prefix, disc = f"ampshare-test/{tag}", f"ha-test-{tag}"
    path = tmp_path / "site.yaml"
    path.write_text(SITE.format(web_port=_free_port(), db=tmp_path / "s.db", host=broker[0],
                                port=broker[1], prefix=prefix, disc=disc, interval=interval_s),
                    encoding="utf-8")
    return path, prefix, disc


@pytest.mark.parametrize("web", [False, True], ids=["memory", "web-store"])
async def test_run_publishes_state_and_takes_a_departure_command(
        tmp_path: Path, broker: Broker, web: bool) -> None:
    path, prefix, disc = _site_file(tmp_path, broker, interval_s=0.5)
    seen: list[tuple[float, str, str]] = []
    async with aiomqtt.Client(broker[0], broker[1], identifier=f"t-{uuid.uuid4().hex[:8]}") as sub:
        await sub.subscribe(f"{prefix}/#")
        await sub.subscribe(f"{disc}/#")

        async def listen() -> None:
            async for m in sub.messages:
                payload = m.payload if isinstance(m.payload, bytes) else str(m.payload).encode()
                seen.append((time.monotonic(), str(m.topic), payload.decode()))

        listener = asyncio.create_task(listen())
        sup = Supervisor(load_config(path), options=SupervisorOptions(
            link=LinkOptions(boot_wait_s=0.1), poll_meters=False, web=web))
        stop = asyncio.Event()
        task = asyncio.create_task(sup.run(stop))
        await asyncio.wait_for(sup.started.wait(), 5)
        cs = sup.link
        assert isinstance(cs, CentralSystem)
        cp = await connect_sim(f"ws://127.0.0.1:{cs.port}/ocpp", "cp1", "1.6",
                               options=SimOptions(ev=EvSpec(max_current_a=32.0, reaction_s=0.1)))
        await cp.start_transaction()

        def charger_states() -> list[tuple[float, dict[str, object]]]:
            return [(t, json.loads(p)) for t, topic, p in seen
                    if topic == f"{prefix}/charger/cp1/state"]

        await until(lambda: any(s["limit_a"] == 32.0 for _, s in charger_states()))
        topics = {topic for _, topic, _ in seen}
        device = "ampshare_Mqtt_garage"
        assert f"{disc}/sensor/{device}/cp1_limit_a/config" in topics
        assert f"{disc}/text/{device}/cp1_departure/config" in topics
        config = next(json.loads(p) for _, t, p in seen
                      if t == f"{disc}/sensor/{device}/cp1_limit_a/config")
        assert config["state_topic"] == f"{prefix}/charger/cp1/state"
        assert (f"{prefix}/status", "online") in {(t, p) for _, t, p in seen}
        assert f"{prefix}/node/main/state" in topics

        # Rate limit: the controller steps ~10 times a second, state goes out <= 2 per second.
        window = [t for t, _ in charger_states()]
        await asyncio.sleep(2.0)
        window = [t for t, _ in charger_states() if t > window[-1]]
        assert 2 <= len(window) <= 5, window

        departure = time.time() + 4 * 3600.0
        async with aiomqtt.Client(broker[0], broker[1]) as pub:
            await pub.publish(f"{prefix}/charger/cp1/set/departure", f"{departure}")
            await pub.publish(f"{prefix}/charger/cp9/set/priority", "2")  # no such car: ignored
        await until(lambda: any(s.departure_s == departure for s in sup.state.sessions))
        if web:
            assert sup.web is not None
            sid = sup.state.sessions[0].session_id
            rec = sup.web.store.session(sid)
            assert rec is not None
            assert (rec.session.departure_s, rec.edited_by) == (departure, "mqtt")

        await cp.close()
        stop.set()
        await asyncio.wait_for(task, 15)
        await until(lambda: (f"{prefix}/status", "offline") in {(t, p) for _, t, p in seen})
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)


def test_password_env_missing_names_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    text = SITE.format(web_port=8081, db="x.db", host="127.0.0.1", port=1883, prefix="p",
                       disc="d", interval=1.0) + "  password_env: AMPSHARE_TEST_MQTT_PW\n"
    config = parse_config(text, name="site.yaml")
    monkeypatch.delenv("AMPSHARE_TEST_MQTT_PW", raising=False)
    with pytest.raises(ConfigError) as err:
        mqtt_password(config)
    assert "mqtt.password_env" in str(err.value)
    assert "AMPSHARE_TEST_MQTT_PW" in str(err.value)
    monkeypatch.setenv("AMPSHARE_TEST_MQTT_PW", "s3cret")
    assert mqtt_password(config) == "s3cret"
    assert mqtt_password(parse_config(text[: text.index("mqtt:")])) is None


def test_session_edits_follow_the_car_on_the_charger() -> None:
    edits = SessionEdits()
    a = Session(session_id="cp1:1", charger_id="cp1", arrival_s=100.0)
    b = Session(session_id="cp2:2", charger_id="cp2", arrival_s=100.0)
    cmd = SessionCommand(charger_id="cp1", field="priority", value=3.0, received_s=200.0)
    assert edits.apply([b], cmd) is None  # no car on cp1: nothing changes
    assert edits.overlay([a, b]) == (a, b)
    edited = edits.apply([a, b], cmd)
    assert edited is not None
    assert edited.priority == 3
    energy = SessionCommand(charger_id="cp1", field="energy_kwh", value=20_000.0, received_s=201.0)
    edits.apply([a, b], energy)
    out = edits.overlay([a, b])
    assert (out[0].priority, out[0].energy_wanted_wh, out[1]) == (3, 20_000.0, b)
    # The car left: its edits do not stick to the next session on that charger.
    assert edits.overlay([b]) == (b,)
    a2 = Session(session_id="cp1:3", charger_id="cp1", arrival_s=300.0)
    assert edits.overlay([a2, b]) == (a2, b)



async def test_the_run_command_starts_the_bridge(tmp_path: Path, broker: Broker) -> None:
    """The CLI process itself: its banner names the broker, discovery and state arrive, and a
    clean stop leaves ``offline`` as the retained status."""
    path, prefix, disc = _site_file(tmp_path, broker, interval_s=0.5)
    seen: dict[str, str] = {}
    async with aiomqtt.Client(broker[0], broker[1], identifier=f"t-{uuid.uuid4().hex[:8]}") as sub:
        await sub.subscribe(f"{prefix}/#")
        await sub.subscribe(f"{disc}/#")

        async def listen() -> None:
            async for m in sub.messages:
                payload = m.payload if isinstance(m.payload, bytes) else str(m.payload).encode()
                seen[str(m.topic)] = payload.decode()

        listener = asyncio.create_task(listen())
        code = "from ampshare.cli import main; main()"
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, "run", str(path), "--duration-s", "3",
            "--log-level", "warning", stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err.decode()
        assert f"MQTT to {broker[0]}:{broker[1]}, topics {prefix}/" in out.decode()
        await until(lambda: seen.get(f"{prefix}/status") == "offline")
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
    assert f"{disc}/sensor/ampshare_Mqtt_garage/cp1_limit_a/config" in seen
    state = json.loads(seen[f"{prefix}/charger/cp1/state"])
    assert state["status"] == "Offline"  # no charger connected: shown as such, not as 0 A
