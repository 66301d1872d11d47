"""Small asyncio helpers for the edges: shutting tasks down within a bound.

Python 3.11's ``asyncio.wait_for`` can swallow a cancellation: when the awaited thing
finishes in the same loop iteration as the cancel, it returns the result and the task goes
on. A ``while True`` loop around it then never ends, and a shutdown that gathers it hangs
for good (the demo did, about one exit in six). Our own code uses ``asyncio.timeout``
instead (ruff bans ``asyncio.wait_for``); third-party code (the ``ocpp`` library's calls)
still uses it, so every shutdown here cancels again until the tasks are done, within a
bound, and names whatever still did not finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterable
from typing import Any

__all__ = ["cancel_and_wait", "stop_on_signals"]

log = logging.getLogger("ampshare.shutdown")

_GRACE_S = 1.0  # after the first cancel: time for a task's own cleanup (a socket's close)
_RECANCEL_S = 0.2  # then: cancel again this often


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]], *, timeout_s: float = 5.0,
                          what: str = "tasks") -> tuple[asyncio.Task[Any], ...]:
    """Cancel ``tasks`` until all are done or ``timeout_s`` passed: once, then, for those
    still running after a second (their cleanup has had its time), again every 0.2 s.

    Returns the tasks that did not finish (normally none), after logging their names, so
    that a caller's shutdown goes on instead of waiting for them forever. A task's own
    exception is not raised here: the caller cancelled it and has stopped caring."""
    pending = {t for t in tasks if not t.done()}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    wait_s = _GRACE_S
    while pending:
        left_s = deadline - loop.time()
        if left_s <= 0:
            break
        for t in pending:
            t.cancel()
        _, pending = await asyncio.wait(pending, timeout=min(wait_s, left_s))
        wait_s = _RECANCEL_S
    if pending:
        names = ", ".join(sorted(t.get_name() for t in pending))
        log.warning("shutdown: %d %s did not finish within %g s and are left behind: %s",
                    len(pending), what, timeout_s, names)
    return tuple(pending)


def stop_on_signals(stop: asyncio.Event, *, name: str = "ampshare") -> None:
    """SIGINT/SIGTERM set ``stop``; a second one exits at once.

    The first signal asks for an orderly shutdown (the controller's last step, the
    chargers' fallback, the store closed). Should that not end, an operator's second Ctrl-C
    or a service manager's second SIGTERM must still end the process: it exits with
    128 + the signal number without waiting for anything."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not on every platform
            loop.add_signal_handler(sig, _on_signal, stop, sig, name)


def _on_signal(stop: asyncio.Event, sig: signal.Signals, name: str) -> None:
    if not stop.is_set():
        stop.set()
        return
    print(f"{name}: second {sig.name} during shutdown: exiting now", file=sys.stderr,
          flush=True)
    os._exit(128 + sig.value)
