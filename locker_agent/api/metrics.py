"""``/metrics`` in the Prometheus text format, made with prometheus-client.

Counters are derived from the committed events the service publishes (so they count what the
database says happened, not what was attempted); gauges are read from the live state at
scrape time. Each app has its own registry, so two agents in one process never mix figures.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from prometheus_client import (
    CollectorRegistry,
    Counter,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from locker_agent.api.context import ApiContext
from locker_agent.app.ports.storage import StoredEvent
from locker_agent.domain.model import CompartmentState, DoorState

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _label(value: object, default: str = "unknown") -> str:
    text = str(value) if value is not None else default
    return text[:40] or default


class LockerMetrics:
    def __init__(self, context: ApiContext) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created: noise here
        self.registry = CollectorRegistry()
        self._context = context
        self.events = Counter(
            "locker_events", "Committed events by type.", ["type"], registry=self.registry
        )
        self.unlocks = Counter(
            "locker_unlocks", "Lock relays pulsed, by why the door was opened.", ["purpose"],
            registry=self.registry,
        )
        self.unlock_failures = Counter(
            "locker_unlock_failures",
            "Unlocks that did not open a door: abandoned (by reason) or jammed.", ["reason"],
            registry=self.registry,
        )
        self.code_refusals = Counter(
            "locker_code_refusals", "Codes refused, by input and reason.", ["source", "reason"],
            registry=self.registry,
        )
        self.lockouts = Counter(
            "locker_code_lockouts", "Code-entry lockouts started, by scope.", ["scope"],
            registry=self.registry,
        )
        self.registry.register(_LiveState(context))
        context.service.subscribe(self._committed)

    def _committed(self, batch: Sequence[StoredEvent]) -> None:
        for event in batch:
            self.events.labels(event.type).inc()
            data = event.data
            if event.type == "unlock_pulsed":
                self.unlocks.labels(_label(data.get("purpose"))).inc()
            elif event.type == "unlock_abandoned":
                self.unlock_failures.labels(_label(data.get("reason"))).inc()
            elif event.type == "door_jammed":
                self.unlock_failures.labels("jammed").inc()
            elif event.type == "code_refused":
                self.code_refusals.labels(
                    _label(data.get("source")), _label(data.get("reason"))
                ).inc()
            elif event.type == "code_lockout":
                self.lockouts.labels(_label(data.get("scope"))).inc()

    def render(self) -> bytes:
        """The exposition; call on the event loop (it reads the locker's state)."""
        return generate_latest(self.registry)


class _LiveState(Collector):
    """Gauges read when scraped: doors open, compartments by state, outbox, MQTT."""

    def __init__(self, context: ApiContext) -> None:
        self._context = context

    def collect(self) -> Iterator[Metric]:
        service = self._context.service
        locker = service.locker
        doors = GaugeMetricFamily("locker_doors_open", "Compartment doors open right now.")
        doors.add_metric([], sum(
            1 for c in locker.compartments.values() if c.door is DoorState.OPEN
        ))
        yield doors
        states = GaugeMetricFamily(
            "locker_compartments", "Compartments by state.", labels=["state"]
        )
        counts = locker.counts()
        for state in CompartmentState:
            states.add_metric([state.value], counts.get(state, 0))
        yield states
        outbox = GaugeMetricFamily(
            "locker_outbox_depth", "Events waiting for the broker's acknowledgement."
        )
        outbox.add_metric([], service.store.outbox_depth())
        yield outbox
        accepting = GaugeMetricFamily("locker_accepting_codes", "1 while codes are taken.")
        accepting.add_metric([], 1 if service.accepting else 0)
        yield accepting
        if self._context.loop_lag is not None:
            lag = GaugeMetricFamily(
                "locker_event_loop_lag_seconds",
                "The worst lag of the event loop over the last minute: how late it ran a timer.")
            lag.add_metric([], self._context.loop_lag())
            yield lag
        if self._context.mqtt_connected is not None:
            mqtt = GaugeMetricFamily("locker_mqtt_connected", "1 while connected to the broker.")
            mqtt.add_metric([], 1 if self._context.mqtt_connected() else 0)
            yield mqtt
