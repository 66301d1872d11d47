"""One coordinator per meter: polls it, remembers its last data, success and error.

Modelled on Home Assistant's ``DataUpdateCoordinator``: the rest of the system never talks to
a meter directly; it reads ``latest`` / ``status()`` or gets each fresh sample through
``on_reading`` (the control loop is event-driven: a fresh reading triggers a cycle). A meter
going away is logged once at WARNING and its return once at INFO, so a dead meter does not
flood the log once per second.

Staleness is judged on the sample's own ``t_s`` against the injected clock: a reading older
than ``timeout_s`` is stale, and the controller replaces it with its worst case.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from ampshare.adapters.meters._port import MeterSource
from ampshare.clock import Clock
from ampshare.core.snapshot import MeterReading
from ampshare.errors import DeviceError, DeviceProtocolError, DeviceUnavailable

__all__ = ["MeterCoordinator", "MeterStatus"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class MeterStatus:
    """A snapshot of one coordinator (what ``ampshare meters`` and the API show).

    ``last_success_s`` / ``last_error_s`` are clock times [s since epoch]; ``failures`` counts
    consecutive failed reads (0 after a success).
    """

    meter_id: str
    latest: MeterReading | None
    last_success_s: float | None
    last_error: str | None
    last_error_s: float | None
    failures: int
    stale: bool


class MeterCoordinator:
    """Poll ``source`` every ``poll_interval_s`` seconds until stopped.

    ``timeout_s`` is how old a reading may be before it is stale; a single read is also cut
    off after it (a read slower than that could not yield a fresh value anyway).
    ``on_reading`` is called with every good sample; it must not block (hand the sample to a
    queue or set an event).
    """

    def __init__(self, source: MeterSource, clock: Clock, *, poll_interval_s: float = 1.0,
                 timeout_s: float = 10.0,
                 on_reading: Callable[[MeterReading], None] | None = None) -> None:
        if poll_interval_s <= 0 or timeout_s <= 0:
            raise ValueError("poll_interval_s and timeout_s must be positive")
        self.source = source
        self._clock = clock
        self.poll_interval_s = poll_interval_s
        self.timeout_s = timeout_s
        self._on_reading = on_reading
        self.latest: MeterReading | None = None
        self.last_success_s: float | None = None
        self.last_error: DeviceError | None = None
        self.last_error_s: float | None = None
        self.failures = 0
        self._lost = False
        self._stop = asyncio.Event()

    @property
    def meter_id(self) -> str:
        return self.source.meter_id

    def is_stale(self, now_s: float | None = None) -> bool:
        """True when there is no reading or the latest is older than ``timeout_s``."""
        if self.latest is None:
            return True
        now = self._clock.now_s() if now_s is None else now_s
        return now - self.latest.t_s > self.timeout_s

    def status(self) -> MeterStatus:
        return MeterStatus(
            meter_id=self.meter_id, latest=self.latest, last_success_s=self.last_success_s,
            last_error=None if self.last_error is None else str(self.last_error),
            last_error_s=self.last_error_s, failures=self.failures, stale=self.is_stale())

    async def poll_once(self) -> MeterReading | None:
        """Read the meter once; returns the sample, or None when the read failed."""
        try:
            async with asyncio.timeout(self.timeout_s):
                reading = await self.source.read()
        except TimeoutError:
            self._failed(DeviceUnavailable(
                f"meter {self.meter_id}: no answer within {self.timeout_s:g} s"))
            return None
        except DeviceError as exc:
            self._failed(exc)
            return None
        except Exception as exc:
            # A driver bug (a foreign exception the conformance check should have caught):
            # counted as an unusable answer, with its traceback once, and polling goes on, as
            # Home Assistant's coordinator does; a meter is never dropped for good by one bug.
            if not self._lost:
                log.exception("meter %s: unexpected error from its driver", self.meter_id)
            self._failed(DeviceProtocolError(
                f"meter {self.meter_id}: driver error {type(exc).__name__}: {exc}"))
            return None
        self._succeeded(reading)
        return reading

    async def run(self) -> None:
        """Poll until ``stop()`` (or cancellation); closes the source on the way out."""
        loop = asyncio.get_running_loop()
        self._stop.clear()
        try:
            while not self._stop.is_set():
                started = loop.time()
                await self.poll_once()
                delay = max(0.0, self.poll_interval_s - (loop.time() - started))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._stop.wait()
        finally:
            await self.source.close()

    def stop(self) -> None:
        """Ask ``run`` to finish after the current read."""
        self._stop.set()

    def _succeeded(self, reading: MeterReading) -> None:
        if self._lost:
            log.info("meter %s is back after %d failed reads", self.meter_id, self.failures)
        self._lost = False
        self.failures = 0
        self.latest = reading
        self.last_success_s = self._clock.now_s()
        if self._on_reading is not None:
            self._on_reading(reading)

    def _failed(self, error: DeviceError) -> None:
        self.failures += 1
        self.last_error = error
        self.last_error_s = self._clock.now_s()
        if not self._lost:
            log.warning("meter %s lost: %s", self.meter_id, error)
        else:
            log.debug("meter %s still lost: %s", self.meter_id, error)
        self._lost = True
