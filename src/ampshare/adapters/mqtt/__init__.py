"""MQTT out: ampshare's state, Home Assistant discovery, and session commands in.

Pure message builders (``state_messages``, ``discovery_messages``, ``parse_command``,
``apply_command``) and one I/O class, ``MqttBridge``, that keeps the broker connection.
Meter *input* over MQTT lives in ``ampshare.adapters.meters`` (``MqttMeter``).
"""

from ampshare.adapters.mqtt._bridge import MqttBridge
from ampshare.adapters.mqtt._commands import SessionCommand, apply_command, parse_command
from ampshare.adapters.mqtt._messages import (
    ChargerView,
    MqttMessage,
    NodeView,
    SiteView,
    discovery_messages,
    state_messages,
    topic_id,
)
from ampshare.adapters.mqtt._views import site_view

__all__ = [
    "ChargerView",
    "MqttBridge",
    "MqttMessage",
    "NodeView",
    "SessionCommand",
    "SiteView",
    "apply_command",
    "discovery_messages",
    "parse_command",
    "site_view",
    "state_messages",
    "topic_id",
]
