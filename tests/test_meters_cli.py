"""``ampshare meters`` and ``ampshare sim-meter``, and the Modbus example site."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ampshare.adapters.meters import BUILTIN_MAPS, ModbusMeter, ModbusMeterServer, build_meter
from ampshare.adapters.meters import Quantity as Qty
from ampshare.cli import app
from ampshare.cli._app import _register
from ampshare.cli.meters import _load_profile, _power_at, profile_values
from ampshare.clock import SystemClock
from ampshare.config import load_site
from ampshare.errors import InputError

_register()
ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "home-modbus-meter.yaml"


@pytest.fixture
def live_sdm630() -> Iterator[ModbusMeterServer]:
    """An SDM630 on loopback, served from its own thread (the CLI runs its own event loop)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = ModbusMeterServer.for_map(BUILTIN_MAPS["sdm630"], profile_values(5060.0))
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(5)
    yield server
    asyncio.run_coroutine_threadsafe(server.stop(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def _site(tmp_path: Path, port: int) -> Path:
    text = EXAMPLE.read_text(encoding="utf-8").replace("port: 5020", f"port: {port}")
    path = tmp_path / "site.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_example_site_has_a_modbus_meter() -> None:
    site = load_site(EXAMPLE)
    [spec] = site.meters
    assert (spec.driver, spec.params["model"], spec.params["port"]) == ("modbus", "sdm630", 5020)
    assert isinstance(build_meter(spec, SystemClock()), ModbusMeter)


def test_meters_lists_live_readings(tmp_path: Path, live_sdm630: ModbusMeterServer) -> None:
    result = CliRunner().invoke(app, ["meters", "--site", str(_site(tmp_path, live_sdm630.port))])
    assert result.exit_code == 0, result.output
    assert "house" in result.output
    # 5060 W split 40/33/27 % over L1..L3 at 230 V: 8.8, 7.3 and 5.9 A.
    assert all(a in result.output for a in ("8.8", "7.3", "5.9"))
    assert "5060" in result.output


def test_meters_json(tmp_path: Path, live_sdm630: ModbusMeterServer) -> None:
    site = _site(tmp_path, live_sdm630.port)
    result = CliRunner().invoke(app, ["meters", "--site", str(site), "--json"])
    assert result.exit_code == 0, result.output
    [status] = json.loads(result.output)
    assert status["meter_id"] == "house"
    assert status["latest"]["current_a"] == pytest.approx([5060 * s / 230 for s in
                                                           (0.40, 0.33, 0.27)], rel=1e-5)
    assert status["stale"] is False


def test_meters_reports_a_dead_meter(tmp_path: Path, live_sdm630: ModbusMeterServer) -> None:
    live_sdm630.fault = "exception"
    site = _site(tmp_path, live_sdm630.port)
    result = CliRunner().invoke(app, ["meters", "--site", str(site), "--timeout", "1"])
    assert result.exit_code == 1
    assert "failed" in result.output
    assert "exception reply 4 (device failure)" in result.output
    assert "check model and unit_id" in result.output
    live_sdm630.fault = "silent"
    result = CliRunner().invoke(app, ["meters", "--site", str(site), "--timeout", "1"])
    assert result.exit_code == 1
    assert "no answer: is the meter (or its gateway) on and reachable" in result.output


def test_meters_with_a_bad_site_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.read_text(encoding="utf-8").replace("model: sdm630", "model: sdm9"),
                   encoding="utf-8")
    result = CliRunner().invoke(app, ["meters", "--site", str(bad)])
    assert result.exit_code == 2
    assert "model" in result.output


def test_profile_replay_helpers(tmp_path: Path) -> None:
    times, watts = _load_profile(None)
    assert len(times) == 168
    assert watts[0] == pytest.approx(10_700.0)
    mid = _power_at(times, watts, 1800.0)  # half way between the first two hours
    assert mid == pytest.approx((watts[0] + watts[1]) / 2)
    assert _power_at(times, watts, 168 * 3600.0) == pytest.approx(watts[0])  # wraps around
    v = profile_values(2300.0)
    assert v[Qty.CURRENT_L1] == pytest.approx(4.0)
    bad = tmp_path / "p.csv"
    bad.write_text("time,kW\n2019-01-01 00:00,1.0\nyesterday,2\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"p.csv:3"):
        _load_profile(bad)


def test_sim_meter_serves_and_stops() -> None:
    result = CliRunner().invoke(app, ["sim-meter", "--port", "0", "--for", "0.6",
                                      "--model", "em24"])
    assert result.exit_code == 0, result.output
    assert "em24 on 127.0.0.1:" in result.output
    result = CliRunner().invoke(app, ["sim-meter", "--model", "nope"])
    assert result.exit_code == 2


def test_sim_meter_and_meters_as_processes(tmp_path: Path) -> None:
    # The README's flow: `ampshare sim-meter` in one terminal, `ampshare meters` in another.
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    code = "import sys; from ampshare.cli import main; sys.argv[0] = 'ampshare'; main()"
    sim = subprocess.Popen([sys.executable, "-c", code, "sim-meter", "--port", str(port),
                            "--scale", "0.3", "--for", "20"], text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert sim.stdout is not None
        assert f"sdm630 on 127.0.0.1:{port}" in sim.stdout.readline()  # listening now
        done = subprocess.run([sys.executable, "-c", code, "meters", "--site",
                               str(_site(tmp_path, port)), "--json"],
                              capture_output=True, text=True, timeout=30, check=False)
        assert done.returncode == 0, done.stderr
        [status] = json.loads(done.stdout)
        latest = status["latest"]
        # The packaged building week at 0.3 scale: a few kW, split 40/33/27 % over the lines.
        assert 500.0 < latest["power_w"] < 20_000.0
        l1, l2, l3 = latest["current_a"]
        assert l1 == pytest.approx(latest["power_w"] * 0.40 / 230.0, rel=0.05)
        assert l1 > l2 > l3 > 0
        assert latest["voltage_v"] == [230.0, 230.0, 230.0]
    finally:
        sim.terminate()
        sim.communicate(timeout=10)
