"""The typer application; sub-command modules are imported at the bottom to register."""

from __future__ import annotations

import importlib
import sys

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


#: Which module registers each sub-command, so that ``ampshare check`` does not import the
#: web server, matplotlib and the OCPP stack first (all of them: ~3 s; one: well under 1 s).
COMMAND_MODULES = {
    "capacity": "capacity",
    "check": "check",
    "demo": "demo",
    "import-acn": "import_acn",
    "meters": "meters",
    "ocpp-hash-password": "run",
    "run": "run",
    "scenario": "scenario",
    "sim-chargers": "sim_chargers",
    "sim-meter": "meters",
    "simulate": "simulate",
    "version": "_version",
}


def main() -> None:
    """Console-script entry point."""
    _register(_command_of(sys.argv[1:]))
    app()


def _command_of(argv: list[str]) -> str | None:
    """The sub-command named on the command line (None: none, or one we do not know; then
    every command is registered so that typer can list them or say what is wrong)."""
    first = next((a for a in argv if not a.startswith("-")), None)
    return first if first in COMMAND_MODULES else None


def _register(command: str | None = None) -> None:
    """Register ``command``'s module, or every module when ``command`` is None."""
    if command is not None:
        importlib.import_module(f"ampshare.cli.{COMMAND_MODULES[command]}")
        return
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
