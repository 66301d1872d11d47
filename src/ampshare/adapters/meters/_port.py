"""The ``MeterSource`` port: anything that can be asked for one fresh meter sample."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ampshare.core.snapshot import MeterReading

__all__ = ["MeterSource"]


@runtime_checkable
class MeterSource(Protocol):
    """A meter the coordinator polls.

    ``read`` returns a sample stamped with the injected clock's time at which it was taken (for
    push sources such as MQTT and P1: when the newest value arrived). It raises
    ``DeviceUnavailable`` when the meter does not answer and ``DeviceProtocolError`` when the
    answer is unusable, and nothing else. ``close`` releases connections; it is idempotent and
    a later ``read`` reconnects.
    """

    @property
    def meter_id(self) -> str:
        """The id of the meter in the site file."""
        ...

    async def read(self) -> MeterReading:
        """Take one sample."""
        ...

    async def close(self) -> None:
        """Release the connection (idempotent)."""
        ...
