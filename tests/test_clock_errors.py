"""The Clock port and the error hierarchy."""

from __future__ import annotations

import pytest

from ampshare.clock import Clock, SystemClock, VirtualClock
from ampshare.errors import AmpshareError, ConfigError, ConfigIssue, DeviceError, DeviceUnavailable


def test_virtual_clock_moves_only_forward() -> None:
    clock = VirtualClock(100.0)
    assert clock.now_s() == 100.0
    assert clock.advance(2.5) == 102.5
    clock.set(200.0)
    assert clock.now_s() == 200.0
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)
    with pytest.raises(ValueError, match="backwards"):
        clock.set(10.0)


def test_both_clocks_satisfy_the_port() -> None:
    assert isinstance(SystemClock(), Clock)
    assert isinstance(VirtualClock(), Clock)
    assert SystemClock().now_s() > 1.7e9


def test_config_error_lists_every_issue_with_file_line_and_path() -> None:
    err = ConfigError([
        ConfigIssue(file="site.yaml", path="nodes[0].limit_a", message="must be > 0", line=7),
        ConfigIssue(file="site.yaml", path="chargers[1].node", message="unknown node 'x'",
                    line=12, hint="one of: main, garage"),
    ])
    text = str(err)
    assert "site.yaml:7: nodes[0].limit_a: must be > 0" in text
    assert "site.yaml:12: chargers[1].node: unknown node 'x' (one of: main, garage)" in text
    assert isinstance(err, AmpshareError)
    assert issubclass(DeviceUnavailable, DeviceError)
