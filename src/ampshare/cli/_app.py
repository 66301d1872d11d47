"""The typer application; sub-command modules are imported at the bottom to register."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="ampshare",
    help="Dynamic load management for EV charging sites.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """ampshare: share a site's electrical headroom among EV chargers, safely."""


def main() -> None:
    """Console-script entry point."""
    _register()
    app()


def _register() -> None:
    # Imported for their side effect of adding commands to ``app``; one line per module so
    # that parallel work on different commands never touches the same line.
    from ampshare.cli import (
        _version,  # noqa: F401
        capacity,  # noqa: F401
        check,  # noqa: F401
        demo,  # noqa: F401
        import_acn,  # noqa: F401
        meters,  # noqa: F401
        run,  # noqa: F401
        scenario,  # noqa: F401
        sim_chargers,  # noqa: F401
        simulate,  # noqa: F401
    )
