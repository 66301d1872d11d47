"""OCPP 2.0.1, central-system side: TransactionEvent and friends -> tracker; limits out."""

from __future__ import annotations

import logging
from typing import Any

from ocpp.v201 import ChargePoint as _Cp201
from ocpp.v201 import call, call_result

from ampshare.adapters.ocpp._base import Capabilities, LinkBase
from ampshare.adapters.ocpp._hub import Hub
from ampshare.adapters.ocpp._lib import after, checked_status, fast_call, on
from ampshare.adapters.ocpp._lib import call as ocpp_call
from ampshare.adapters.ocpp._profiles import ProfileSpec, profile_v201
from ampshare.adapters.ocpp._units import Sample, format_time, parse_time, sample_from_v201
from ampshare.core.snapshot import ChargerStatus
from ampshare.errors import InputError

_PROFILE_STATUSES = ("Accepted", "Rejected")

__all__ = ["CsmsV201"]

log = logging.getLogger("ampshare.ocpp")

# 2.0.1 charging states and connector states, mapped onto the (1.6-named) core status.
_CHARGING_STATE = {
    "Charging": ChargerStatus.CHARGING, "EVConnected": ChargerStatus.PREPARING,
    "SuspendedEV": ChargerStatus.SUSPENDED_EV, "SuspendedEVSE": ChargerStatus.SUSPENDED_EVSE,
    "Idle": ChargerStatus.PREPARING,
}
_CONNECTOR_STATUS = {
    "Available": ChargerStatus.AVAILABLE, "Occupied": ChargerStatus.PREPARING,
    "Reserved": ChargerStatus.RESERVED, "Unavailable": ChargerStatus.UNAVAILABLE,
    "Faulted": ChargerStatus.FAULTED,
}
_PROBE = (("SmartChargingCtrlr", "Enabled"), ("SmartChargingCtrlr", "RateUnit"),
          ("SmartChargingCtrlr", "ProfileStackLevel"))


def meter_samples(meter_value: list[dict[str, Any]] | None) -> list[Sample]:
    out: list[Sample] = []
    for mv in meter_value or []:
        try:
            t_s = parse_time(str(mv["timestamp"]))
        except (KeyError, InputError):
            continue
        for sv in mv.get("sampled_value", []):
            try:
                out.append(sample_from_v201(t_s, sv))
            except InputError as e:
                log.info("dropped sampled value: %s", e)
    return out


def capabilities_from_variables(results: list[dict[str, Any]]) -> Capabilities:
    vals = {(r["component"]["name"], r["variable"]["name"]): str(r.get("attribute_value", ""))
            for r in results if r.get("attribute_status") == "Accepted"}
    caps = Capabilities()
    enabled = vals.get(("SmartChargingCtrlr", "Enabled"))
    units = tuple(u.strip() for u in vals.get(("SmartChargingCtrlr", "RateUnit"), "").split(",")
                  if u.strip() in ("A", "W"))
    stack = vals.get(("SmartChargingCtrlr", "ProfileStackLevel"), "")
    return Capabilities(smart_charging=enabled is None or enabled.lower() == "true",
                        rate_units=units or caps.rate_units,
                        max_stack_level=int(stack) if stack.isdigit() else caps.max_stack_level)


def _limit_a(limit: float, unit: str, phases: int | None, volts: float) -> float:
    return limit if unit == "A" else limit / (volts * (phases or 3))


class CsmsV201(LinkBase, _Cp201):  # type: ignore[misc]
    """One connected 2.0.1 charging station, seen from the central system."""

    def __init__(self, cp_id: str, connection: Any, hub: Hub) -> None:
        _Cp201.__init__(self, cp_id, connection, response_timeout=hub.settings.call_timeout_s)
        self._init_link(hub)

    def _now(self) -> str:
        return format_time(self.hub.clock.now_s())

    @on("BootNotification")
    def on_boot(self, **_: Any) -> Any:
        self.tracker.seen(self.hub.clock.now_s())
        self.hub.notify()
        return call_result.BootNotification(current_time=self._now(),
                                            interval=self.hub.settings.heartbeat_interval_s,
                                            status="Accepted")

    @after("BootNotification")
    def after_boot(self, **_: Any) -> None:
        self.booted.set()

    @on("Heartbeat")
    def on_heartbeat(self, **_: Any) -> Any:
        self.tracker.seen(self.hub.clock.now_s())
        return call_result.Heartbeat(current_time=self._now())

    @on("StatusNotification")
    def on_status(self, connector_status: str, evse_id: int, **_: Any) -> Any:
        status = _CONNECTOR_STATUS.get(connector_status, ChargerStatus.UNAVAILABLE)
        # "Occupied" says less than the transaction's charging state; keep that if we have it.
        if not (status is ChargerStatus.PREPARING and self.tracker.transaction is not None):
            self.tracker.on_status(status, self.hub.clock.now_s())
            self.hub.notify()
        return call_result.StatusNotification()

    @on("Authorize")
    def on_authorize(self, **_: Any) -> Any:
        return call_result.Authorize(id_token_info={"status": "Accepted"})

    @on("TransactionEvent")
    def on_transaction_event(self, event_type: str, timestamp: str,
                             transaction_info: dict[str, Any], **kw: Any) -> Any:
        tx_id = str(transaction_info["transaction_id"])
        evse = kw.get("evse") or {}
        t_s = parse_time(timestamp)
        if event_type == "Started" or tx_id not in self.tracker.transactions:
            # Updated/Ended for an unknown id: started before our restart; adopt it.
            token = (kw.get("id_token") or {}).get("id_token")
            self.tracker.start_tx(tx_id=tx_id, connector_id=int(evse.get("id", 1)), t_s=t_s,
                                  meter_start_wh=self._meter_start(kw.get("meter_value")),
                                  user_id=token)
        self.tracker.on_samples(meter_samples(kw.get("meter_value")), tx_id)
        state = transaction_info.get("charging_state")
        if state in _CHARGING_STATE and self.tracker.on_status(_CHARGING_STATE[state], t_s):
            self.spawn(self.reassert())
        self.check_offered()
        if event_type == "Ended":
            self.tracker.end_tx(tx_id, None)
        self.tracker.seen(self.hub.clock.now_s())
        self.hub.notify()
        if kw.get("id_token"):
            return call_result.TransactionEvent(id_token_info={"status": "Accepted"})
        return call_result.TransactionEvent()

    @after("TransactionEvent")
    def after_transaction_event(self, event_type: str, **_: Any) -> None:
        live = self.hub.lives.get(self.id)
        if event_type == "Started" and live is not None:
            self.spawn(self.write_live(live))

    @staticmethod
    def _meter_start(meter_value: list[dict[str, Any]] | None) -> float | None:
        regs = [s.value for s in meter_samples(meter_value)
                if s.measurand == "Energy.Active.Import.Register" and s.terminal is None]
        return min(regs) if regs else None

    @on("MeterValues")
    def on_meter_values(self, evse_id: int, meter_value: list[dict[str, Any]], **_: Any) -> Any:
        self.tracker.on_samples(meter_samples(meter_value))
        self.tracker.seen(self.hub.clock.now_s())
        self.check_offered()
        self.hub.notify()
        return call_result.MeterValues()

    @on("NotifyEVChargingNeeds")
    def on_ev_needs(self, charging_needs: dict[str, Any], evse_id: int, **_: Any) -> Any:
        ac = charging_needs.get("ac_charging_parameters") or {}
        dep = charging_needs.get("departure_time")
        ok = self.tracker.on_needs(
            departure_s=parse_time(dep) if dep else None,
            energy_wh=float(ac["energy_amount"]) if "energy_amount" in ac else None,
            ev_max_current_a=float(ac["ev_max_current"]) if "ev_max_current" in ac else None)
        self.hub.notify()
        return call_result.NotifyEVChargingNeeds(status="Accepted" if ok else "Rejected")

    @on("NotifyChargingLimit")
    def on_charging_limit(self, charging_limit: dict[str, Any], **kw: Any) -> Any:
        caps = []
        for sched in kw.get("charging_schedule") or []:
            for p in sched.get("charging_schedule_period", [])[:1]:
                caps.append(_limit_a(float(p["limit"]), sched["charging_rate_unit"],
                                     p.get("number_phases"), self.hub.voltage.line_to_neutral_v))
        # An external limit is a hard cap until a new notification replaces it.
        self.tracker.hard_cap_a = min(caps) if caps else None
        log.info("%s: external limit from %s: %s A", self.id,
                 charging_limit.get("charging_limit_source"), self.tracker.hard_cap_a)
        self.hub.notify()
        return call_result.NotifyChargingLimit()

    @on("DataTransfer")
    def on_data_transfer(self, vendor_id: str, **_: Any) -> Any:
        return call_result.DataTransfer(status="UnknownVendorId")

    # --- outgoing -----------------------------------------------------------------------
    async def _probe(self) -> Capabilities:
        res = await ocpp_call(self, call.GetVariables(get_variable_data=[
            {"component": {"name": c}, "variable": {"name": v}} for c, v in _PROBE]))
        return capabilities_from_variables(res.get_variable_result or [])

    async def _configure_metering(self) -> None:
        s = self.hub.settings
        data = [("TxUpdatedInterval", str(s.meter_sample_interval_s)),
                ("TxUpdatedMeasurands", ",".join(self.hub.options.measurands))]
        res = await ocpp_call(self, call.SetVariables(set_variable_data=[
            {"attribute_value": v, "component": {"name": "SampledDataCtrlr"},
             "variable": {"name": n}} for n, v in data]))
        for r in res.set_variable_result or []:
            if r.get("attribute_status") not in ("Accepted", "RebootRequired"):
                log.info("%s: %s not accepted", self.id, r.get("variable"))

    async def _set_profile(self, spec: ProfileSpec) -> str:
        res = await fast_call(self, "SetChargingProfile", {
            "evseId": spec.connector_id, "chargingProfile": profile_v201(spec)})
        return checked_status(self.id, res.get("status"), _PROFILE_STATUSES)

    async def _trigger(self, message: str) -> str:
        res = await ocpp_call(self, call.TriggerMessage(requested_message=message))
        return str(res.status)

    async def composite_limit(self, connector_id: int) -> float | None:
        res = await ocpp_call(self, call.GetCompositeSchedule(
            duration=60, evse_id=connector_id, charging_rate_unit=self._unit()))
        if res.status != "Accepted" or not res.schedule:
            return None
        periods = res.schedule.get("charging_schedule_period") or []
        return float(periods[0]["limit"]) if periods else None
