"""OCPP 1.6J, central-system side: messages in -> tracker, limits out -> SetChargingProfile."""

from __future__ import annotations

import logging
from typing import Any

from ocpp.v16 import ChargePoint as _Cp16
from ocpp.v16 import call, call_result

from ampshare.adapters.ocpp._base import Capabilities, LinkBase
from ampshare.adapters.ocpp._hub import Hub
from ampshare.adapters.ocpp._lib import after, checked_status, fast_call, on
from ampshare.adapters.ocpp._lib import call as ocpp_call
from ampshare.adapters.ocpp._profiles import ProfileSpec, profile_v16
from ampshare.adapters.ocpp._units import Sample, format_time, parse_time, sample_from_v16
from ampshare.core.snapshot import ChargerStatus
from ampshare.errors import InputError

_PROFILE_STATUSES = ("Accepted", "Rejected", "NotSupported")

__all__ = ["CsmsV16"]

log = logging.getLogger("ampshare.ocpp")

_CONFIG_KEYS = ["SupportedFeatureProfiles", "ChargingScheduleAllowedChargingRateUnit",
                "ChargeProfileMaxStackLevel", "NumberOfConnectors"]


def meter_samples(meter_value: list[dict[str, Any]]) -> list[Sample]:
    """1.6 ``meterValue`` entries -> samples; unusable values are dropped one by one."""
    out: list[Sample] = []
    for mv in meter_value:
        try:
            t_s = parse_time(str(mv["timestamp"]))
        except (KeyError, InputError):
            continue
        for sv in mv.get("sampled_value", []):
            try:
                out.append(sample_from_v16(t_s, sv))
            except InputError as e:
                log.info("dropped sampled value: %s", e)
    return out


def capabilities_from_config(keys: list[dict[str, Any]]) -> Capabilities:
    """GetConfiguration keys -> ``Capabilities``; absent keys keep the defaults."""
    values = {str(k.get("key")): str(k.get("value") or "") for k in keys}
    caps = Capabilities()
    profiles = values.get("SupportedFeatureProfiles")
    units = values.get("ChargingScheduleAllowedChargingRateUnit")
    parsed_units = tuple(
        {"current": "A", "power": "W"}[u.strip().lower()]
        for u in (units or "").split(",") if u.strip().lower() in ("current", "power"))
    stack = values.get("ChargeProfileMaxStackLevel", "")
    conns = values.get("NumberOfConnectors", "")
    return Capabilities(
        smart_charging=("SmartCharging" in profiles) if profiles is not None else True,
        rate_units=parsed_units or caps.rate_units,
        max_stack_level=int(stack) if stack.isdigit() else caps.max_stack_level,
        connectors=int(conns) if conns.isdigit() else caps.connectors,
    )


class CsmsV16(LinkBase, _Cp16):  # type: ignore[misc]
    """One connected 1.6J charge point, seen from the central system."""

    _protocol_error_code = "FormationViolation"  # sic: the 1.6 JSON spec's spelling
    _TX_REPORT = "MeterValues"  # sent with the transactionId of a running transaction

    def __init__(self, cp_id: str, connection: Any, hub: Hub) -> None:
        _Cp16.__init__(self, cp_id, connection, response_timeout=hub.settings.call_timeout_s)
        self._init_link(hub)

    def _now(self) -> str:
        return format_time(self.hub.clock.now_s())

    # --- incoming -----------------------------------------------------------------------
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
    def on_status(self, connector_id: int, status: str, **_: Any) -> Any:
        if connector_id != 0:
            resumed = self.tracker.on_status(ChargerStatus(status), self.hub.clock.now_s())
            if resumed:
                self.spawn(self.reassert())
            self.hub.notify()
        return call_result.StatusNotification()

    @on("Authorize")
    def on_authorize(self, id_tag: str, **_: Any) -> Any:
        return call_result.Authorize(id_tag_info={"status": "Accepted"})

    @on("StartTransaction")
    def on_start(self, connector_id: int, id_tag: str, meter_start: int, timestamp: str,
                 **_: Any) -> Any:
        tx_id = self.hub.new_tx_id()
        self.tracker.start_tx(tx_id=str(tx_id), connector_id=connector_id,
                              t_s=parse_time(timestamp), meter_start_wh=float(meter_start),
                              user_id=id_tag)
        self.hub.notify()
        return call_result.StartTransaction(transaction_id=tx_id,
                                            id_tag_info={"status": "Accepted"})

    @after("StartTransaction")
    def after_start(self, **_: Any) -> None:
        live = self.hub.lives.get(self.id)
        if live is not None:
            self.spawn(self.write_live(live))

    @on("StopTransaction")
    def on_stop(self, meter_stop: int, transaction_id: int, **kw: Any) -> Any:
        self.tracker.on_samples(meter_samples(kw.get("transaction_data") or []),
                                str(transaction_id))
        self.tracker.end_tx(str(transaction_id), float(meter_stop))
        self.hub.notify()
        return call_result.StopTransaction(id_tag_info={"status": "Accepted"})

    @on("MeterValues")
    def on_meter_values(self, connector_id: int, meter_value: list[dict[str, Any]],
                        transaction_id: int | None = None, **_: Any) -> Any:
        tx = str(transaction_id) if transaction_id is not None else None
        if tx is not None and tx not in self.tracker.transactions:
            # A transaction from before our restart: adopt it rather than lose its data.
            self.hub.saw_tx_id(int(tx))
            self.tracker.start_tx(tx_id=tx, connector_id=connector_id,
                                  t_s=self.hub.clock.now_s(), meter_start_wh=None)
        self.tracker.on_samples(meter_samples(meter_value), tx)
        self.tracker.seen(self.hub.clock.now_s())
        self.check_offered()
        self.hub.notify()
        return call_result.MeterValues()

    @on("DataTransfer")
    def on_data_transfer(self, vendor_id: str, **_: Any) -> Any:
        return call_result.DataTransfer(status="UnknownVendorId")

    # --- outgoing -----------------------------------------------------------------------
    async def _probe(self) -> Capabilities:
        res = await ocpp_call(self, call.GetConfiguration(key=_CONFIG_KEYS))
        return capabilities_from_config(res.configuration_key or [])

    async def _configure_metering(self) -> None:
        s = self.hub.settings
        for key, value in (("MeterValueSampleInterval", str(s.meter_sample_interval_s)),
                           ("MeterValuesSampledData", ",".join(self.hub.options.measurands))):
            res = await ocpp_call(self, call.ChangeConfiguration(key=key, value=value))
            if res.status not in ("Accepted", "RebootRequired"):
                log.info("%s: %s not accepted (%s)", self.id, key, res.status)

    async def _set_profile(self, spec: ProfileSpec) -> str:
        res = await fast_call(self, "SetChargingProfile", {
            "connectorId": spec.connector_id, "csChargingProfiles": profile_v16(spec)})
        return checked_status(self.id, res.get("status"), _PROFILE_STATUSES)

    async def _trigger(self, message: str) -> str:
        res = await ocpp_call(self, call.TriggerMessage(requested_message=message))
        return str(res.status)

    async def composite_limit(self, connector_id: int) -> float | None:
        res = await ocpp_call(self, call.GetCompositeSchedule(
            connector_id=connector_id, duration=60, charging_rate_unit=self._unit()))
        if res.status != "Accepted" or not res.charging_schedule:
            return None
        periods = res.charging_schedule.get("charging_schedule_period") or []
        return float(periods[0]["limit"]) if periods else None
