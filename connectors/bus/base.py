"""The event-bus interface every backend implements (Pub/Sub, NATS JetStream).

Semantics (at-least-once): a pulled message stays leased until it is acked; a
message that is not acked within the backend's ack deadline (Pub/Sub) or
`ack_wait` (JetStream) is redelivered with the same `message_id`. Consumers make
that safe by persisting idempotently *before* acking (see `connectors.landing`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class BusMessage:
    """One delivered message. `ack_token` is opaque and only meaningful to the bus that delivered it."""

    message_id: str
    data: bytes
    attributes: dict[str, str] = field(default_factory=dict)
    ack_token: Any = field(default=None, repr=False, compare=False)


class EventBus(ABC):
    """A topic plus one durable subscription, with a synchronous, bounded interface."""

    kind: str = "abstract"

    @abstractmethod
    def ensure(self) -> None:
        """Create the topic/subscription (stream/durable consumer) if missing. Idempotent."""

    @abstractmethod
    def publish(self, data: bytes, attributes: dict[str, str] | None = None, message_id: str | None = None) -> str:
        """Publish one message and wait for the broker to accept it; return its message id."""

    @abstractmethod
    def publish_many(self, items: Iterable[bytes]) -> int:
        """Publish many payloads in batches (fast path); return how many the broker accepted."""

    @abstractmethod
    def pull(self, max_messages: int, timeout_s: float) -> list[BusMessage]:
        """Up to max_messages messages. Returns as soon as it has max_messages or when
        timeout_s is up (possibly with none); never blocks much longer than timeout_s."""

    @abstractmethod
    def ack(self, messages: Sequence[BusMessage]) -> None:
        """Acknowledge delivered messages so they are not redelivered."""

    @abstractmethod
    def close(self) -> None:
        """Release connections. Un-acked messages are redelivered after the ack deadline."""

    @property
    def source(self) -> str:
        """A stable name of this subscription, used as the landing store's `source`."""
        return self.kind

    def __enter__(self) -> EventBus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_bus(kind: str, **config: Any) -> EventBus:
    """Open a bus backend: kind "pubsub" (PubSubBus) or "nats" (NatsBus); `config` goes to its constructor.

    Does not create anything on the broker; call `ensure()` for that.
    """
    k = kind.strip().lower()
    if k in ("pubsub", "gcp-pubsub", "google-pubsub"):
        from connectors.bus.pubsub import PubSubBus

        return PubSubBus(**config)
    if k in ("nats", "jetstream", "nats-jetstream"):
        from connectors.bus.nats import NatsBus

        return NatsBus(**config)
    raise ValueError(f"unknown bus kind {kind!r}: expected 'pubsub' or 'nats'")
