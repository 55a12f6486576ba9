"""The fleet as the dashboard knows it, built from what the lockers publish.

Messages arrive on paho's network thread; the web app reads from the event loop. One lock
guards the state. Every change marks the locker (and compartment) dirty; :meth:`Fleet.drain`
hands the page only what changed since the last batch, so a busy fleet never costs a full
redraw.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from locker_agent.ctl.dashboard import alarms
from locker_agent.ctl.dashboard.alarms import Alarm

PARCEL_STATES = frozenset({"occupied", "expired", "return_waiting"})
MAX_COMPARTMENTS = 512
"""Per locker; more ``compartments/*`` topics than this are ignored (a noisy publisher)."""
MAX_LOCKERS = 200_000
RECENT_EVENTS = 2000
"""Events kept for the feed of a page that opens now."""
SEEN_EVENT_IDS = 50_000
"""Event ids remembered to drop re-sent copies (events are at least once)."""

MAX_PAYLOAD_BYTES = 16 * 1024
"""A locker's status, compartment, event or telemetry message is well under 2 KiB; anything
bigger is ignored unread, so a flood of huge messages cannot grow the dashboard."""
MAX_TEXT = 200
"""Longest text kept from any field of a message; longer is cut."""
MAX_FRONT = 64
"""Rows or columns of a locker's front; a ``row`` or ``column`` beyond it is dropped."""

SUBSCRIPTIONS = ("+/status", "+/compartments/+", "+/events", "+/telemetry")
"""Under the topic prefix: what the dashboard subscribes to."""


@dataclass
class LockerRecord:
    locker_id: str
    status: dict[str, Any] | None = None
    presence_since: str | None = None
    compartments: dict[str, dict[str, Any]] = field(default_factory=dict)
    alarms: dict[str, Alarm] = field(default_factory=dict)
    outbox_depth: int | None = None
    last_event_at: str | None = None

    def summary(self) -> dict[str, Any]:
        """What the locker's tile shows."""
        status = self.status or {}
        states: dict[str, int] = {}
        doors_open = 0
        sizes: dict[str, list[int]] = {}  # size -> [free, total]
        free_by_size = _counts(status.get("free_by_size"))
        for size in free_by_size:
            sizes.setdefault(size, [0, 0])
        for compartment in self.compartments.values():
            state = str(compartment.get("state"))
            states[state] = states.get(state, 0) + 1
            doors_open += compartment.get("door") == "open"
            counts = sizes.setdefault(str(compartment.get("size", "?")), [0, 0])
            counts[1] += 1
            counts[0] += state == "free"
        if not self.compartments:  # only the status is known yet
            for size, free in free_by_size.items():
                sizes[size] = [free, free]
        return {
            "id": self.locker_id,
            "online": status.get("online") if self.status is not None else None,
            "since": self.presence_since,
            "in_service": status.get("in_service"),
            "version": status.get("version"),
            "free_by_size": {size: counts[0] for size, counts in sizes.items()},
            "total_by_size": {size: counts[1] for size, counts in sizes.items()},
            "compartments": len(self.compartments),
            "occupied": sum(states.get(s, 0) for s in PARCEL_STATES),
            "reserved": states.get("reserved", 0),
            "out_of_service": states.get("out_of_service", 0),
            "doors_open": doors_open,
            "outbox_depth": self.outbox_depth,
            "alarms": [alarm.as_dict() for alarm in self.alarms.values()],
            "last_event_at": self.last_event_at,
        }


class Fleet:
    """Thread-safe fleet state fed with MQTT messages (``ingest``) and read in batches."""

    def __init__(self, prefix: str = "lockers") -> None:
        self.prefix = prefix
        self._lock = threading.Lock()
        self._lockers: dict[str, LockerRecord] = {}
        self._events: deque[dict[str, Any]] = deque(maxlen=RECENT_EVENTS)
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._dirty: set[str] = set()
        self._dirty_compartments: dict[tuple[str, str], None] = {}
        self._new_events: list[dict[str, Any]] = []
        self.ignored = 0
        """Messages that were not what the contract says (counted, never fatal)."""

    @property
    def subscriptions(self) -> list[str]:
        return [f"{self.prefix}/{tail}" for tail in SUBSCRIPTIONS]

    # ------------------------------------------------------------------ writes

    def ingest(self, topic: str, payload: bytes, *, retained: bool,
               now: datetime | None = None) -> None:
        """Take one message the broker delivered; anything malformed is counted and ignored."""
        head = self.prefix + "/"
        parts = topic[len(head):].split("/") if topic.startswith(head) else []
        if len(parts) < 2 or not parts[0] or parts[0].startswith("_"):
            self.ignored += 1
            return
        if not payload:  # a cleared retained message
            self._forget(parts)
            return
        if len(payload) > MAX_PAYLOAD_BYTES:
            self.ignored += 1
            return
        try:
            document = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            document = None
        if not isinstance(document, dict):
            self.ignored += 1
            return
        kind = parts[1:]
        known = (len(kind) == 1 and kind[0] in ("status", "events", "telemetry")) or (
            len(kind) == 2 and kind[0] == "compartments" and bool(kind[1]))
        if not known:
            self.ignored += 1
            return
        document = _bounded(document)
        received = (now or datetime.now(UTC)).isoformat()
        with self._lock:
            record = self._record(parts[0])
            if record is None:
                self.ignored += 1
                return
            if kind == ["status"]:
                self._on_status(record, document, retained=retained, received=received)
            elif kind == ["events"]:
                self._on_event(record, document)
            elif kind == ["telemetry"]:
                self._on_telemetry(record, document)
            else:
                self._on_compartment(record, kind[1], document)
            self._dirty.add(record.locker_id)

    def acknowledge(self, locker_id: str, key: str) -> bool:
        """An operator lifts an alarm; False if there was no such alarm."""
        with self._lock:
            record = self._lockers.get(locker_id)
            if record is None or record.alarms.pop(key, None) is None:
                return False
            self._dirty.add(locker_id)
            return True

    # ------------------------------------------------------------------ reads

    def snapshot(self) -> dict[str, Any]:
        """Every locker's tile and the recent events: what a page starts from."""
        with self._lock:
            return {
                "lockers": [self._lockers[key].summary()
                            for key in sorted(self._lockers, key=natural)],
                "events": list(self._events),
            }

    def locker(self, locker_id: str) -> dict[str, Any] | None:
        with self._lock:
            record = self._lockers.get(locker_id)
            if record is None:
                return None
            return {
                "summary": record.summary(),
                "compartments": [record.compartments[key]
                                 for key in sorted(record.compartments, key=natural)],
            }

    def ids(self) -> list[str]:
        with self._lock:
            return sorted(self._lockers, key=natural)

    def drain(self) -> dict[str, Any] | None:
        """What changed since the last call (None if nothing did)."""
        with self._lock:
            if not (self._dirty or self._new_events):
                return None
            batch = {
                "lockers": [self._lockers[key].summary() for key in sorted(self._dirty)
                            if key in self._lockers],
                "compartments": [
                    {"locker_id": locker_id, **self._lockers[locker_id].compartments[cid]}
                    for locker_id, cid in self._dirty_compartments
                    if locker_id in self._lockers
                    and cid in self._lockers[locker_id].compartments
                ],
                "events": self._new_events,
            }
            self._dirty = set()
            self._dirty_compartments = {}
            self._new_events = []
            return batch

    # ------------------------------------------------------------------ internals

    def _record(self, locker_id: str) -> LockerRecord | None:
        record = self._lockers.get(locker_id)
        if record is None:
            if len(self._lockers) >= MAX_LOCKERS:
                return None
            record = self._lockers[locker_id] = LockerRecord(locker_id)
        return record

    def _forget(self, parts: list[str]) -> None:
        with self._lock:
            record = self._lockers.get(parts[0])
            if record is None:
                return
            if parts[1:] == ["status"]:
                record.status = None
            elif len(parts) == 3 and parts[1] == "compartments":
                record.compartments.pop(parts[2], None)
            self._dirty.add(record.locker_id)

    def _on_status(self, record: LockerRecord, document: dict[str, Any], *,
                   retained: bool, received: str) -> None:
        was_online = (record.status or {}).get("online")
        record.status = document
        online = document.get("online")
        since = document.get("since")
        if online is True:
            record.presence_since = str(since) if since else received
        elif was_online is not False or record.presence_since is None:
            # a Last Will carries the time of the last connect: a live one is dated on arrival
            record.presence_since = received if not retained or not since else str(since)

    def _on_compartment(self, record: LockerRecord, compartment_id: str,
                        document: dict[str, Any]) -> None:
        if compartment_id not in record.compartments \
                and len(record.compartments) >= MAX_COMPARTMENTS:
            self.ignored += 1
            return
        document.setdefault("id", compartment_id)
        # what the page reads must have the types the contract gives it, whatever came
        for key in ("state", "door", "size", "label"):
            if key in document and not isinstance(document[key], str):
                document[key] = str(document[key])[:MAX_TEXT]
        document.setdefault("state", "unknown")
        document.setdefault("door", "unknown")
        for key in ("row", "column"):  # a place on the front, or none
            value = document.get(key)
            if key in document and not (isinstance(value, int) and not isinstance(value, bool)
                                        and 1 <= value <= MAX_FRONT):
                del document[key]
        ids = document.get("assignment_ids")
        if ids is not None:
            document["assignment_ids"] = (
                [str(i) for i in ids] if isinstance(ids, list) else []
            )
        record.compartments[compartment_id] = document
        for key in alarms.lifted_by_compartment(compartment_id, document):
            record.alarms.pop(key, None)
        self._dirty_compartments[(record.locker_id, compartment_id)] = None

    def _on_event(self, record: LockerRecord, document: dict[str, Any]) -> None:
        event_id = str(document.get("id", ""))
        if event_id:
            if event_id in self._seen:
                return
            self._seen[event_id] = None
            if len(self._seen) > SEEN_EVENT_IDS:
                self._seen.popitem(last=False)
        document["locker_id"] = record.locker_id  # the topic says whose it is
        alarm = alarms.raised_by(document)
        document["alarm"] = alarm is not None
        if alarm is not None:
            record.alarms[alarm.key] = alarm
        for key in alarms.lifted_by(document):
            record.alarms.pop(key, None)
        record.last_event_at = str(document.get("at", ""))
        self._events.append(document)
        self._new_events.append(document)
        if len(self._new_events) > RECENT_EVENTS:  # no page drained them: keep the newest
            del self._new_events[: len(self._new_events) - RECENT_EVENTS]

    def _on_telemetry(self, record: LockerRecord, document: dict[str, Any]) -> None:
        depth = document.get("outbox_depth")
        if not isinstance(depth, int):
            return
        record.outbox_depth = depth
        key = "outbox_high:"
        if depth >= alarms.OUTBOX_BACKLOG and key not in record.alarms:
            record.alarms[key] = Alarm("outbox_high", None, str(document.get("at", "")),
                                       f"depth={depth}")
        elif depth < alarms.OUTBOX_BACKLOG:
            record.alarms.pop(key, None)


def natural(text: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key putting ``C2`` before ``C10``: digits by value, the rest as text."""
    return tuple((0, int(part)) if part.isdigit() else (1, part)
                 for part in re.split(r"(\d+)", text) if part)


def _counts(value: object) -> dict[str, int]:
    """A size -> count mapping from a message; anything malformed in it is left out."""
    if not isinstance(value, dict):
        return {}
    return {
        str(size): count for size, count in value.items()
        if isinstance(count, int) and not isinstance(count, bool) and count >= 0
    }


def _bounded(value: Any, depth: int = 0) -> Any:
    """A message with every text cut to MAX_TEXT and nesting, lists and keys bounded."""
    if isinstance(value, str):
        return value[:MAX_TEXT]
    if depth >= 4:
        return str(value)[:MAX_TEXT] if isinstance(value, dict | list) else value
    if isinstance(value, dict):
        return {str(k)[:64]: _bounded(v, depth + 1) for k, v in list(value.items())[:64]}
    if isinstance(value, list):
        return [_bounded(v, depth + 1) for v in value[:64]]
    return value
