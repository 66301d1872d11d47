"""``ampshare run`` and ``ampshare sim-chargers`` as real processes talking over loopback."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner, Result

from ampshare.adapters.ocpp import verify_password
from ampshare.cli._app import _register, app

SITE = """
site: Garage
voltage: "230/400"
nodes:
  - id: main
    limit_a: 40
chargers:
  - {{id: cp1, node: main, max_a: 32}}
  - {{id: cp2, node: main, max_a: 32}}
control:
  ev_reaction_s: 1.0  # a car just raised is confirmed this soon: the second car's wait
  startup_grace_s: 0  # chargers not there at the first step are news at once (see below)
ocpp:
  host: 127.0.0.1
  port: {port}
  min_write_interval_s: 0
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ampshare(*args: str) -> subprocess.Popen[str]:
    code = "import sys; from ampshare.cli import main; sys.argv[0] = 'ampshare'; main()"
    return subprocess.Popen([sys.executable, "-c", code, *args], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_run_and_sim_chargers_processes(tmp_path: Path) -> None:
    port = _free_port()
    site = tmp_path / "site.yaml"
    site.write_text(SITE.format(port=port), encoding="utf-8")
    server = _ampshare("run", str(site), "--duration-s", "9")
    try:
        # The simulator does not retry: connect only once the server says it listens.
        assert server.stdout is not None
        banner = server.stdout.readline() + server.stdout.readline()
        assert f"ws://127.0.0.1:{port}/ocpp/{{charge_point_id}}" in banner
        sims = _ampshare("sim-chargers", "--url", f"ws://127.0.0.1:{port}/ocpp", "--count", "2",
                         "--protocol", "2.0.1", "--meter-interval-s", "1", "--stagger-s", "0.5",
                         "--duration-s", "6")
        out, err = sims.communicate(timeout=30)
        assert sims.returncode == 0, err
        # (The server may stop first on a busy machine: then the fleet says "0 of 2".)
        last = [ln for ln in out.strip().splitlines() if ln.startswith("2 of 2 connected")][-1]
        # Two cars share a 40 A fuse: 20 A each once the controller has spoken.
        assert last.startswith("2 of 2 connected, 2 charging, offered 40.0 A"), out
        _, server_err = server.communicate(timeout=30)
        assert server.returncode == 0, server_err
        # The controller's events are logged: here the chargers' arrival (after an offline
        # alert at the first step, as the site file has no start-up grace). A car's first
        # limit is no "resumed": only a car the controller paused is resumed.
        assert "charger_online cp1" in server_err
        assert "resumed cp1" not in server_err
    finally:  # a failed assertion must not leave the process and its pipes to the next test
        if server.poll() is None:
            server.kill()
        server.communicate(timeout=10)


def _invoke(*args: str) -> Result:
    _register()
    return CliRunner().invoke(app, list(args))


def test_run_reports_a_bad_site_file(tmp_path: Path) -> None:
    site = tmp_path / "bad.yaml"
    site.write_text("site: X\nvoltage: '230'\nnodes: []\nchargers: []\nocpp: {port: -1}\n",
                    encoding="utf-8")
    res = _invoke("run", str(site))
    assert res.exit_code == 2
    assert "bad.yaml" in res.output
    assert "ocpp" in res.output


def test_ports_in_use_are_named_not_a_traceback(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        site = tmp_path / "site.yaml"
        web = f"web: {{host: 127.0.0.1, port: {busy}, store_url: 'sqlite:///{tmp_path}/s.db'}}\n"
        site.write_text(SITE.format(port=_free_port()) + web, encoding="utf-8")
        res = _invoke("run", str(site), "--web", "--duration-s", "5")
        assert res.exit_code == 1, res.output
        assert f"cannot serve the API and dashboard on 127.0.0.1:{busy}" in res.output
        assert "Traceback" not in res.output
        site.write_text(SITE.format(port=busy), encoding="utf-8")
        res = _invoke("run", str(site), "--duration-s", "5")
        assert res.exit_code == 1, res.output
        assert "ampshare run: cannot listen: " in res.output
        assert str(busy) in res.output
        res = _invoke("demo", "--port", str(busy), "--history-h", "0", "--duration-s", "5")
        assert res.exit_code == 1, res.output
        assert f"cannot serve the dashboard on 127.0.0.1:{busy}" in res.output


def test_sim_chargers_without_a_server_fails_cleanly() -> None:
    res = _invoke("sim-chargers", "--url", f"ws://127.0.0.1:{_free_port()}/ocpp",
                  "--duration-s", "1")
    assert res.exit_code == 1
    assert "no simulated charger could connect" in res.output


def test_hash_password_prints_a_verifiable_hash() -> None:
    res = _invoke("ocpp-hash-password", "--password", "pw")
    assert res.exit_code == 0
    assert verify_password("pw", res.output.strip())


def test_policy_planned_turns_the_planner_on(tmp_path: Path) -> None:
    # A site file that says ``policy: planned`` and nothing about the planner gets one: it
    # would otherwise share like ``equal`` while the dashboard says "planned".
    site = tmp_path / "site.yaml"
    site.write_text(SITE.format(port=_free_port()) + "policy: {name: planned}\n",
                    encoding="utf-8")
    res = _invoke("run", str(site), "--duration-s", "0.5")
    assert res.exit_code == 0, res.output
    assert "planner on: 24 h in 900 s slots, re-planned every 300 s" in res.output
    assert "plans are shown, not followed" not in res.output
    assert "prefer: ready" not in res.output
    site.write_text(SITE.format(port=_free_port()) + "policy: {name: planned}\n"
                    "planner: {prefer: ready}\n", encoding="utf-8")
    res = _invoke("run", str(site), "--duration-s", "0.5")
    assert res.exit_code == 0, res.output
    assert "re-planned every 300 s, the cars closest to their request first (prefer: ready)" in (
        res.output)
    site.write_text(SITE.format(port=_free_port()), encoding="utf-8")  # equal, no planner
    res = _invoke("run", str(site), "--duration-s", "0.5")
    assert res.exit_code == 0, res.output
    assert "planner on" not in res.output
