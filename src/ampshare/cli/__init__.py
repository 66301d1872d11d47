"""The ``ampshare`` command. Each sub-command lives in its own module and registers on ``app``."""

from __future__ import annotations

from ampshare.cli._app import app, main

__all__ = ["app", "main"]
