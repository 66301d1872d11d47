"""Shutdown ends: loops around a link's wait end on cancel, and a stuck task is named, not
waited for forever (the demo once hung at exit: 3.11's wait_for swallowed a cancel)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from ampshare.adapters.ocpp import CentralSystem, FakeChargerLink, LinkOptions
from ampshare.aio import cancel_and_wait
from ampshare.clock import VirtualClock
from ampshare.config.sections import OcppSection
from ampshare.core.site import Charger, CircuitNode, Connection, NodeKind, Site, VoltageSystem

T0 = 1_700_000_000.0


def make_site() -> Site:
    root = CircuitNode(id="main", kind=NodeKind.SERVICE, parent_id=None,
                       line_limit_a=(63.0, 63.0, 63.0))
    chargers = (Charger(id="cp1", node_id="main", connection=Connection.THREE_PHASE),)
    return Site(name="t", voltage=VoltageSystem.EU_230_400, nodes=(root,), chargers=chargers)


async def _forward_forever(link: Any) -> None:
    # The supervisor's _forward_link_changes: a loop that ends only by being cancelled.
    while True:
        await link.wait_changed(1.0)


async def _cancel_as_a_change_lands(task: asyncio.Task[None], signal_change: Any) -> bool:
    await asyncio.sleep(0.05)  # the loop is waiting
    signal_change()
    await asyncio.sleep(0)  # the waited-for event completes in this iteration ...
    task.cancel()  # ... and the cancel arrives in the same one
    done, _ = await asyncio.wait({task}, timeout=2.0)
    task.cancel()
    return bool(done)


async def test_central_system_wait_changed_loop_ends_on_cancel() -> None:
    settings = OcppSection(host="127.0.0.1", port=0)
    async with CentralSystem(site=make_site(), settings=settings, clock=VirtualClock(T0),
                             options=LinkOptions(boot_wait_s=0.1)) as cs:
        task = asyncio.create_task(_forward_forever(cs))
        assert await _cancel_as_a_change_lands(task, cs.hub.changed.set)


async def test_fake_link_wait_changed_loop_ends_on_cancel() -> None:
    clock = VirtualClock(T0)
    link = FakeChargerLink(make_site().chargers, clock)
    task = asyncio.create_task(_forward_forever(link))
    assert await _cancel_as_a_change_lands(task, lambda: link.connect("cp1"))


async def test_cancel_and_wait_recancels_a_task_that_swallowed_the_first() -> None:
    swallowed = 0

    async def stubborn_once() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                swallowed += 1
                if swallowed == 1:
                    continue  # what a racing wait_for does: the cancel is lost once
                raise

    task = asyncio.create_task(stubborn_once())
    await asyncio.sleep(0)
    left = await cancel_and_wait([task], timeout_s=2.0)
    assert left == ()
    assert task.cancelled()
    assert swallowed == 2


async def test_cancel_and_wait_lets_a_cleanup_finish() -> None:
    cleaned = asyncio.Event()

    async def with_slow_cleanup() -> None:
        try:
            await asyncio.sleep(10)
        finally:
            await asyncio.sleep(0.5)  # e.g. closing a socket politely
            cleaned.set()

    task = asyncio.create_task(with_slow_cleanup())
    await asyncio.sleep(0)
    assert await cancel_and_wait([task], timeout_s=3.0) == ()
    assert cleaned.is_set()  # a second cancel did not cut the cleanup short


async def test_cancel_and_wait_names_what_never_ends_and_returns(
        caplog: pytest.LogCaptureFixture) -> None:
    released = asyncio.Event()

    async def deaf() -> None:  # ignores every cancel until the test lets it go
        while not released.is_set():
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                continue

    task = asyncio.create_task(deaf(), name="deaf-task")
    quick = asyncio.create_task(asyncio.sleep(10), name="quick-task")
    await asyncio.sleep(0)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="ampshare.shutdown"):
        left = await cancel_and_wait([task, quick], timeout_s=0.5, what="test tasks")
    assert time.monotonic() - started < 2.0
    assert left == (task,)
    assert quick.cancelled()
    assert "deaf-task" in caplog.text
    assert "quick-task" not in caplog.text
    released.set()
    task.cancel()
    await asyncio.wait({task}, timeout=2.0)
    assert task.done()


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
def test_second_signal_exits_a_stuck_shutdown() -> None:
    script = textwrap.dedent("""
        import asyncio
        from ampshare.aio import stop_on_signals

        async def main():
            stop = asyncio.Event()
            stop_on_signals(stop, name="stuck")
            print("ready", flush=True)
            await stop.wait()
            print("stopping", flush=True)
            await asyncio.Event().wait()  # a shutdown that never ends

        asyncio.run(main())
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGTERM)
        assert proc.stdout.readline().strip() == "stopping"
        assert proc.poll() is None  # the first signal asks; it does not kill
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM.value
    assert "second SIGTERM" in err


async def test_the_supervisor_stops_while_its_link_keeps_changing(tmp_path: Path) -> None:
    """The hang the demo showed, at the supervisor: its loop forwarding the link's changes
    must end when the run stops, even with a change landing in every loop iteration."""
    from ampshare.app import Supervisor, SupervisorOptions
    from ampshare.clock import SystemClock
    from ampshare.config import load_config
    from test_run_app import SITE  # two chargers on a 32 A service, a fast control loop

    path = tmp_path / "site.yaml"
    path.write_text(SITE, encoding="utf-8")
    config = load_config(path)
    clock = SystemClock()
    for _ in range(10):  # the race is per stop: try it a few times
        link = FakeChargerLink(config.site.chargers, clock)
        sup = Supervisor(config, clock=clock, link=link,
                         options=SupervisorOptions(poll_meters=False))
        stop = asyncio.Event()
        task = asyncio.create_task(sup.run(stop))
        async with asyncio.timeout(5):
            await sup.started.wait()

        async def churn(link: FakeChargerLink = link) -> None:
            while True:
                link.connect("cp1")  # a change, as a charger's meter values are
                await asyncio.sleep(0)

        churner = asyncio.create_task(churn())
        await asyncio.sleep(0.05)
        stop.set()
        done, _ = await asyncio.wait({task}, timeout=8.0)
        churner.cancel()
        await asyncio.gather(churner, return_exceptions=True)
        assert done, "the supervisor did not stop"
        assert task.exception() is None
