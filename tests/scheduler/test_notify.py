"""Participant notifications (DOMAIN.md promises 1 and 3): the record is committed first, then
delivered in the background to a real HTTP receiver and to the real Mosquitto broker."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiomqtt
import pytest
from sqlalchemy.orm import Session

from csms.scheduler.notify import NO_BROKER, Notifier, parse_mqtt_url, topic_for
from csms.services import Services
from csms.store.models import Enrollment, Notification, Vehicle
from simclock import Clock
from tests.services import require

SIM_START = datetime(2026, 7, 15, 18, 0, tzinfo=UTC)
BROKER = ("127.0.0.1", 1883)
FAST = {"backoff_s": (0.05, 0.1)}  # the retry pauses of a test; the default is 0.5 s, 2 s


class Receiver:
    """A real HTTP endpoint on an ephemeral port: records each POST, answers the next status
    of `statuses` (then `status`), optionally holding its answer until `release` is set."""

    def __init__(self, status: int = 200, statuses: list[int] | None = None) -> None:
        self.status = status
        self.statuses = list(statuses or [])
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []
        self.hold = False
        self.release = asyncio.Event()
        self.url = ""

    async def __aenter__(self) -> Receiver:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/hooks/v2g"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        method, path, _ = (await reader.readline()).decode().split(" ", 2)
        headers = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.requests.append((method, path, headers, json.loads(body)))
        if self.hold:
            await self.release.wait()
        status = self.statuses.pop(0) if self.statuses else self.status
        writer.write(
            f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        writer.close()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def services_with(csms: Any, mqtt_url: str | None = None) -> Services:
    """The running CSMS's services on a simulated clock, with this broker setting."""
    settings = dataclasses.replace(
        csms.services.settings, mqtt_url=mqtt_url, clock=Clock.create(start=SIM_START)
    )
    return dataclasses.replace(csms.services, settings=settings)


async def enrollment(services: Services, **fields: Any) -> Enrollment:
    def unit(session: Session) -> Enrollment:
        if session.get(Vehicle, "leaf-n") is None:
            session.add(Vehicle(id="leaf-n", ev_model="nissan-leaf-40"))
            session.flush()  # before the enrolment that refers to it
        row = Enrollment(
            participant="Ana Silva",
            vehicle_id="leaf-n",
            station_id="CP-N",
            min_soc_pct=30.0,
            programs=["ma-connectedsolutions"],
            **fields,
        )
        session.add(row)
        session.flush()
        return row

    return await services.writer.write(unit)


async def stored(services: Services, notification_id: int | None) -> Notification:
    async with services.db.read() as session:
        row = await session.get(Notification, notification_id)
    assert row is not None
    return row


@pytest.fixture
async def notifier(csms) -> AsyncIterator[Notifier]:
    n = Notifier(services_with(csms), **FAST)
    yield n
    await n.close()


async def test_webhook_gets_the_json_after_the_record_is_committed(csms, notifier) -> None:
    async with Receiver() as receiver:
        receiver.hold = True
        who = await enrollment(notifier.services, webhook_url=receiver.url)
        body = {"message": "You are enrolled in: MA ConnectedSolutions.", "programs": ["x"]}
        row = await asyncio.wait_for(notifier.notify(who, "enrolled", body), 5)
        # notify returned while the receiver still holds its answer: delivery is background.
        pending = await stored(notifier.services, row.id)
        assert (pending.status, pending.channels, pending.attempts) == ("pending", ["webhook"], 0)
        assert SIM_START <= pending.created_at < SIM_START + timedelta(minutes=1)
        receiver.release.set()
        await notifier.drain()
    [(method, path, headers, message)] = receiver.requests
    assert (method, path, headers["content-type"]) == ("POST", "/hooks/v2g", "application/json")
    assert message == {
        "notification_id": row.id,
        "kind": "enrolled",
        "participant": "Ana Silva",
        "enrollment_id": who.id,
        "event_id": None,
        "body": body,
        "created_at": row.created_at.isoformat().replace("+00:00", "Z"),
    }
    done = await stored(notifier.services, row.id)
    assert (done.status, done.attempts, done.last_error) == ("delivered", 1, "")
    assert done.delivered_at is not None and done.delivered_at >= done.created_at


async def test_a_failing_webhook_is_tried_three_times_then_failed(csms, notifier) -> None:
    async with Receiver(status=500) as receiver:
        who = await enrollment(notifier.services, webhook_url=receiver.url)
        row = await notifier.notify(who, "event-scheduled", {"event_id": 4}, event_id=4)
        await notifier.drain()
    assert len(receiver.requests) == 3
    failed = await stored(notifier.services, row.id)
    assert (failed.status, failed.attempts, failed.event_id) == ("failed", 3, 4)
    assert failed.last_error == f"webhook {receiver.url} answered HTTP 500"
    assert failed.delivered_at is None


async def test_an_unreachable_webhook_is_failed_with_the_error(csms, notifier) -> None:
    url = f"http://127.0.0.1:{closed_port()}/hook"
    who = await enrollment(notifier.services, webhook_url=url)
    row = await notifier.notify(who, "enrolled", {})
    await notifier.drain()
    failed = await stored(notifier.services, row.id)
    assert (failed.status, failed.attempts) == ("failed", 3)
    assert failed.last_error.startswith(f"webhook {url} failed: ConnectError")


async def test_a_refusing_receiver_is_not_retried_but_a_busy_one_is(csms, notifier) -> None:
    async with Receiver(status=404) as refusing, Receiver(statuses=[503, 200]) as busy:
        first = await notifier.notify(
            await enrollment(notifier.services, webhook_url=refusing.url), "enrolled", {}
        )
        second = await notifier.notify(
            await enrollment(notifier.services, webhook_url=busy.url, evse_id=2), "enrolled", {}
        )
        await notifier.drain()
    refused, retried = (
        await stored(notifier.services, first.id),
        await stored(notifier.services, second.id),
    )
    assert (refused.status, refused.attempts, len(refusing.requests)) == ("failed", 1, 1)
    assert refused.last_error.endswith("answered HTTP 404")
    assert (retried.status, retried.attempts, len(busy.requests)) == ("delivered", 2, 2)


async def test_without_a_channel_the_notification_is_a_record(csms, notifier) -> None:
    row = await notifier.notify(await enrollment(notifier.services), "enrolled", {"n": 1})
    await notifier.drain()
    kept = await stored(notifier.services, row.id)
    assert (kept.status, kept.channels, kept.attempts, kept.last_error) == ("recorded", [], 0, "")


async def test_mqtt_without_a_broker_says_so_in_the_record(csms, notifier) -> None:
    row = await notifier.notify(await enrollment(notifier.services, mqtt=True), "enrolled", {})
    assert (row.status, row.last_error) == ("failed", NO_BROKER)
    await notifier.drain()
    kept = await stored(notifier.services, row.id)
    assert (kept.status, kept.attempts, kept.last_error) == ("failed", 0, NO_BROKER)


async def test_webhook_and_mqtt_without_a_broker_deliver_one_and_report_the_other(
    csms, notifier
) -> None:
    async with Receiver() as receiver:
        who = await enrollment(notifier.services, webhook_url=receiver.url, mqtt=True)
        row = await notifier.notify(who, "enrolled", {})
        assert row.status == "pending"
        await notifier.drain()
    assert len(receiver.requests) == 1
    kept = await stored(notifier.services, row.id)
    assert (kept.status, kept.channels, kept.last_error) == (
        "failed",
        ["webhook", "mqtt"],
        NO_BROKER,
    )
    assert kept.delivered_at is not None  # the webhook reached the participant


async def test_mqtt_notification_reaches_a_subscriber_on_the_real_broker(csms) -> None:
    require(*BROKER, "Mosquitto")
    prefix = f"test-{uuid.uuid4().hex[:8]}/v1"
    notifier = Notifier(services_with(csms, "mqtt://127.0.0.1:1883"), topic_prefix=prefix, **FAST)
    try:
        who = await enrollment(notifier.services, mqtt=True)
        topic = topic_for(prefix, who.id or 0)
        assert topic == f"{prefix}/participants/{who.id}/notifications"
        async with aiomqtt.Client(*BROKER, identifier=f"test-sub-{uuid.uuid4().hex[:8]}") as sub:
            await sub.subscribe(topic, qos=1)
            row = await notifier.notify(who, "opted-out", {"event_id": 9}, event_id=9)
            async with asyncio.timeout(10):
                message = await anext(aiter(sub.messages))
        await notifier.drain()
    finally:
        await notifier.close()
    assert str(message.topic) == topic and message.qos == 1
    assert json.loads(message.payload) == {
        "notification_id": row.id,
        "kind": "opted-out",
        "participant": "Ana Silva",
        "enrollment_id": who.id,
        "event_id": 9,
        "body": {"event_id": 9},
        "created_at": row.created_at.isoformat().replace("+00:00", "Z"),
    }
    kept = await stored(notifier.services, row.id)
    assert (kept.status, kept.attempts, kept.channels) == ("delivered", 1, ["mqtt"])


async def test_an_unreachable_broker_fails_the_mqtt_delivery(csms) -> None:
    port = closed_port()
    notifier = Notifier(services_with(csms, f"mqtt://127.0.0.1:{port}"), **FAST)
    try:
        row = await notifier.notify(await enrollment(notifier.services, mqtt=True), "enrolled", {})
        await notifier.drain()
    finally:
        await notifier.close()
    kept = await stored(notifier.services, row.id)
    assert (kept.status, kept.attempts) == ("failed", 3)
    assert kept.last_error.startswith(f"MQTT publish to 127.0.0.1:{port} failed")


async def test_a_body_that_is_not_json_is_refused_before_anything_is_recorded(
    csms, notifier
) -> None:
    who = await enrollment(notifier.services)
    with pytest.raises(TypeError):
        await notifier.notify(who, "enrolled", {"at": datetime.now(UTC)})
    with pytest.raises(ValueError, match="stored enrolment"):
        await notifier.notify(
            Enrollment(participant="x", vehicle_id="v", station_id="s", min_soc_pct=1),
            "enrolled",
            {},
        )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://127.0.0.1", ("127.0.0.1", 1883, None, None, False)),
        ("mqtt://csms:s%40cret@broker.local:1884", ("broker.local", 1884, "csms", "s@cret", False)),
        ("mqtts://broker.example.com", ("broker.example.com", 8883, None, None, True)),
    ],
)
def test_broker_url_is_parsed(url: str, expected: tuple) -> None:
    target = parse_mqtt_url(url)
    assert (target.host, target.port, target.username, target.password, target.tls) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://broker:1883", "scheme must be one of"),
        ("mqtt://", "names no host"),
        ("mqtt://broker:99999", "out of range"),
    ],
)
def test_a_bad_broker_url_is_refused_with_the_reason(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_mqtt_url(url)


async def test_a_bad_broker_url_fails_the_mqtt_delivery_with_its_reason(csms) -> None:
    notifier = Notifier(services_with(csms, "http://broker:1883"), **FAST)
    try:
        row = await notifier.notify(await enrollment(notifier.services, mqtt=True), "enrolled", {})
    finally:
        await notifier.close()
    assert row.status == "failed" and "scheme must be one of" in row.last_error
