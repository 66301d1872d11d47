"""The ``ampshare`` command imports only the module of the sub-command it runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ampshare.cli._app import COMMAND_MODULES, _register, app

ROOT = Path(__file__).resolve().parent.parent

_PROBE = """
import sys
from ampshare.cli._app import main
sys.argv = ["ampshare", *sys.argv[1:]]
try:
    main()
except SystemExit as exc:
    code = exc.code
print("\\nMODULES", "fastapi" in sys.modules, "matplotlib" in sys.modules, "ocpp" in sys.modules,
      code)
"""


def _probe(*args: str) -> tuple[str, str]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, timeout=60,
        check=False,
    )
    out = done.stderr + done.stdout
    head, _, tail = out.rpartition("\nMODULES ")
    return head, tail.strip()


def test_check_runs_without_the_web_plot_and_ocpp_stacks() -> None:
    out, mods = _probe("check", str(ROOT / "examples" / "home.yaml"))
    assert "OK:" in out
    assert mods == "False False False 0"


def test_unknown_or_missing_command_still_lists_every_command() -> None:
    out, mods = _probe("--help")
    for name in ("check", "simulate", "demo", "run", "sim-meter", "ocpp-hash-password"):
        assert name in out
    assert mods.endswith(" 0")
    out, _ = _probe("chek")
    assert "check" in out  # typer's "did you mean"


def test_the_command_table_names_every_registered_command() -> None:
    _register()
    names = {
        c.name or c.callback.__name__.replace("_", "-")  # type: ignore[union-attr]
        for c in app.registered_commands
    }
    assert names == set(COMMAND_MODULES)
