"""Opportunistic micro-batching: concurrent requests are decided together in one call.

One worker thread takes every job waiting when it becomes free and processes them as one
batch, so under load the fixed cost of a decision call (pandas, sklearn, a few database
transactions) is paid once per batch instead of once per request, and at low load a job is
processed alone with no added wait. This changes no result: every stage of the decision is
row-wise (see models/fusion.py), so a claim gets the same bits alone or in company.

A batch whose processing raises is retried job by job, so one bad job fails alone.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Generic, TypeVar

log = logging.getLogger("aios.service.batcher")

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class Job(Generic[T, R]):
    """One request's items, what the processor should know about the request, and its result's future."""

    items: list[T]
    keys: frozenset[str]
    meta: dict[str, object] = field(default_factory=dict)
    future: Future = field(default_factory=Future)


class MicroBatcher(Generic[T, R]):
    """Runs `process(jobs) -> results` on a worker thread over whatever jobs are waiting.

    `process` returns one entry per job: its result, or an exception that fails that job alone.
    """

    def __init__(self, process: Callable[[Sequence[Job[T, R]]], list[R | BaseException]], *, max_items: int = 512,
                 name: str = "aios-batcher") -> None:
        """Jobs sharing a key (e.g. a claim id) never go in the same batch; a batch holds ≤ `max_items` items
        (a single larger job still runs, alone)."""
        self._process = process
        self.max_items = max_items
        self._name = name
        self._queue: queue.Queue[Job[T, R] | None] = queue.Queue()
        self._held: list[Job[T, R]] = []
        self._thread: threading.Thread | None = None
        self.batches = 0
        self.jobs = 0

    def start(self) -> None:
        """Start the worker (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the jobs already submitted, then stop the worker."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def submit_future(self, items: list[T], keys: frozenset[str] = frozenset(),
                      meta: dict[str, object] | None = None) -> Future:
        """Queue `items` for the next batch; the future gets their result or their error.

        Without a started worker the job is processed at once in the caller's thread.
        """
        job: Job[T, R] = Job(items, keys, dict(meta or {}))
        if self._thread is None:
            self._run_batch([job])
        else:
            self._queue.put(job)
        return job.future

    def submit(self, items: list[T], keys: frozenset[str] = frozenset(), meta: dict[str, object] | None = None) -> R:
        """Process `items` (in a batch with other waiting jobs) and return their result; re-raises its error."""
        return self.submit_future(items, keys, meta).result()

    # worker -------------------------------------------------------------------------------------
    def _next_batch(self) -> list[Job[T, R]] | None:
        pending = self._held
        self._held = []
        if not pending:
            first = self._queue.get()
            if first is None:
                return None
            pending = [first]
        while True:  # everything that is waiting now, without waiting for more
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                self._queue.put(None)  # stop after this batch
                break
            pending.append(job)
        batch: list[Job[T, R]] = []
        keys: set[str] = set()
        n = 0
        for job in pending:
            fits = not batch or (n + len(job.items) <= self.max_items and not (job.keys & keys))
            if fits:
                batch.append(job)
                keys |= job.keys
                n += len(job.items)
            else:
                self._held.append(job)
        return batch

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                for job in self._held:
                    self._run_batch([job])
                return
            self._run_batch(batch)

    def _run_batch(self, batch: list[Job[T, R]]) -> None:
        self.batches += 1
        self.jobs += len(batch)
        try:
            results = self._process(batch)
        except BaseException as exc:  # noqa: BLE001 - delivered to the callers
            if len(batch) == 1:
                batch[0].future.set_exception(exc)
                return
            log.warning("batch of %d jobs failed (%s); retrying job by job", len(batch), exc)
            for job in batch:
                self._run_batch([job])
            return
        for job, result in zip(batch, results, strict=True):
            if isinstance(result, BaseException):
                job.future.set_exception(result)
            else:
                job.future.set_result(result)

