"""Event buses behind one interface: Google Cloud Pub/Sub and NATS JetStream."""

from connectors.bus.base import BusMessage, EventBus, open_bus

__all__ = ["BusMessage", "EventBus", "open_bus"]
