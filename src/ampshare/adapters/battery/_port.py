"""The ``BatteryLink`` port: a battery that can be read and given a power setpoint."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ampshare.core.snapshot import BatteryReading

__all__ = ["BatteryLink"]


@runtime_checkable
class BatteryLink(Protocol):
    """A stationary battery (its inverter).

    ``read`` returns one sample stamped with the injected clock's time; ``set_power`` asks for
    ``power_w`` (charge positive, discharge negative, 0 idle). Both raise ``DeviceUnavailable``
    when the battery does not answer and ``DeviceProtocolError`` when the answer is unusable,
    and nothing else. ``close`` releases the connection (idempotent; a later call reconnects).
    """

    @property
    def battery_id(self) -> str:
        """The id of the battery in the site file."""
        ...

    async def read(self) -> BatteryReading:
        """Take one sample."""
        ...

    async def set_power(self, power_w: float) -> None:
        """Ask the battery for this power."""
        ...

    async def close(self) -> None:
        """Release the connection (idempotent)."""
        ...
