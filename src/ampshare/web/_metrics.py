"""Prometheus text exposition of the live state (a fresh registry per scrape: no globals)."""

from __future__ import annotations

import math
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from ampshare.store import SqlStore
from ampshare.web.runtime import RuntimeView

__all__ = ["metrics_text"]

_LINES = ("L1", "L2", "L3")


class _ViewCollector(Collector):
    def __init__(self, view: RuntimeView, open_alerts: int) -> None:
        self._v = view
        self._open_alerts = open_alerts

    def collect(self) -> Iterator[Metric]:
        yield from self._nodes()
        yield from self._chargers()
        v = self._v
        age = GaugeMetricFamily(
            "ampshare_meter_age_seconds", "Age of the last reading", labels=["meter"]
        )
        for m in v.site.meters:
            r = v.meter_readings.get(m.id)
            age.add_metric([m.id], math.inf if r is None else max(0.0, v.now_s - r.t_s))
        yield age
        yield GaugeMetricFamily(
            "ampshare_sessions_active", "Cars plugged in", value=len(v.sessions)
        )
        yield GaugeMetricFamily(
            "ampshare_alerts_open", "Unresolved alerts", value=self._open_alerts
        )

    def _nodes(self) -> Iterator[Metric]:
        fams = {
            key: GaugeMetricFamily(f"ampshare_node_{key}_amperes", help_, labels=["node", "line"])
            for key, help_ in (
                ("limit", "Limit in force after margin and caps"),
                ("other_load", "Non-EV (building) load assumed"),
                ("ev_load", "EV load allocated"),
                ("headroom", "Headroom left"),
            )
        }
        for h in self._v.headroom:
            for i, line in enumerate(_LINES):
                vals = {
                    "limit": h.limit_a,
                    "other_load": h.other_load_a,
                    "ev_load": h.ev_load_a,
                    "headroom": h.headroom_a,
                }
                for key, per_line in vals.items():
                    if math.isfinite(per_line[i]):
                        fams[key].add_metric([h.node_id, line], per_line[i])
        yield from fams.values()

    def _chargers(self) -> Iterator[Metric]:
        v = self._v
        limit = GaugeMetricFamily(
            "ampshare_charger_limit_amperes", "Limit per phase", labels=["charger", "reason"]
        )
        for lim in v.limits:
            limit.add_metric([lim.charger_id, lim.reason.kind.value], lim.limit_a)
        cur = GaugeMetricFamily(
            "ampshare_charger_current_amperes", "Measured current", labels=["charger", "line"]
        )
        online = GaugeMetricFamily(
            "ampshare_charger_online", "1 when connected", labels=["charger"]
        )
        for c in v.site.chargers:
            st = v.charger_states.get(c.id)
            online.add_metric([c.id], 1.0 if st and st.online else 0.0)
            for i, line in enumerate(_LINES):
                val = st.measured_current_a[i] if st and st.measured_current_a else None
                if val is not None:
                    cur.add_metric([c.id, line], val)
        yield from (limit, cur, online)


def metrics_text(view: RuntimeView, store: SqlStore) -> tuple[bytes, str]:
    """The exposition body and its content type."""
    registry = CollectorRegistry(auto_describe=False)
    open_alerts = len(store.events(alerts_only=True, open_only=True, limit=10_000))
    registry.register(_ViewCollector(view, open_alerts))
    return generate_latest(registry), CONTENT_TYPE_LATEST
