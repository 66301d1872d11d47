"""``ampshare run`` with the API: what the chargers report shows up there, and an operator's
edit (a departure time) reaches the controller's next step."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from pathlib import Path

import httpx

from ampshare.adapters.ocpp import CentralSystem, LinkOptions, SimOptions, connect_sim
from ampshare.app import Supervisor, SupervisorOptions, policy_from
from ampshare.app._web import WebBridge
from ampshare.clock import VirtualClock
from ampshare.config import load_config, parse_config
from ampshare.control import (
    ControllerState,
    ControlSettings,
    InstallFallback,
    SetLimit,
    StepResult,
    initial_state,
)
from ampshare.core.allocation import Policy, PolicyName
from ampshare.core.snapshot import Session
from ampshare.sim.ev import EvSpec
from ampshare.web import hash_token

SITE = """
site: Garage
voltage: "230/400"
nodes:
  - id: main
    limit_a: 32
chargers:
  - {{id: cp1, node: main, max_a: 32}}
control:
  max_period_s: 0.2
  ev_reaction_s: 0.3
ocpp: {{host: 127.0.0.1, port: 0, min_write_interval_s: 0}}
web:
  host: 127.0.0.1
  port: {port}
  store_url: sqlite:///{db}
  tokens:
    - {{name: ops, sha256: "{token}", role: admin}}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def until(cond: Callable[[], bool], timeout_s: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while not cond():
        assert loop.time() < end, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_run_serves_the_api_and_takes_edits(tmp_path: Path) -> None:
    port = _free_port()
    path = tmp_path / "site.yaml"
    path.write_text(SITE.format(port=port, db=tmp_path / "a.db", token=hash_token("tok")),
                    encoding="utf-8")
    sup = Supervisor(load_config(path), options=SupervisorOptions(
        link=LinkOptions(boot_wait_s=0.1), poll_meters=False, web=True))
    stop = asyncio.Event()
    task = asyncio.create_task(sup.run(stop))
    await asyncio.wait_for(sup.started.wait(), 5)
    assert sup.web is not None
    await until(lambda: sup.web is not None and sup.web.started)
    cs = sup.link
    assert isinstance(cs, CentralSystem)
    cp = await connect_sim(f"ws://127.0.0.1:{cs.port}/ocpp", "cp1", "1.6",
                           options=SimOptions(ev=EvSpec(max_current_a=32.0, reaction_s=0.1)))
    await cp.start_transaction()
    await until(lambda: cp.offered_a() == 32.0)
    auth = {"Authorization": "Bearer tok"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/api/v1",
                                 headers=auth) as http:
        sessions: list[dict[str, object]] = []

        async def fetch() -> None:
            sessions[:] = (await http.get("/sessions", params={"active": "true"})).json()

        for _ in range(100):
            await fetch()
            if sessions:
                break
            await asyncio.sleep(0.05)
        assert len(sessions) == 1, sessions
        sid = str(sessions[0]["session_id"])
        charger = (await http.get("/chargers/cp1")).json()
        assert "32" in str(charger)  # the limit the controller decided is shown
        departure = 1_900_000_000.0
        res = await http.patch(f"/sessions/{sid}", json={"departure_s": departure})
        assert res.status_code == 200, res.text
    # The edit reaches the controller's sessions on its next step.
    await until(lambda: any(s.departure_s == departure for s in sup.state.sessions))
    await cp.close()
    stop.set()
    await asyncio.wait_for(task, 15)


def _bridge(tmp_path: Path, clock: VirtualClock, policy: str = "equal") -> WebBridge:
    text = SITE.format(port=_free_port(), db=tmp_path / "r.db", token=hash_token("tok"))
    config = parse_config(text + f"policy: {{name: {policy}}}\n", name="site.yaml")
    return WebBridge(config, clock, policy_from(config), lease_s=120.0)


def _result(sup_state: ControllerState) -> StepResult:
    return StepResult(state=sup_state, commands=(), events=(), next_wakeup_s=0.0)


def test_web_bridge_resumes_a_used_store(tmp_path: Path) -> None:
    clock = VirtualClock(1_800_000_000.0)
    first = _bridge(tmp_path, clock)
    assert not first.resumed
    assert first.policy().name is PolicyName.EQUAL
    s1 = Session(session_id="cp1:7", charger_id="cp1", arrival_s=clock.now_s())
    state = initial_state(first.config.site, ControlSettings())
    first.after_step(sessions=[s1], states=[], readings=[], result=_result(state))
    first.runtime.set_policy(Policy(name=PolicyName.FCFS), by="admin")
    now = clock.now_s()
    first.record_installed(SetLimit(charger_id="cp1", limit_a=20.0, phases=3,
                                    lease_until_s=now + 60, reason="fuse"), now)
    first.record_installed(InstallFallback(charger_id="cp1", limit_a=8.0, phases=3), now)
    first.close()

    clock.advance(30.0)
    again = _bridge(tmp_path, clock)
    assert again.resumed
    assert again.policy().name is PolicyName.FCFS  # the admin's choice, the file unchanged
    assert [s.session_id for s in again.runtime.view().sessions] == ["cp1:7"]
    assert again.installed_limits_a() == {"cp1": 20.0}  # lease still running
    assert again.last_transaction_number() == 7
    # No charger has reported yet: the restored session stays (a 1.6 charger names it late).
    again.after_step(sessions=[], states=[], readings=[], result=_result(state))
    assert [s.session_id for s in again.runtime.view().sessions] == ["cp1:7"]
    # The charger reports another transaction: the restored one has ended.
    s2 = Session(session_id="cp1:8", charger_id="cp1", arrival_s=clock.now_s())
    again.after_step(sessions=[s2], states=[], readings=[], result=_result(state))
    assert [s.session_id for s in again.runtime.view().sessions] == ["cp1:8"]
    again.close()

    clock.advance(60.0)  # the live limit's lease ran out: only the fallback holds
    changed = _bridge(tmp_path, clock, policy="priority")
    assert changed.resumed
    assert changed.policy().name is PolicyName.PRIORITY  # the file's policy was edited
    assert changed.installed_limits_a() == {"cp1": 8.0}
    changed.close()


async def test_a_restarted_controller_keeps_the_car_charging(tmp_path: Path) -> None:
    """Killed and restarted on the same store, the controller plans for the stored session
    until the charger names its transaction again (an older 1.6 charger without
    TriggerMessage does so only with its next meter values): the car is never sent 0 A."""
    path = tmp_path / "site.yaml"
    path.write_text(SITE.format(port=_free_port(), db=tmp_path / "s.db", token=hash_token("t"))
                    .replace("port: 0,", f"port: {_free_port()},"), encoding="utf-8")
    config = load_config(path)
    sent: list[SetLimit | InstallFallback] = []

    async def start() -> tuple[Supervisor, asyncio.Event, asyncio.Task[None]]:
        sup = Supervisor(config, options=SupervisorOptions(
            web=True, poll_meters=False, link=LinkOptions(boot_wait_s=0.1)),
            on_step=lambda r: sent.extend(r.commands))
        stop = asyncio.Event()
        task = asyncio.create_task(sup.run(stop))
        await asyncio.wait_for(sup.started.wait(), 10)
        return sup, stop, task

    sup, _, task = await start()
    url = f"ws://127.0.0.1:{config.ocpp.port}/ocpp"
    cp = await connect_sim(url, "cp1", "1.6", options=SimOptions(
        answers_triggers=False, ev=EvSpec(max_current_a=32.0, reaction_s=0.1)))
    await cp.start_transaction()
    await until(lambda: any(p.purpose == "TxProfile" and p.limit == 32.0 for p in cp.received))
    await until(lambda: bool(sup.web and sup.web.store.sessions(active=True)))
    task.cancel()  # a crash: no shutdown, the charger keeps its transaction and profiles
    with contextlib.suppress(asyncio.CancelledError):
        await task
    sent.clear()

    sup, stop, task = await start()
    await cp.reconnect(url)
    cs = sup.link
    assert isinstance(cs, CentralSystem)
    await cs.wait_ready("cp1")
    await asyncio.sleep(1.0)  # steps run; the charger has not named its transaction yet
    assert cs.snapshot().session("cp1") is None
    assert cp.offered_a() == 32.0, (sent, cp.received)
    await cp.meter_values()  # now it does
    await until(lambda: cs.snapshot().session("cp1") is not None)
    await asyncio.sleep(0.5)
    lives = [c.limit_a for c in sent if isinstance(c, SetLimit) and c.charger_id == "cp1"]
    assert lives
    assert min(lives) == 32.0, lives  # never 0 A "no session" while it was away
    assert cp.offered_a() == 32.0
    await cp.close()
    stop.set()
    await asyncio.wait_for(task, 10)
