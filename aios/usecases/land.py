"""The landing consumer: one long-running process per bus subscription, persisting at the broker's speed.

Four stages in threads, so the broker and the database work at the same time:
a puller (bounded pulls), the journal writer (the caller's thread: each pulled batch
becomes ONE `landing_journal` row in one short transaction), an acker (acks a batch only
after its journal row committed: persist-before-ack) and a lander (lands journal rows
into `landed_claims` / `dead_letters` / `claim_identities`, deleting each journal row
after its landing committed). A crash anywhere redelivers what was not acked or relands
what was journaled; landing is idempotent, so nothing is lost or landed twice.

`stop` (SIGTERM/SIGINT in `aios land`) stops pulling; what was pulled is journaled and
acked, the batch being landed finishes, and `consume` returns (journal rows left are
landed by the next start). Runs are not requested here: the reconciliation sensor
(sensors/bus.py) turns landed, undecided claims into runs from the stores.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa

from connectors.bus.base import EventBus
from connectors.landing import LandingResult, journal_batch, land_journal

log = logging.getLogger(__name__)
_DONE = object()


@dataclass
class ConsumerStats:
    """Running totals of one consumer: `messages` journaled, `acked` after their journal row committed,
    `landed`/`duplicates`/`dead_lettered` as the lander found them."""

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
            pull_timeout_s: float = 1.0, idle_stop_s: float | None = None, drain: bool = False,
            max_lag_s: float = 2.0,
            on_batch: Callable[[LandingResult], None] | None = None) -> ConsumerStats:
    """Pull, journal (commit), ack, and land behind, until `stop` is set (or nothing arrived for `idle_stop_s`).

    While the broker has a backlog (pulls come back full) the lander waits until the oldest batch
    this process journaled is `max_lag_s` old: on a 2-core machine validating competes with pulling
    for the CPU, so a burst is drained from the broker first (persisted and acked) and validated
    right after; a flood longer than that is validated continuously, a batch at a time. With `drain`, returns only after every
    journaled batch of this source is landed. A journal or
    ack error stops the consumer and is re-raised once the pipeline stopped, so the supervisor
    restarts it and the bus redelivers what was not acked; a landing error is retried (the row stays).
    """
    stats = ConsumerStats()
    source = bus.source
    pulled: queue.Queue = queue.Queue(maxsize=2)  # bounded: at most two batches leased ahead of the journal
    to_ack: queue.Queue = queue.Queue()
    failure: list[BaseException] = []
    halt = threading.Event()  # stop pulling: asked to stop, idle, or a stage failed
    journaled = threading.Event()  # wakes the lander
    backlog = threading.Event()  # the last pull came back full: the broker has more waiting
    pending: deque[float] = deque()  # when each batch this process journaled was written, oldest first
    pulling_done = threading.Event()

    def puller() -> None:
        idle_since = time.monotonic()
        try:
            while not (stop.is_set() or halt.is_set()):
                msgs = bus.pull(max_messages, pull_timeout_s)
                if len(msgs) >= max_messages:
                    backlog.set()
                else:
                    backlog.clear()
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

    def lander() -> None:
        while True:
            if pulling_done.is_set() and not drain:
                return  # stopping: journal rows left are landed by the next start
            if (backlog.is_set() and not pulling_done.is_set() and pending
                    and time.monotonic() - pending[0] < max_lag_s):
                time.sleep(0.05)  # a burst: ack it at the broker's speed first, validate right after
                continue
            try:
                results = land_journal(engine, source, max_rows=1)
            except BaseException as exc:  # noqa: BLE001 - the journal row stays; retried
                stats.errors.append(f"{type(exc).__name__}: {exc}")
                log.warning("landing a journaled batch of %s failed (%s); retrying", source, exc)
                time.sleep(1.0)
                continue
            for r in results:
                if pending:
                    pending.popleft()
                _count(stats, r)
                if on_batch is not None:
                    on_batch(r)
            if results:
                continue
            if pulling_done.is_set():
                return  # drained
            journaled.wait(0.5)
            journaled.clear()

    threads = [threading.Thread(target=puller, name="land-pull", daemon=True),
               threading.Thread(target=acker, name="land-ack", daemon=True)]
    land_thread = threading.Thread(target=lander, name="land-land", daemon=True)
    for t in threads:
        t.start()
    land_thread.start()
    try:
        while True:
            msgs = pulled.get()
            if msgs is _DONE:
                break
            if halt.is_set():
                continue  # a stage failed: leave the rest un-acked (redelivered), drain the queue
            try:
                journal_batch(engine, source, msgs)
            except BaseException as exc:  # noqa: BLE001
                failure.append(exc)
                halt.set()
                continue
            pending.append(time.monotonic())
            to_ack.put(msgs)
            stats.batches += 1
            stats.messages += len(msgs)
            journaled.set()
    finally:
        halt.set()
        to_ack.put(_DONE)
        for t in threads:
            t.join(timeout=60)
        pulling_done.set()
        journaled.set()
        land_thread.join(timeout=None if drain else 60)
    if failure:
        raise failure[0]
    return stats


def _count(stats: ConsumerStats, r: LandingResult) -> None:
    stats.landed += r.landed
    stats.duplicates += r.duplicates
    stats.dead_lettered += r.dead_lettered


def land_until_idle(bus: EventBus, engine: sa.Engine, idle_s: float = 2.0, max_messages: int = 2000) -> ConsumerStats:
    """Consume until nothing arrives for `idle_s` (tests, benchmarks, one-shot catch-up)."""
    return consume(bus, engine, threading.Event(), max_messages=max_messages,
                   pull_timeout_s=min(1.0, idle_s), idle_stop_s=idle_s, drain=True)

