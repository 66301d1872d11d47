"""uvicorn inside our own event loop, without its signal handlers.

``uvicorn.Server.serve`` installs SIGINT/SIGTERM handlers for as long as it runs and raises
the signal again when it has stopped. Inside ``ampshare run`` and the demo the process's
owner handles signals (``ampshare.aio.stop_on_signals``) and stops the server itself; with
uvicorn's handlers one Ctrl-C arrived twice, and the second read as "force exit".
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import uvicorn

__all__ = ["EmbeddedServer"]


class EmbeddedServer(uvicorn.Server):
    """A ``uvicorn.Server`` that leaves signals to its owner (who calls ``should_exit``)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield
