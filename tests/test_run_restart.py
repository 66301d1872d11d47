"""``ampshare run --web`` killed with SIGKILL while a car charges, then started again on the
same SQLite store: the session (with an operator's departure), the events and an admin-set
policy are back, and the restarted controller re-asserts the charger's limit.

The process under test is the real CLI in a subprocess; the charge point is the OCPP 1.6
simulator in this process over loopback websockets, which keeps its transaction across the
restart and reconnects, as a real charger does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ampshare.adapters.ocpp import SimOptions, connect_sim
from ampshare.sim.ev import EvSpec
from ampshare.store import open_store
from ampshare.web import hash_token
from ampshare.web.testing import free_port

pytestmark = pytest.mark.slow

SITE = """
site: Restart garage
voltage: "230/400"
nodes:
  - id: main
    limit_a: 40
chargers:
  - {{id: cp1, node: main, max_a: 32}}
  - {{id: cp2, node: main, max_a: 32}}
policy: {{name: equal}}
control:
  max_period_s: 0.2
  ev_reaction_s: 0.3
ocpp: {{host: 127.0.0.1, port: {ocpp_port}, min_write_interval_s: 0, meter_sample_interval_s: 1}}
web:
  host: 127.0.0.1
  port: {web_port}
  store_url: sqlite:///{db}
  tokens:
    - {{name: ops, sha256: "{token}", role: admin}}
"""
TOKEN = "restart-test-token"


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait(10)


def _start(site: Path, log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-c", "from ampshare.cli import main; main()", "run", str(site),
           "--web", "--log-level", "warning"]
    with log.open("ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})


async def until(cond: Callable[[], Awaitable[Any]], timeout_s: float, what: str) -> Any:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        with contextlib.suppress(httpx.HTTPError):
            got = await cond()
            if got:
                return got
        await asyncio.sleep(0.1)
    raise AssertionError(f"not reached in {timeout_s:g} s: {what}")


async def test_kill_9_then_restart_resumes_and_reasserts(
        tmp_path: Path, procs: list[subprocess.Popen[bytes]]) -> None:
    ocpp_port, web_port, db = free_port(), free_port(), tmp_path / "site.db"
    site = tmp_path / "site.yaml"
    site.write_text(SITE.format(ocpp_port=ocpp_port, web_port=web_port, db=db,
                                token=hash_token(TOKEN)), encoding="utf-8")
    log = tmp_path / "run.log"
    api = httpx.AsyncClient(base_url=f"http://127.0.0.1:{web_port}/api/v1",
                            headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)

    async def up() -> bool:
        return (await api.get("/whoami")).status_code == 200

    async def active() -> list[dict[str, Any]]:
        return list((await api.get("/sessions", params={"active": "true"})).json())

    procs.append(_start(site, log))
    await until(up, 30, "API up:\n" + log.read_text() if log.exists() else "")
    url = f"ws://127.0.0.1:{ocpp_port}/ocpp"
    cp = await connect_sim(url, "cp1", "1.6", options=SimOptions(
        meter_interval_s=1.0, ev=EvSpec(max_current_a=32.0, reaction_s=0.1)))
    await cp.start_transaction()

    async def live_limit() -> bool:  # cp2 is offline (counted at 32 A): cp1 gets 40 - 32
        await cp.meter_values()
        return any(p.connector_id != 0 for p in cp.received)  # TxProfile, or leased default

    await until(live_limit, 20, "a live limit on cp1")
    sessions = await until(active, 10, "the session in the API")
    sid = sessions[0]["session_id"]
    departure = time.time() + 5 * 3600.0
    assert (await api.patch(f"/sessions/{sid}", json={"departure_s": departure})).status_code == 200
    assert (await api.put("/policy", json={"name": "fcfs"})).status_code == 200
    await cp.meter_values()
    await asyncio.sleep(0.5)
    energy_before = (await api.get(f"/sessions/{sid}")).json()["energy_delivered_wh"]
    events_before = {e["event_id"] for e in (await api.get("/events",
                                                            params={"limit": 1000})).json()}
    received_before = len(cp.received)

    os.kill(procs[0].pid, signal.SIGKILL)  # no shutdown hooks, mid-cycle
    procs[0].wait(10)
    store = open_store(f"sqlite:///{db}")
    try:  # what a restart has to work from, read with no app running
        rec = store.session(sid)
        assert rec is not None
        assert (rec.session.departure_s, rec.ended_s, rec.edited_by) == (departure, None,
                                                                          "manager")
        assert {p.purpose for p in store.profiles() if p.charger_id == "cp1"} == {"tx",
                                                                                 "fallback"}
        assert events_before <= {e.event_id for e in store.events(limit=100_000)}
    finally:
        store.close()

    restarted_s = time.time()
    procs.append(_start(site, log))
    await until(up, 30, "API up again:\n" + log.read_text())
    with contextlib.suppress(Exception):  # the old socket died with the process
        await cp.reconnect(url)

    async def reasserted() -> bool:
        await cp.meter_values()  # a 1.6 charger names its transaction with its meter values
        return any(p.connector_id != 0 and p.limit > 0 for p in cp.received[received_before:])

    await until(reasserted, 30, "the live limit sent again after the restart")
    live = {s["session_id"]: s for s in await active()}
    assert set(live) == {sid}
    assert live[sid]["departure_s"] == departure
    assert live[sid]["energy_delivered_wh"] >= energy_before
    assert (await api.get("/policy")).json()["name"] == "fcfs"  # the admin's, not the file's
    kinds = [e["kind"] for e in (await api.get("/events", params={"limit": 100})).json()]
    assert "restart" in kinds  # the runtime reloaded the store
    assert "restarted" in kinds  # the controller rebuilt its state
    store = open_store(f"sqlite:///{db}")
    try:
        fresh = {p.purpose for p in store.profiles()
                 if p.charger_id == "cp1" and p.installed_s >= restarted_s}
    finally:
        store.close()
    assert fresh == {"tx", "fallback"}  # both re-installed and confirmed after the restart
    await cp.close()
    await api.aclose()
