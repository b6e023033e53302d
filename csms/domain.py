"""Domain events: what a station told us, published once it is committed.

Handlers publish; the scheduler (dispatcher, settlement) subscribes. Subscribers are plain
callables that must return at once (set a flag, put on a queue): the handler that publishes is
on a station's path and waits for nobody. A failing subscriber is logged and skipped, so a bug
in the V2G room never costs a station its answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import structlog

log = structlog.get_logger("csms.domain")

Kind = Literal["connected", "disconnected", "transaction", "meter", "needs"]


@dataclass(frozen=True, slots=True)
class StationData:
    """Something a station reported (or its connection changed), already in the store."""

    kind: Kind
    station_id: str
    evse_id: int | None = None
    transaction_id: str | None = None
    event_type: str | None = None  # TransactionEvent: Started | Updated | Ended
    timestamp: datetime | None = None  # the station's time of the data (meter, transaction)
    offline: bool = False  # sent from the station's offline queue (late data)


Subscriber = Callable[[StationData], None]


class DomainEvents:
    """The process's one publish/subscribe registry, owned by `Services`."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Add a subscriber; returns the function that removes it."""
        self._subscribers.append(subscriber)
        return lambda: self._subscribers.remove(subscriber)

    def publish(self, event: StationData) -> None:
        for subscriber in list(self._subscribers):
            try:
                subscriber(event)
            except Exception:
                log.exception("domain.subscriber_failed", station_id=event.station_id)
