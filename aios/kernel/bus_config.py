"""The configured event-bus subscriptions (config/bus.yaml): which broker, topic or stream, and tick bounds.

Every setting can be overridden by the environment, so one checkout runs against the
emulators and against production without editing the file:

- `AIOS_BUS_CONFIG`: another bus.yaml.
- `AIOS_BUS_MAX_MESSAGES`, `AIOS_BUS_MAX_SECONDS`: the batch bounds.
- `AIOS_PUBSUB_EMULATOR_HOST` (else `PUBSUB_EMULATOR_HOST`, Google's own variable): the
  emulator of every Pub/Sub subscription; set to an empty string for real GCP.
- `AIOS_PUBSUB_PROJECT`: the project of every Pub/Sub subscription.
- `AIOS_NATS_URL`: the server of every NATS subscription.
- `AIOS_BUS_<NAME>_<KEY>` (upper case): one key of one subscription, e.g.
  `AIOS_BUS_CLAIMS_PUBSUB_TOPIC=claims-eu`; it wins over the broad variables above.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
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
    """All subscriptions and the bounds of one landing batch."""

    max_messages: int = Field(default=2000, gt=0, le=100_000)
    max_seconds: float = Field(default=5.0, gt=0, le=60)
    subscriptions: list[Subscription] = Field(default_factory=list)
    path: str = Field(default=str(BUS_CONFIG), description="the file it was read from")

    def by_kind(self, kind: str) -> Subscription:
        """The first subscription of `kind`; LookupError naming the kinds configured otherwise."""
        for s in self.subscriptions:
            if s.kind == kind:
                return s
        raise LookupError(f"no {kind!r} subscription in {self.path}; configured: "
                          f"{sorted({s.kind for s in self.subscriptions})}")

    def by_name_or_kind(self, key: str) -> Subscription:
        """The subscription named `key`, else the first of kind `key`; LookupError listing them otherwise."""
        for s in self.subscriptions:
            if s.name == key:
                return s
        try:
            return self.by_kind(key)
        except LookupError:
            raise LookupError(f"no subscription named or of kind {key!r} in {self.path}; configured: "
                              f"{[s.name for s in self.subscriptions]}") from None


def config_path(env: Mapping[str, str] | None = None) -> Path:
    """The bus.yaml in force: `AIOS_BUS_CONFIG` when set, else config/bus.yaml of the checkout."""
    env = os.environ if env is None else env
    return Path(env["AIOS_BUS_CONFIG"]) if env.get("AIOS_BUS_CONFIG") else BUS_CONFIG


def _env_value(text: str) -> Any:
    """An environment value read as YAML (numbers, booleans), strings as they are."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (int, float, bool)) else text


def apply_env(raw: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """`raw` (bus.yaml as read) with the environment overrides of the module doc applied."""
    out = dict(raw)
    for key in ("max_messages", "max_seconds"):
        if env.get(f"AIOS_BUS_{key.upper()}"):
            out[key] = _env_value(env[f"AIOS_BUS_{key.upper()}"])
    subs = []
    for s in out.get("subscriptions") or []:
        s = dict(s)
        cfg = dict(s.get("config") or {})
        if s.get("kind") == "pubsub":
            if "AIOS_PUBSUB_EMULATOR_HOST" in env:
                cfg["emulator_host"] = env["AIOS_PUBSUB_EMULATOR_HOST"] or None
            elif "PUBSUB_EMULATOR_HOST" in env:
                cfg["emulator_host"] = env["PUBSUB_EMULATOR_HOST"] or None
            if env.get("AIOS_PUBSUB_PROJECT"):
                cfg["project"] = env["AIOS_PUBSUB_PROJECT"]
        elif s.get("kind") == "nats" and env.get("AIOS_NATS_URL"):
            cfg["url"] = env["AIOS_NATS_URL"]
        prefix = f"AIOS_BUS_{str(s.get('name', '')).upper()}_"
        for var, value in env.items():
            if var.startswith(prefix) and len(var) > len(prefix):
                cfg[var[len(prefix):].lower()] = _env_value(value)
        s["config"] = cfg
        subs.append(s)
    out["subscriptions"] = subs
    return out


def load_bus_config(path: Path | None = None, env: Mapping[str, str] | None = None) -> BusConfig:
    """Read and validate the bus configuration with the environment overrides applied (errors name the field)."""
    env = os.environ if env is None else env
    path = path or config_path(env)
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    return BusConfig.model_validate({**apply_env(raw, env), "path": str(path)})
