"""The landing consumer: one long-running process per bus subscription, landing at the broker's speed.

A pipeline of three threads so the broker and the database work at the same time:
a puller (bounded pulls), the caller's thread (one landing transaction per batch) and
an acker. A batch is acked only after its transaction committed (persist-before-ack);
a crash anywhere redelivers what was not acked, and landing is idempotent, so nothing is
lost or landed twice. `stop` (set by SIGTERM/SIGINT in `aios land`) stops pulling; the
batches already pulled are landed and acked before `consume` returns.

Runs are not requested here: the reconciliation sensor (sensors/bus.py) turns landed,
undecided claims into runs from the stores.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa

from connectors.bus.base import EventBus
from connectors.landing import LandingResult, land_batch

log = logging.getLogger(__name__)
_DONE = object()


@dataclass
class ConsumerStats:
    """Running totals of one consumer; `acked` counts messages whose landing committed and were acked."""

    batches: int = 0
    messages: int = 0
    landed: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    acked: int = 0
    started: float = field(default_factory=time.monotonic)
    errors: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Messages persisted and acked per second since the start."""
        return self.acked / max(time.monotonic() - self.started, 1e-9)


def consume(bus: EventBus, engine: sa.Engine, stop: threading.Event, *, max_messages: int = 2000,
            pull_timeout_s: float = 1.0, idle_stop_s: float | None = None,
            on_batch: Callable[[LandingResult], None] | None = None) -> ConsumerStats:
    """Pull, land (one transaction per batch) and then ack until `stop` is set (or nothing arrived for
    `idle_stop_s`); returns the totals. A landing or ack error stops the consumer and is re-raised
    after the pipeline drained, so the supervisor restarts it and the bus redelivers what was not acked."""
    stats = ConsumerStats()
    pulled: queue.Queue = queue.Queue(maxsize=2)  # bounded: at most two batches leased ahead of landing
    to_ack: queue.Queue = queue.Queue()
    failure: list[BaseException] = []
    halt = threading.Event()  # stop pulling: asked to stop, idle, or a stage failed

    def puller() -> None:
        idle_since = time.monotonic()
        try:
            while not (stop.is_set() or halt.is_set()):
                msgs = bus.pull(max_messages, pull_timeout_s)
                if msgs:
                    idle_since = time.monotonic()
                    pulled.put(msgs)
                elif idle_stop_s is not None and time.monotonic() - idle_since >= idle_stop_s:
                    break
        except BaseException as exc:  # noqa: BLE001 - reported by consume()
            failure.append(exc)
        finally:
            pulled.put(_DONE)

    def acker() -> None:
        while True:
            msgs = to_ack.get()
            if msgs is _DONE:
                return
            try:
                bus.ack(msgs)
                stats.acked += len(msgs)
            except BaseException as exc:  # noqa: BLE001 - unacked messages come back; landing is idempotent
                failure.append(exc)
                halt.set()

    threads = [threading.Thread(target=puller, name="land-pull", daemon=True),
               threading.Thread(target=acker, name="land-ack", daemon=True)]
    for t in threads:
        t.start()
    try:
        while True:
            msgs = pulled.get()
            if msgs is _DONE:
                break
            if halt.is_set():
                continue  # a stage failed: leave the rest un-acked (redelivered), drain the queue
            try:
                result = land_batch(engine, bus.source, msgs)
            except BaseException as exc:  # noqa: BLE001
                failure.append(exc)
                halt.set()
                continue
            to_ack.put(msgs)
            _count(stats, result)
            if on_batch is not None:
                on_batch(result)
    finally:
        halt.set()
        to_ack.put(_DONE)
        for t in threads:
            t.join(timeout=60)
    if failure:
        raise failure[0]
    return stats


def _count(stats: ConsumerStats, r: LandingResult) -> None:
    stats.batches += 1
    stats.messages += r.messages
    stats.landed += r.landed
    stats.duplicates += r.duplicates
    stats.dead_lettered += r.dead_lettered


def land_until_idle(bus: EventBus, engine: sa.Engine, idle_s: float = 2.0, max_messages: int = 2000) -> ConsumerStats:
    """Consume until nothing arrives for `idle_s` (tests, benchmarks, one-shot catch-up)."""
    return consume(bus, engine, threading.Event(), max_messages=max_messages,
                   pull_timeout_s=min(1.0, idle_s), idle_stop_s=idle_s)

