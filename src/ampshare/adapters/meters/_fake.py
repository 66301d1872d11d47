"""``FakeMeter``: the shipped fake of ``MeterSource`` for tests, demos and the simulator."""

from __future__ import annotations

from dataclasses import replace

from ampshare.clock import Clock
from ampshare.core.snapshot import MeterReading
from ampshare.errors import DeviceError, DeviceUnavailable

__all__ = ["FakeMeter"]


class FakeMeter:
    """A meter whose next answer is set by hand.

    ``set(...)`` sets what the next reads return (stamped with ``clock``'s time);
    ``fail(error)`` makes every read raise ``error`` until ``set`` or ``recover`` is called.
    It keeps the same contract as a real driver, so the conformance check runs against it.
    """

    def __init__(self, meter_id: str, clock: Clock, *, current_a: tuple[float, float, float]
                 | None = (0.0, 0.0, 0.0)) -> None:
        self._meter_id = meter_id
        self._clock = clock
        self._template = MeterReading(meter_id=meter_id, t_s=0.0, current_a=current_a)
        self._error: DeviceError | None = None
        self.reads = 0
        self.closed = False

    @property
    def meter_id(self) -> str:
        return self._meter_id

    def set(self, *, current_a: tuple[float, float, float] | None = None,
            power_w: float | None = None, voltage_v: tuple[float, float, float] | None = None,
            energy_wh: float | None = None) -> None:
        """Answer the next reads with these values (and stop failing)."""
        self._template = MeterReading(meter_id=self._meter_id, t_s=0.0, current_a=current_a,
                                      power_w=power_w, voltage_v=voltage_v, energy_wh=energy_wh)
        self._error = None

    def fail(self, error: DeviceError | None = None) -> None:
        """Make reads raise ``error`` (default: the meter went silent)."""
        self._error = error or DeviceUnavailable(f"meter {self._meter_id}: no answer (fake)")

    def recover(self) -> None:
        """Answer again with the last values set."""
        self._error = None

    async def read(self) -> MeterReading:
        self.reads += 1
        self.closed = False
        if self._error is not None:
            raise self._error
        return replace(self._template, t_s=self._clock.now_s())

    async def close(self) -> None:
        self.closed = True
