"""A simulated OCPP 1.6J charge point (charge-point role of the ``ocpp`` library)."""

from __future__ import annotations

import contextlib
from typing import Any

from ocpp.v16 import ChargePoint as _Cp16
from ocpp.v16 import call, call_result

from ampshare.adapters.ocpp._lib import after, on
from ampshare.adapters.ocpp._lib import call as ocpp_call
from ampshare.adapters.ocpp.sim import SimBase, SimOptions, _profile_from, stamp
from ampshare.clock import Clock
from ampshare.errors import DeviceError

__all__ = ["SimChargePoint16"]


class SimChargePoint16(SimBase, _Cp16):  # type: ignore[misc]
    """Boots, starts/stops transactions, follows charging profiles, reports meter values."""

    protocol = "1.6"

    def __init__(self, cp_id: str, connection: Any, *, options: SimOptions,
                 clock: Clock) -> None:
        _Cp16.__init__(self, cp_id, connection,
                         response_timeout=options.response_timeout_s)
        self._init_sim(options, clock)

    # --- charge point -> central system ------------------------------------------------
    async def boot(self) -> Any:
        return await ocpp_call(self, call.BootNotification(
            charge_point_model=self.opts.model, charge_point_vendor=self.opts.vendor))

    async def status(self, status: str, connector_id: int | None = None) -> None:
        await ocpp_call(self, call.StatusNotification(
            connector_id=self.connector_id if connector_id is None else connector_id,
            error_code="NoError", status=status, timestamp=stamp(self.clock)))

    async def start_transaction(self, id_tag: str = "TAG1") -> str:
        await self.status("Preparing")
        res = await ocpp_call(self, call.StartTransaction(
            connector_id=self.connector_id, id_tag=id_tag,
            meter_start=int(self.meter_wh), timestamp=stamp(self.clock)))
        self.tx_id = str(res.transaction_id)
        self._begin()
        await self.report_state()  # Charging, or SuspendedEVSE while its profile says 0 A
        return self.tx_id

    async def _send_state(self, state: str) -> None:
        await self.status(state)

    def _meter_value(self, t_s: float | None = None) -> dict[str, Any]:
        return {"timestamp": stamp(self.clock, t_s), "sampled_value": [
            {"value": f"{v:g}", "measurand": m, "unit": u, "context": "Sample.Periodic",
             **({"phase": ph} if ph else {})} for m, ph, v, u in self._readings()]}

    async def meter_values(self, t_s: float | None = None) -> None:
        """Report what flows now (stamped ``t_s`` to replay an old sample)."""
        if t_s is None:
            await self.report_state()
        await ocpp_call(self, call.MeterValues(
            connector_id=self.connector_id, meter_value=[self._meter_value(t_s)],
            transaction_id=int(self.tx_id) if self.tx_id else None))

    async def stop_transaction(self) -> None:
        if self.tx_id is None:
            return
        self._readings()
        tx = int(self.tx_id)
        self._end()
        await ocpp_call(self, call.StopTransaction(
            meter_stop=int(self.meter_wh), timestamp=stamp(self.clock), transaction_id=tx))
        await self.status("Finishing")

    async def send_raw(self, frame: str) -> None:
        """Put any frame on the wire (tests of malformed input)."""
        await self._connection.send(frame)

    async def close(self) -> None:
        await self._connection.close()
        if self.run_task is not None:
            self.run_task.cancel()

    # --- central system -> charge point ------------------------------------------------
    @on("GetConfiguration")
    def on_get_configuration(self, key: list[str] | None = None, **_: Any) -> Any:
        units = ",".join({"A": "Current", "W": "Power"}[u] for u in self.opts.rate_units)
        profiles = "Core,SmartCharging" if self.opts.smart_charging else "Core"
        values = {"SupportedFeatureProfiles": profiles,
                  "ChargingScheduleAllowedChargingRateUnit": units,
                  "ChargeProfileMaxStackLevel": str(self.opts.max_stack_level),
                  "NumberOfConnectors": "1", **self.config}
        keys = key or list(values)
        return call_result.GetConfiguration(
            configuration_key=[{"key": k, "readonly": False, "value": values[k]}
                               for k in keys if k in values],
            unknown_key=[k for k in keys if k not in values] or None)

    @on("ChangeConfiguration")
    def on_change_configuration(self, key: str, value: str, **_: Any) -> Any:
        self.config[key] = value
        return call_result.ChangeConfiguration(status="Accepted")

    @on("SetChargingProfile")
    def on_set_charging_profile(self, connector_id: int, cs_charging_profiles: dict[str, Any],
                                **_: Any) -> Any:
        d = cs_charging_profiles
        prof = _profile_from(d, connector_id, d["charging_schedule"],
                             str(d["charging_profile_purpose"]))
        return call_result.SetChargingProfile(status=self.accept_profile(prof))

    @after("SetChargingProfile")
    async def after_set_charging_profile(self, **_: Any) -> None:
        await self.report_state()  # a new limit may pause or resume the car

    @on("ClearChargingProfile")
    def on_clear_charging_profile(self, id: int | None = None, **_: Any) -> Any:
        n = self.store.clear(id)
        self._follow()
        return call_result.ClearChargingProfile(status="Accepted" if n else "Unknown")

    @after("ClearChargingProfile")
    async def after_clear_charging_profile(self, **_: Any) -> None:
        await self.report_state()

    @on("TriggerMessage")
    def on_trigger_message(self, requested_message: str, **_: Any) -> Any:
        known = requested_message in ("StatusNotification", "MeterValues", "Heartbeat")
        known = known and self.opts.answers_triggers
        return call_result.TriggerMessage(status="Accepted" if known else "NotImplemented")

    @after("TriggerMessage")
    async def after_trigger_message(self, requested_message: str, **_: Any) -> None:
        if not self.opts.answers_triggers:
            return
        with contextlib.suppress(DeviceError):  # the socket closed meanwhile
            if requested_message == "StatusNotification":
                await self.status(self.car_state() or "Available")
            elif requested_message == "MeterValues":
                await self.meter_values()
            elif requested_message == "Heartbeat":
                await ocpp_call(self, call.Heartbeat())

    @on("GetCompositeSchedule")
    def on_get_composite_schedule(self, connector_id: int, duration: int,
                                  charging_rate_unit: str | None = None, **_: Any) -> Any:
        self.composite_requests += 1
        amps = self.offered_a()
        unit = charging_rate_unit or "A"
        limit = amps if unit == "A" else amps * self.opts.volts * self.opts.ev.phases
        return call_result.GetCompositeSchedule(
            status="Accepted", connector_id=connector_id, schedule_start=stamp(self.clock),
            charging_schedule={"charging_rate_unit": unit, "duration": duration,
                               "charging_schedule_period": [
                                   {"start_period": 0, "limit": round(limit, 1)}]})
