"""The configured event-bus subscriptions (config/bus.yaml): which broker, topic or stream, and tick bounds."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field

from aios.kernel.settings import PROJECT_ROOT

BUS_CONFIG = PROJECT_ROOT / "config" / "bus.yaml"


class Subscription(BaseModel):
    """One subscription (Pub/Sub) or durable consumer (NATS JetStream) the platform lands claims from."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    kind: Literal["pubsub", "nats"]
    config: dict[str, Any]


class BusConfig(BaseModel):
    """All subscriptions and the bounds of one sensor tick."""

    max_messages: int = Field(default=2000, gt=0, le=100_000)
    max_seconds: float = Field(default=5.0, gt=0, le=60)
    subscriptions: list[Subscription] = Field(default_factory=list)

    def by_kind(self, kind: str) -> Subscription:
        """The first subscription of `kind`; LookupError naming the kinds configured otherwise."""
        for s in self.subscriptions:
            if s.kind == kind:
                return s
        raise LookupError(f"no {kind!r} subscription in {BUS_CONFIG}; configured: "
                          f"{sorted({s.kind for s in self.subscriptions})}")


def load_bus_config(path: Path = BUS_CONFIG) -> BusConfig:
    """Read and validate the bus configuration (a pydantic error names the field)."""
    return BusConfig.model_validate(yaml.safe_load(path.read_text()) or {})
