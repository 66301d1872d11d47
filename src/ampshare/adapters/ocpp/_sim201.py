"""A simulated OCPP 2.0.1 charging station (charge-point role of the ``ocpp`` library)."""

from __future__ import annotations

import contextlib
import itertools
from typing import Any

from ocpp.v201 import ChargePoint as _Cp201
from ocpp.v201 import call, call_result

from ampshare.adapters.ocpp._lib import after, on
from ampshare.adapters.ocpp._lib import call as ocpp_call
from ampshare.adapters.ocpp.sim import SimBase, SimOptions, _profile_from, stamp
from ampshare.clock import Clock
from ampshare.errors import DeviceError

__all__ = ["SimChargePoint201"]

_PURPOSE = {"ChargingStationMaxProfile": "ChargePointMaxProfile"}
_tx_numbers = itertools.count(1)


class SimChargePoint201(SimBase, _Cp201):  # type: ignore[misc]
    """Boots, runs TransactionEvents, follows charging profiles, reports meter values."""

    protocol = "2.0.1"

    def __init__(self, cp_id: str, connection: Any, *, options: SimOptions,
                 clock: Clock) -> None:
        _Cp201.__init__(self, cp_id, connection,
                         response_timeout=options.response_timeout_s)
        self._init_sim(options, clock)
        self._seq = 0

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    # --- charging station -> CSMS ------------------------------------------------------
    async def boot(self) -> Any:
        return await ocpp_call(self, call.BootNotification(
            charging_station={"model": self.opts.model, "vendor_name": self.opts.vendor},
            reason="PowerUp"))

    async def status(self, status: str, connector_id: int | None = None) -> None:
        mapped = {"Preparing": "Occupied", "Charging": "Occupied", "Finishing": "Occupied",
                  "SuspendedEV": "Occupied", "SuspendedEVSE": "Occupied"}.get(status, status)
        await ocpp_call(self, call.StatusNotification(
            timestamp=stamp(self.clock), connector_status=mapped, evse_id=self.connector_id,
            connector_id=1 if connector_id is None else connector_id))

    def _meter_value(self, t_s: float | None = None) -> dict[str, Any]:
        def one(m: str, ph: str | None, v: float, u: str) -> dict[str, Any]:
            sv: dict[str, Any] = {"value": v, "measurand": m, "context": "Sample.Periodic",
                                  "unit_of_measure": {"unit": u}}
            if ph:
                sv["phase"] = ph
            return sv
        return {"timestamp": stamp(self.clock, t_s),
                "sampled_value": [one(*r) for r in self._readings()]}

    async def _event(self, event_type: str, trigger: str, state: str | None = None,
                     t_s: float | None = None, **extra: Any) -> Any:
        info: dict[str, Any] = {"transaction_id": self.tx_id}
        if state:
            info["charging_state"] = state
        return await ocpp_call(self, call.TransactionEvent(
            event_type=event_type, timestamp=stamp(self.clock, t_s), trigger_reason=trigger,
            seq_no=self._next_seq(), transaction_info=info,
            meter_value=[self._meter_value(t_s)], evse={"id": self.connector_id,
                                                        "connector_id": 1}, **extra))

    async def start_transaction(self, id_tag: str = "TAG1") -> str:
        await self.status("Occupied")
        self.tx_id = f"{self.id}-tx{next(_tx_numbers)}"
        self._begin()
        self.reported_state = self.car_state()
        await self._event("Started", "Authorized", self.reported_state,
                          id_token={"id_token": id_tag, "type": "ISO14443"})
        return self.tx_id

    async def _send_state(self, state: str) -> None:
        await self._event("Updated", "ChargingStateChanged", state)

    async def meter_values(self, t_s: float | None = None) -> None:
        if self.tx_id is None:
            await ocpp_call(self, call.MeterValues(evse_id=self.connector_id,
                                                   meter_value=[self._meter_value(t_s)]))
            return
        if t_s is None:
            await self.report_state()
        await self._event("Updated", "MeterValuePeriodic", self.reported_state, t_s=t_s)

    async def charging_state(self, state: str) -> None:
        """Report ``state`` whatever the car does (tests of the central system)."""
        self.reported_state = state
        await self._event("Updated", "ChargingStateChanged", state)

    async def ev_needs(self, *, departure_s: float, energy_wh: float,
                       max_current_a: float = 32.0) -> Any:
        return await ocpp_call(self, call.NotifyEVChargingNeeds(
            evse_id=self.connector_id, charging_needs={
                "requested_energy_transfer": "AC_three_phase",
                "departure_time": stamp(self.clock, departure_s),
                "ac_charging_parameters": {"energy_amount": int(energy_wh),
                                           "ev_min_current": 6,
                                           "ev_max_current": int(max_current_a),
                                           "ev_max_voltage": 400}}))

    async def external_limit(self, limit_a: float, source: str = "EMS") -> None:
        await ocpp_call(self, call.NotifyChargingLimit(
            charging_limit={"charging_limit_source": source}, evse_id=self.connector_id,
            charging_schedule=[{"id": 1, "charging_rate_unit": "A",
                                "charging_schedule_period": [
                                    {"start_period": 0, "limit": limit_a}]}]))

    async def stop_transaction(self) -> None:
        if self.tx_id is None:
            return
        await self._event("Ended", "EVDeparted", "Idle")
        self._end()
        await self.status("Available")

    async def send_raw(self, frame: str) -> None:
        await self._connection.send(frame)

    async def close(self) -> None:
        await self._connection.close()
        if self.run_task is not None:
            self.run_task.cancel()

    # --- CSMS -> charging station ------------------------------------------------------
    @on("GetVariables")
    def on_get_variables(self, get_variable_data: list[dict[str, Any]], **_: Any) -> Any:
        values = {("SmartChargingCtrlr", "Enabled"): str(self.opts.smart_charging).lower(),
                  ("SmartChargingCtrlr", "RateUnit"): ",".join(self.opts.rate_units),
                  ("SmartChargingCtrlr", "ProfileStackLevel"): str(self.opts.max_stack_level)}
        out = []
        for d in get_variable_data:
            key = (d["component"]["name"], d["variable"]["name"])
            r: dict[str, Any] = {"component": d["component"], "variable": d["variable"],
                                 "attribute_status": "Accepted" if key in values
                                 else "UnknownVariable"}
            if key in values:
                r["attribute_value"] = values[key]
            out.append(r)
        return call_result.GetVariables(get_variable_result=out)

    @on("SetVariables")
    def on_set_variables(self, set_variable_data: list[dict[str, Any]], **_: Any) -> Any:
        out = []
        for d in set_variable_data:
            self.config[d["variable"]["name"]] = str(d["attribute_value"])
            out.append({"attribute_status": "Accepted", "component": d["component"],
                        "variable": d["variable"]})
        return call_result.SetVariables(set_variable_result=out)

    @on("SetChargingProfile")
    def on_set_charging_profile(self, evse_id: int, charging_profile: dict[str, Any],
                                **_: Any) -> Any:
        d = charging_profile
        purpose = str(d["charging_profile_purpose"])
        prof = _profile_from(d, evse_id, d["charging_schedule"][0], _PURPOSE.get(purpose, purpose))
        return call_result.SetChargingProfile(status=self.accept_profile(prof))

    @after("SetChargingProfile")
    async def after_set_charging_profile(self, **_: Any) -> None:
        await self.report_state()  # a new limit may pause or resume the car

    @on("ClearChargingProfile")
    def on_clear_charging_profile(self, charging_profile_id: int | None = None,
                                  **_: Any) -> Any:
        n = self.store.clear(charging_profile_id)
        self._follow()
        return call_result.ClearChargingProfile(status="Accepted" if n else "Unknown")

    @after("ClearChargingProfile")
    async def after_clear_charging_profile(self, **_: Any) -> None:
        await self.report_state()

    @on("TriggerMessage")
    def on_trigger_message(self, requested_message: str, **_: Any) -> Any:
        known = requested_message in ("StatusNotification", "TransactionEvent", "MeterValues",
                                      "Heartbeat")
        known = known and self.opts.answers_triggers
        return call_result.TriggerMessage(status="Accepted" if known else "NotImplemented")

    @after("TriggerMessage")
    async def after_trigger_message(self, requested_message: str, **_: Any) -> None:
        if not self.opts.answers_triggers:
            return
        with contextlib.suppress(DeviceError):  # the socket closed meanwhile
            if requested_message == "StatusNotification":
                await self.status("Occupied" if self.tx_id else "Available")
            elif requested_message == "TransactionEvent" and self.tx_id is not None:
                self.reported_state = self.car_state()
                await self._event("Updated", "Trigger", self.reported_state)
            elif requested_message == "MeterValues":
                await self.meter_values()
            elif requested_message == "Heartbeat":
                await ocpp_call(self, call.Heartbeat())

    @on("GetCompositeSchedule")
    def on_get_composite_schedule(self, duration: int, evse_id: int,
                                  charging_rate_unit: str | None = None, **_: Any) -> Any:
        self.composite_requests += 1
        amps = self.offered_a()
        unit = charging_rate_unit or "A"
        limit = amps if unit == "A" else amps * self.opts.volts * self.opts.ev.phases
        return call_result.GetCompositeSchedule(status="Accepted", schedule={
            "evse_id": evse_id, "duration": duration, "schedule_start": stamp(self.clock),
            "charging_rate_unit": unit,
            "charging_schedule_period": [{"start_period": 0, "limit": round(limit, 1)}]})
