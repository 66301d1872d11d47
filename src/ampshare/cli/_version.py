"""``ampshare version``."""

from __future__ import annotations

import typer

from ampshare import __version__
from ampshare.cli._app import app


@app.command("version")
def version() -> None:
    """Print the ampshare version."""
    typer.echo(__version__)
