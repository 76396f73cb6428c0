"""What `/metrics` says (prometheus-client's text format), read from the running bridge.

Gauges and counters are read when Prometheus scrapes (a collector over the service's own
state: no bookkeeping on the hot path, nothing to drift); only the two latencies are
observed as they happen (histograms). One registry per service, not the library's global
one: tests start many services in one process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# Card pops are a few ms on one node, tens across nodes under load; CRM requests tens to
# hundreds of ms (the breaker's timeout is seconds).
_CARD_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_CRM_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BREAKER_STATES = ("closed", "half_open", "open")


class BridgeState(Protocol):
    """What the collector reads of the service (bridge.service.BridgeService)."""

    def metrics_snapshot(self) -> dict[str, Any]: ...


class BridgeMetrics:
    def __init__(self, state: BridgeState) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.card_pop = Histogram(
            "callbridge_card_pop_seconds",
            "From the AMI event that rang a phone (its arrival at the PBX's owner) to its card "
            "handed to this node's operator sockets (after the CRM hold)", buckets=_CARD_BUCKETS,
            registry=self.registry)
        self.crm_request = Histogram(
            "callbridge_crm_request_seconds", "CRM adapter requests (lookup, history)",
            ["adapter", "what"], buckets=_CRM_BUCKETS, registry=self.registry)
        self.registry.register(_StateCollector(state.metrics_snapshot))

    def observe_card_pop(self, seconds: float) -> None:
        self.card_pop.observe(max(0.0, seconds))

    def observe_crm_request(self, adapter: str, what: str, seconds: float) -> None:
        self.crm_request.labels(adapter, what).observe(seconds)


class _StateCollector(Collector):
    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self._snapshot = snapshot

    def describe(self) -> list[Metric]:
        return []  # read at scrape time only

    def collect(self) -> Iterator[Metric]:
        s = self._snapshot()
        connected = GaugeMetricFamily("callbridge_ami_connected",
                                      "1 while this node is logged in to the PBX's AMI", labels=["pbx"])
        events = CounterMetricFamily("callbridge_ami_events",
                                     "AMI events the PBX's call model has taken on this node", labels=["pbx"])
        live = GaugeMetricFamily("callbridge_live_calls", "Calls up now", labels=["pbx"])
        owner = GaugeMetricFamily("callbridge_pbx_owner",
                                  "1 while this node owns the PBX (holds its lock), 0 standing by",
                                  labels=["pbx"])
        standby = GaugeMetricFamily("callbridge_ami_standby",
                                    "1 while this node follows the PBX and is logged in to it (hot standby)",
                                    labels=["pbx"])
        for pbx, p in s["pbx"].items():
            connected.add_metric([pbx], 1.0 if p["connected"] else 0.0)
            standby.add_metric([pbx], 1.0 if p.get("standby_session") else 0.0)
            events.add_metric([pbx], float(p["events"]))
            live.add_metric([pbx], float(p["live_calls"]))
            owner.add_metric([pbx], 1.0 if p["owner"] else 0.0)
        yield from (connected, standby, events, live, owner)
        writer = s["call_log"]
        yield GaugeMetricFamily("callbridge_call_log_queue", "Calls waiting to be written to the call log",
                                value=float(writer["pending"]))
        yield CounterMetricFamily("callbridge_call_log_write_failures", "Call-log writes failed (retried)",
                                  value=float(writer["failures"]))
        yield CounterMetricFamily("callbridge_call_log_calls_written", "Call snapshots written",
                                  value=float(writer["written"]))
        yield GaugeMetricFamily("callbridge_websocket_clients", "Browsers' WebSockets open on this node",
                                value=float(s["websockets"]))
        breaker = GaugeMetricFamily("callbridge_crm_breaker_state", "1 for the CRM adapter breaker's state",
                                    labels=["adapter", "state"])
        for adapter, state in s["crm_breakers"].items():
            for name in _BREAKER_STATES:
                breaker.add_metric([adapter, name], 1.0 if state == name else 0.0)
        yield breaker
