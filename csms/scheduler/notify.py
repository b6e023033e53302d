"""Telling participants (DOMAIN.md promises 1 and 3): a Notification record first, then delivery
by the enrolment's channels — an outbound webhook and/or an MQTT message — in the background.

The record is committed before anything is sent, so what a participant was told is known even
if delivery fails or the process stops; delivery updates its status, attempts, last error and
delivery time. The message is the same JSON on every channel:
`{"notification_id", "kind", "participant", "enrollment_id", "event_id", "body", "created_at"}`
(`notification_id` lets a receiver drop the duplicates that retries and MQTT QoS 1 allow).

Retries and timeouts are protocol timers and run on wall time; `created_at` and
`delivered_at` are domain instants from the CSMS clock (which may be simulated).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import aiomqtt
import httpx
import structlog
from sqlalchemy.orm import Session

from csms.store.models import Enrollment, Notification
from csms.store.writer import WriterClosedError

if TYPE_CHECKING:
    from csms.services import Services

log = structlog.get_logger("csms.scheduler.notify")

DEFAULT_TOPIC_PREFIX = "csms/v1"
NO_BROKER = "no MQTT broker configured (--mqtt)"
WEBHOOK_TIMEOUT_S = 5.0
ATTEMPTS = 3
BACKOFF_S = (0.5, 2.0)  # wait before the 2nd and the 3rd attempt
MQTT_PORTS = {"mqtt": 1883, "tcp": 1883, "mqtts": 8883, "ssl": 8883}


@dataclass(frozen=True, slots=True)
class MqttTarget:
    """Where the broker is, from `--mqtt` / CSMS_MQTT_URL (mqtt://user:pass@host:port)."""

    host: str
    port: int
    username: str | None
    password: str | None
    tls: bool


def parse_mqtt_url(url: str) -> MqttTarget:
    """mqtt://[user[:password]@]host[:port] (mqtts:// for TLS); ValueError says what is wrong."""
    parts = urlsplit(url)
    if parts.scheme not in MQTT_PORTS:
        raise ValueError(f"MQTT URL {url!r}: scheme must be one of {', '.join(MQTT_PORTS)}")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"MQTT URL {url!r}: {exc}") from None
    if not parts.hostname:
        raise ValueError(f"MQTT URL {url!r} names no host")
    return MqttTarget(
        host=parts.hostname,
        port=port or MQTT_PORTS[parts.scheme],
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        tls=parts.scheme in ("mqtts", "ssl"),
    )


def topic_for(prefix: str, enrollment_id: int) -> str:
    return f"{prefix}/participants/{enrollment_id}/notifications"


def _iso(at: datetime | None) -> str | None:
    return at.isoformat().replace("+00:00", "Z") if at is not None else None


def message_of(row: Notification) -> dict[str, Any]:
    """The JSON a participant receives for a notification record."""
    return {
        "notification_id": row.id,
        "kind": row.kind,
        "participant": row.participant,
        "enrollment_id": row.enrollment_id,
        "event_id": row.event_id,
        "body": row.body,
        "created_at": _iso(row.created_at),
    }


def channels_of(enrollment: Enrollment) -> list[str]:
    channels = []
    if enrollment.webhook_url:
        channels.append("webhook")
    if enrollment.mqtt:
        channels.append("mqtt")
    return channels


@dataclass(frozen=True, slots=True)
class _Outcome:
    attempts: int
    error: str | None  # None: delivered
    delivered_at: datetime | None = None


class _MqttPublisher:
    """One broker connection, opened on first use and reopened after a failure."""

    def __init__(self, target: MqttTarget) -> None:
        self.target = target
        self._client: aiomqtt.Client | None = None
        self._lock = asyncio.Lock()

    async def _connected(self) -> aiomqtt.Client:
        async with self._lock:
            if self._client is None:
                client = aiomqtt.Client(
                    self.target.host,
                    self.target.port,
                    username=self.target.username,
                    password=self.target.password,
                    identifier=f"csms-notify-{uuid.uuid4().hex[:12]}",
                    tls_context=ssl.create_default_context() if self.target.tls else None,
                    timeout=WEBHOOK_TIMEOUT_S,
                )
                await client.__aenter__()
                self._client = client
            return self._client

    async def publish(self, topic: str, payload: bytes) -> None:
        client = await self._connected()
        try:
            await client.publish(topic, payload, qos=1, timeout=WEBHOOK_TIMEOUT_S)
        except (aiomqtt.MqttError, TimeoutError):
            await self._drop(client)
            raise

    async def _drop(self, client: aiomqtt.Client) -> None:
        async with self._lock:
            if self._client is client:
                self._client = None
        try:
            await client.__aexit__(None, None, None)
        except (aiomqtt.MqttError, OSError) as exc:  # already broken: nothing more to release
            log.debug("notify.mqtt_close_failed", error=repr(exc))

    async def close(self) -> None:
        if self._client is not None:
            await self._drop(self._client)


class Notifier:
    """Records and delivers participant notifications for one CSMS (`services`)."""

    def __init__(
        self,
        services: Services,
        *,
        topic_prefix: str = DEFAULT_TOPIC_PREFIX,
        attempts: int = ATTEMPTS,
        backoff_s: Sequence[float] = BACKOFF_S,
        timeout_s: float = WEBHOOK_TIMEOUT_S,
    ) -> None:
        if attempts < 1 or len(backoff_s) < attempts - 1:
            raise ValueError("need at least one attempt and a back-off before each retry")
        self.services = services
        self.topic_prefix = topic_prefix.rstrip("/")
        self.attempts = attempts
        self.backoff_s = tuple(backoff_s)
        self.timeout_s = timeout_s
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: httpx.AsyncClient | None = None
        self._mqtt: _MqttPublisher | None = None
        self._mqtt_problem: str | None = None
        self._setup_mqtt(services.settings.mqtt_url)

    def _setup_mqtt(self, url: str | None) -> None:
        if not url:
            self._mqtt_problem = NO_BROKER
            return
        try:
            self._mqtt = _MqttPublisher(parse_mqtt_url(url))
        except ValueError as exc:
            self._mqtt_problem = str(exc)

    # ---- recording -------------------------------------------------------------------------

    async def notify(
        self,
        enrollment: Enrollment,
        kind: str,
        body: Mapping[str, Any],
        event_id: int | None = None,
    ) -> Notification:
        """Commit the record, start its delivery in the background, return the record."""
        if enrollment.id is None:
            raise ValueError("a notification needs a stored enrolment (its id)")
        if not kind:
            raise ValueError("a notification needs a kind")
        json.dumps(body)  # a caller's unserialisable body fails here, not in the background
        channels = channels_of(enrollment)
        deliverable = [c for c in channels if c != "mqtt" or self._mqtt is not None]
        row = Notification(
            enrollment_id=enrollment.id,
            participant=enrollment.participant,
            event_id=event_id,
            kind=kind,
            body=dict(body),
            channels=channels,
            status=_initial_status(channels, deliverable),
            last_error="" if len(deliverable) == len(channels) else self._mqtt_problem or "",
            created_at=self.services.clock.now(),
        )

        def unit(session: Session) -> Notification:
            session.add(row)
            session.flush()
            return row

        stored = await self.services.writer.write(unit, label="notification")
        log.info(
            "notify.recorded",
            notification_id=stored.id,
            enrollment_id=stored.enrollment_id,
            kind=kind,
            channels=channels,
            status=stored.status,
        )
        if deliverable:
            self._start(self._deliver(stored, enrollment.webhook_url, deliverable))
        return stored

    def _start(self, work: Any) -> None:
        task = asyncio.create_task(work, name="notify-delivery")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- delivery --------------------------------------------------------------------------

    async def _deliver(
        self, row: Notification, webhook_url: str | None, channels: list[str]
    ) -> None:
        message = message_of(row)
        payload = json.dumps(message).encode()
        try:
            work = []
            for channel in channels:
                if channel == "webhook" and webhook_url:
                    work.append(self._post(webhook_url, message))
                elif channel == "mqtt":
                    work.append(
                        self._publish(topic_for(self.topic_prefix, row.enrollment_id), payload)
                    )
            outcomes = list(await asyncio.gather(*work))
            if len(channels) < len(row.channels):  # mqtt asked for, no broker to send it to
                outcomes.append(_Outcome(0, self._mqtt_problem or NO_BROKER))
            await self._settle(row, outcomes)
        except WriterClosedError:
            log.warning("notify.unrecorded_outcome", notification_id=row.id, reason="shutdown")
        except Exception:  # a bug here must not vanish inside a background task
            log.exception("notify.delivery_crashed", notification_id=row.id)

    async def _post(self, url: str, message: Mapping[str, Any]) -> _Outcome:
        client = self._client()
        error = ""
        for attempt in range(1, self.attempts + 1):
            try:
                response = await client.post(url, json=message)
                if response.is_success:
                    log.info("notify.webhook_delivered", url=url, attempt=attempt)
                    return _Outcome(attempt, None, self.services.clock.now())
                error = f"webhook {url} answered HTTP {response.status_code}"
                if response.is_client_error and response.status_code not in (408, 429):
                    return _Outcome(attempt, error)  # the receiver refuses it; retrying won't help
            except httpx.HTTPError as exc:
                error = f"webhook {url} failed: {type(exc).__name__}: {exc}".rstrip(": ")
            log.info("notify.webhook_retry", url=url, attempt=attempt, error=error)
            if attempt < self.attempts:
                await asyncio.sleep(self.backoff_s[attempt - 1])
        return _Outcome(self.attempts, error)

    async def _publish(self, topic: str, payload: bytes) -> _Outcome:
        assert self._mqtt is not None, "only called when a broker is configured"
        target = self._mqtt.target
        error = ""
        for attempt in range(1, self.attempts + 1):
            try:
                await self._mqtt.publish(topic, payload)
                log.info("notify.mqtt_delivered", topic=topic, attempt=attempt)
                return _Outcome(attempt, None, self.services.clock.now())
            except (aiomqtt.MqttError, TimeoutError, OSError) as exc:
                why = str(exc) or type(exc).__name__
                error = f"MQTT publish to {target.host}:{target.port} failed: {why}"
            log.info("notify.mqtt_retry", topic=topic, attempt=attempt, error=error)
            if attempt < self.attempts:
                await asyncio.sleep(self.backoff_s[attempt - 1])
        return _Outcome(self.attempts, error)

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=False)
        return self._http

    async def _settle(self, row: Notification, outcomes: list[_Outcome]) -> None:
        errors = [o.error for o in outcomes if o.error]
        delivered = [o.delivered_at for o in outcomes if o.delivered_at is not None]
        status = "failed" if errors else "delivered"

        def unit(session: Session) -> None:
            stored = session.get(Notification, row.id)
            if stored is None:
                return
            stored.status = status
            stored.attempts = sum(o.attempts for o in outcomes)
            stored.last_error = "; ".join(errors)
            stored.delivered_at = max(delivered) if delivered else None

        await self.services.writer.write(unit, label="notification-outcome")
        log.info("notify.settled", notification_id=row.id, status=status, errors=errors)

    # ---- life cycle ------------------------------------------------------------------------

    async def drain(self) -> None:
        """Wait until every delivery started so far has its outcome recorded."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        """Finish deliveries in flight, then release the HTTP client and the broker connection."""
        await self.drain()
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        if self._mqtt is not None:
            await self._mqtt.close()


def _initial_status(channels: list[str], deliverable: list[str]) -> str:
    if not channels:
        return "recorded"
    return "pending" if deliverable else "failed"
