"""Google Cloud Pub/Sub backend (google-cloud-pubsub), against GCP or the local emulator.

- Synchronous unary `pull` with an explicit gRPC `timeout=` on every call: without
  one an empty pull blocks ~90 s on the emulator. The emulator returns at most 100
  messages per call (GCP up to 1,000), so `pull` loops until it has `max_messages`
  or its time is up.
- `message_id` is the Pub/Sub message id (stable across redeliveries); the
  `ack_token` is the delivery's `ack_id` (a new one on each redelivery).
- A caller-chosen `message_id` cannot replace Pub/Sub's; it travels in the
  attribute `aios-message-id` so producers can trace their own ids.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Sequence
from concurrent import futures as cf

from connectors.bus.base import BusMessage, EventBus

log = logging.getLogger(__name__)

CALLER_ID_ATTRIBUTE = "aios-message-id"
_PULL_MAX_PER_CALL = 1000  # GCP's per-pull maximum; the emulator caps at 100 anyway
_ACK_CHUNK = 1000  # ack_ids per acknowledge request (well under the 512 KiB request cap)
_MIN_CALL_S = 0.05  # below this, a pull call is more likely to strand a leased batch than help


class PubSubBus(EventBus):
    """One topic and one pull subscription on Google Cloud Pub/Sub.

    Args:
        project: GCP project id (any id works against the emulator).
        topic: topic name (not the full path).
        subscription: subscription name (not the full path).
        emulator_host: "host:port" of the emulator; sets PUBSUB_EMULATOR_HOST before
            the clients are created. None = use whatever the environment says (GCP).
        ack_deadline_s: the subscription's ack deadline on creation (10..600 s).
        publish_timeout_s: how long publish/publish_many wait for the broker to accept.
        max_batch_messages / max_batch_latency_s: publisher batching.
        connect_timeout_s: how long `ensure()` waits for the broker (an unreachable emulator
            fails fast with a clear error instead of blocking its caller for a minute).
    """

    kind = "pubsub"

    def __init__(
        self,
        project: str,
        topic: str,
        subscription: str,
        emulator_host: str | None = None,
        ack_deadline_s: int = 60,
        publish_timeout_s: float = 60.0,
        max_batch_messages: int = 1000,
        max_batch_latency_s: float = 0.01,
        connect_timeout_s: float = 10.0,
    ) -> None:
        if emulator_host:
            os.environ["PUBSUB_EMULATOR_HOST"] = emulator_host
        from google.cloud import pubsub_v1

        self.project = project
        self.topic = topic
        self.subscription = subscription
        self.ack_deadline_s = int(ack_deadline_s)
        self.publish_timeout_s = publish_timeout_s
        self.connect_timeout_s = float(connect_timeout_s)
        self._publisher = pubsub_v1.PublisherClient(
            batch_settings=pubsub_v1.types.BatchSettings(
                max_messages=max_batch_messages, max_bytes=9 * 1024 * 1024, max_latency=max_batch_latency_s
            )
        )
        self._subscriber = pubsub_v1.SubscriberClient()
        self.topic_path = self._publisher.topic_path(project, topic)
        self.subscription_path = self._subscriber.subscription_path(project, subscription)
        self._closed = False

    @property
    def source(self) -> str:
        """`pubsub:<project>/<subscription>`, the landing store's `source`."""
        return f"pubsub:{self.project}/{self.subscription}"

    def ensure(self) -> None:
        """Create the topic and subscription if missing. Idempotent."""
        from google.api_core import exceptions as gexc

        deadline = time.monotonic() + self.connect_timeout_s
        while True:  # the first call also waits for the broker (a just-started emulator refuses a moment)
            try:
                self._publisher.create_topic(request={"name": self.topic_path},
                                             timeout=max(0.5, deadline - time.monotonic()), retry=None)
                log.info("created topic %s", self.topic_path)
                break
            except gexc.AlreadyExists:
                break
            except (gexc.DeadlineExceeded, gexc.ServiceUnavailable) as exc:
                if time.monotonic() + 0.25 < deadline:
                    time.sleep(0.25)
                    continue
                where = os.environ.get("PUBSUB_EMULATOR_HOST") or "Google Cloud"
                raise ConnectionError(f"Pub/Sub at {where} did not answer within {self.connect_timeout_s:g} s "
                                      f"({type(exc).__name__}: {exc}); is the emulator running? "
                                      f"(docs/operations.md)") from exc
        try:
            self._subscriber.create_subscription(
                request={
                    "name": self.subscription_path,
                    "topic": self.topic_path,
                    "ack_deadline_seconds": self.ack_deadline_s,
                },
                timeout=self.connect_timeout_s, retry=None,
            )
            log.info("created subscription %s", self.subscription_path)
        except gexc.AlreadyExists:
            pass

    def publish(self, data: bytes, attributes: dict[str, str] | None = None, message_id: str | None = None) -> str:
        """Publish one message and wait for the broker to accept it; return its message id."""
        attrs = dict(attributes or {})
        if message_id is not None:
            attrs[CALLER_ID_ATTRIBUTE] = message_id
        return self._publisher.publish(self.topic_path, bytes(data), **attrs).result(timeout=self.publish_timeout_s)

    def publish_many(self, items: Iterable[bytes]) -> int:
        """Publish many payloads in batches; return how many the broker accepted."""
        pending = [self._publisher.publish(self.topic_path, bytes(d)) for d in items]
        done, not_done = cf.wait(pending, timeout=self.publish_timeout_s)
        if not_done:
            raise TimeoutError(f"{len(not_done)} of {len(pending)} publishes not confirmed "
                               f"within {self.publish_timeout_s}s")
        for f in done:
            f.result()  # re-raise the first publish error, if any
        return len(done)

    def pull(self, max_messages: int, timeout_s: float) -> list[BusMessage]:
        """Up to max_messages messages, pulled until there are that many or timeout_s is up."""
        from google.api_core import exceptions as gexc

        if max_messages <= 0:
            return []
        deadline = time.monotonic() + max(timeout_s, 0.0)
        out: list[BusMessage] = []
        last_error: Exception | None = None
        while len(out) < max_messages:
            remaining = deadline - time.monotonic()
            if remaining < _MIN_CALL_S:
                break
            try:
                resp = self._subscriber.pull(
                    request={
                        "subscription": self.subscription_path,
                        "max_messages": min(_PULL_MAX_PER_CALL, max_messages - len(out)),
                    },
                    timeout=remaining,
                    retry=None,
                )
            except gexc.DeadlineExceeded:
                break  # nothing more arrived within the time left
            except (gexc.ServiceUnavailable, gexc.InternalServerError, gexc.Aborted) as exc:
                last_error = exc
                log.warning("pull from %s failed (%s); retrying until the deadline", self.subscription_path, exc)
                time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
                continue
            last_error = None
            # the raw protobuf: proto-plus attribute access costs ~0.1 ms per message
            for rm in type(resp).pb(resp).received_messages:
                m = rm.message
                out.append(BusMessage(message_id=m.message_id, data=m.data,
                                      attributes=dict(m.attributes), ack_token=rm.ack_id))
        if not out and last_error is not None:
            raise last_error
        return out

    def ack(self, messages: Sequence[BusMessage]) -> None:
        """Acknowledge delivered messages so they are not redelivered."""
        ack_ids = [m.ack_token for m in messages if m.ack_token]
        for i in range(0, len(ack_ids), _ACK_CHUNK):
            self._subscriber.acknowledge(
                request={"subscription": self.subscription_path, "ack_ids": ack_ids[i : i + _ACK_CHUNK]},
                timeout=30,
            )

    def delete(self) -> None:
        """Delete the subscription and the topic (tests, teardown). Missing ones are ignored."""
        from google.api_core import exceptions as gexc

        for call, req in ((self._subscriber.delete_subscription, {"subscription": self.subscription_path}),
                          (self._publisher.delete_topic, {"topic": self.topic_path})):
            try:
                call(request=req, timeout=10)
            except gexc.NotFound:
                pass

    def close(self) -> None:
        """Stop the publisher (flushing pending batches) and release the clients."""
        if self._closed:
            return
        self._closed = True
        try:
            self._publisher.stop()  # flushes pending batches
        except Exception:  # noqa: BLE001 - best effort on shutdown
            log.debug("publisher stop failed", exc_info=True)
        for closer in (getattr(self._publisher, "transport", None), self._subscriber):
            try:
                if closer is not None:
                    closer.close()
            except Exception:  # noqa: BLE001
                log.debug("close failed", exc_info=True)
