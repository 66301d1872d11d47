"""What ampshare publishes on MQTT: state topics and Home Assistant discovery, as pure data.

Topics (``prefix`` defaults to ``ampshare/<site>``)::

    <prefix>/status                     online | offline (retained; offline is the MQTT will)
    <prefix>/site/state                 {"t_s", "headroom_a"}
    <prefix>/node/<node>/state          {"l1_a", "l2_a", "l3_a", "headroom_a"}
    <prefix>/charger/<id>/state         {"limit_a", "current_a", "power_w", "status", "reason"}
    <prefix>/charger/<id>/set/<field>   commands in (see ``_commands``)

Home Assistant discovery puts the site (with its nodes) and each charger in as devices, the
chargers linked to the site through ``via_device``, with sensors for the state and number/text
entities for the session commands. Discovery and state are retained, so Home Assistant shows
the last values after its own restart.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ampshare.core.snapshot import PerLine

__all__ = [
    "ChargerView",
    "MqttMessage",
    "NodeView",
    "SiteView",
    "discovery_messages",
    "state_messages",
    "topic_id",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class MqttMessage:
    topic: str
    payload: str
    retain: bool = True
    qos: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ChargerView:
    """One charger as published: ``limit_a`` the limit in force, ``current_a`` the highest
    measured line current, ``reason`` what bound the limit ("circuit garage-B, line L2")."""

    charger_id: str
    limit_a: float | None
    current_a: float | None
    power_w: float | None
    status: str
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeView:
    """One circuit node: the load per line the controller counts (non-EV load, measured or
    assumed, plus the EV current it allocated) and the smallest line headroom left."""

    node_id: str
    line_current_a: PerLine
    headroom_a: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class SiteView:
    """The published state of a site at ``t_s`` [s since epoch]; ``headroom_a`` is the root's."""

    t_s: float
    headroom_a: float | None
    nodes: tuple[NodeView, ...] = ()
    chargers: tuple[ChargerView, ...] = ()


def topic_id(text: str) -> str:
    """``text`` made safe as one MQTT topic level and a Home Assistant object id."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", text) or "_"


def _num(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def state_messages(prefix: str, view: SiteView) -> list[MqttMessage]:
    """The state topics for ``view``."""
    out = [MqttMessage(topic=f"{prefix}/site/state", payload=json.dumps(
        {"t_s": view.t_s, "headroom_a": _num(view.headroom_a)}))]
    for n in view.nodes:
        l1, l2, l3 = n.line_current_a
        payload = {"l1_a": _num(l1), "l2_a": _num(l2), "l3_a": _num(l3),
                   "headroom_a": _num(n.headroom_a)}
        out.append(MqttMessage(topic=f"{prefix}/node/{topic_id(n.node_id)}/state",
                               payload=json.dumps(payload)))
    for c in view.chargers:
        out.append(MqttMessage(topic=f"{prefix}/charger/{topic_id(c.charger_id)}/state",
                               payload=json.dumps({
                                   "limit_a": _num(c.limit_a), "current_a": _num(c.current_a),
                                   "power_w": _num(c.power_w), "status": c.status,
                                   "reason": c.reason})))
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class _Entity:
    component: str  # sensor, number, text
    key: str
    name: str
    unit: str | None = None
    device_class: str | None = None
    extra: tuple[tuple[str, object], ...] = ()


_NODE_SENSORS = (
    _Entity(component="sensor", key="l1_a", name="L1 current", unit="A", device_class="current"),
    _Entity(component="sensor", key="l2_a", name="L2 current", unit="A", device_class="current"),
    _Entity(component="sensor", key="l3_a", name="L3 current", unit="A", device_class="current"),
    _Entity(component="sensor", key="headroom_a", name="headroom", unit="A",
            device_class="current"),
)
_CHARGER_ENTITIES = (
    _Entity(component="sensor", key="limit_a", name="Limit", unit="A", device_class="current"),
    _Entity(component="sensor", key="current_a", name="Current", unit="A",
            device_class="current"),
    _Entity(component="sensor", key="power_w", name="Power", unit="W", device_class="power"),
    _Entity(component="sensor", key="status", name="Status"),
    _Entity(component="sensor", key="reason", name="Limit reason"),
    _Entity(component="number", key="energy_kwh", name="Energy wanted", unit="kWh",
            extra=(("min", 0), ("max", 200), ("step", 0.5), ("mode", "box"))),
    _Entity(component="number", key="priority", name="Priority",
            extra=(("min", 0), ("max", 9), ("step", 1), ("mode", "box"))),
    _Entity(component="text", key="departure", name="Departure",
            extra=(("pattern", r"^(\d{4}-\d\d-\d\dT\d\d:\d\d.*|\d+(\.\d+)?)$"),)),
)


def _config(ent: _Entity, *, uid: str, state_topic: str, command_topic: str,
            device: dict[str, object], availability: str) -> dict[str, object]:
    cfg: dict[str, object] = {"name": ent.name, "unique_id": uid, "device": device,
                              "availability_topic": availability}
    if ent.component == "sensor":
        cfg |= {"state_topic": state_topic, "value_template": f"{{{{ value_json.{ent.key} }}}}"}
        if ent.unit:
            cfg["state_class"] = "measurement"
    else:
        cfg["command_topic"] = command_topic
    if ent.unit:
        cfg["unit_of_measurement"] = ent.unit
    if ent.device_class:
        cfg["device_class"] = ent.device_class
    return cfg | dict(ent.extra)


def discovery_messages(*, prefix: str, site_id: str, site_name: str,
                       nodes: Sequence[tuple[str, str]], chargers: Sequence[tuple[str, str]],
                       discovery_prefix: str = "homeassistant") -> list[MqttMessage]:
    """Home Assistant MQTT discovery configs; ``nodes``/``chargers`` are (id, display name)."""
    sid = topic_id(site_id)
    avail = f"{prefix}/status"
    site_dev: dict[str, object] = {"identifiers": [f"ampshare_{sid}"], "name": site_name,
                                   "manufacturer": "ampshare", "model": "site"}
    out: list[MqttMessage] = []

    def add(ent: _Entity, obj: str, *, uid: str, state: str, command: str,
            dev: dict[str, object], name: str) -> None:
        cfg = _config(ent, uid=uid, state_topic=state, command_topic=command, device=dev,
                      availability=avail)
        cfg["name"] = name
        topic = f"{discovery_prefix}/{ent.component}/ampshare_{sid}/{obj}/config"
        out.append(MqttMessage(topic=topic, payload=json.dumps(cfg, sort_keys=True)))

    add(_NODE_SENSORS[3], "site_headroom", uid=f"ampshare_{sid}_headroom",
        state=f"{prefix}/site/state", command="", dev=site_dev, name="Headroom")
    for node_id, node_name in nodes:
        nid = topic_id(node_id)
        for ent in _NODE_SENSORS:
            add(ent, f"node_{nid}_{ent.key}", uid=f"ampshare_{sid}_node_{nid}_{ent.key}",
                state=f"{prefix}/node/{nid}/state", command="", dev=site_dev,
                name=f"{node_name or node_id} {ent.name}")
    for cid_raw, c_name in chargers:
        cid = topic_id(cid_raw)
        dev: dict[str, object] = {"identifiers": [f"ampshare_{sid}_{cid}"],
                                  "name": c_name or cid_raw, "manufacturer": "ampshare",
                                  "model": "charger", "via_device": f"ampshare_{sid}"}
        for ent in _CHARGER_ENTITIES:
            add(ent, f"{cid}_{ent.key}", uid=f"ampshare_{sid}_{cid}_{ent.key}",
                state=f"{prefix}/charger/{cid}/state",
                command=f"{prefix}/charger/{cid}/set/{ent.key}", dev=dev, name=ent.name)
    return out
