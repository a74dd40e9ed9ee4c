"""`aios land`: the continuous landing consumer of one bus subscription, or a supervisor of all of them.

    aios land --bus pubsub            # one consumer (a subscription's name or kind)
    aios land --all                   # a supervisor: one consumer per configured subscription,
                                      # each restarted with back-off when it dies

SIGTERM or SIGINT stops cleanly: pulling stops, what was pulled is landed and acked, exit 0.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time

import typer
from rich.console import Console

from aios.kernel.bus_config import Subscription

console = Console(stderr=True)
log = logging.getLogger("aios.land")
RESTART_MIN_S, RESTART_MAX_S, HEALTHY_AFTER_S = 1.0, 30.0, 60.0
STOP_GRACE_S = 15.0


def land(bus: str = typer.Option(None, "--bus", help="Subscription name or kind (pubsub, nats) in the bus config."),
         all_: bool = typer.Option(False, "--all", help="Supervise one consumer per configured subscription."),
         max_messages: int = typer.Option(None, help="Messages per batch (default: max_messages of the config)."),
         idle_exit: float = typer.Option(None, help="Exit after this many seconds without messages (default: never)."),
         ) -> None:
    """Land claims from the bus continuously (persist, then ack); runs are requested by the Dagster sensor."""
    logging.basicConfig(level=os.environ.get("AIOS_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from aios.kernel.bus_config import load_bus_config  # noqa: PLC0415 - read at run time, not import time

    cfg = load_bus_config()
    if all_:
        raise typer.Exit(supervise([s.name for s in cfg.subscriptions]))
    if not bus:
        console.print("[red]give --bus NAME_OR_KIND or --all[/]")
        raise typer.Exit(2)
    try:
        sub = cfg.by_name_or_kind(bus)
    except LookupError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    raise typer.Exit(run_consumer(sub, max_messages or cfg.max_messages, idle_exit, cfg.max_seconds))


def run_consumer(sub: Subscription, max_messages: int, idle_exit: float | None, pull_timeout_s: float = 1.0) -> int:
    """Consume one subscription until SIGTERM/SIGINT (exit 0) or an error (exit 1, with the reason)."""
    from aios.kernel.db import get_engine
    from aios.kernel.settings import get_settings
    from aios.usecases.land import consume
    from connectors.bus import open_bus
    from connectors.landing import ensure_landing_tables

    stop = threading.Event()

    def _stop(signum, _frame) -> None:
        log.info("%s: %s received, finishing the batches in flight", sub.name, signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    settings = get_settings()
    try:
        settings.ensure_dirs()
        engine = get_engine(settings.db_url)
        ensure_landing_tables(engine)
    except Exception as exc:  # noqa: BLE001 - one clear line; the supervisor retries
        log.error("%s: the stores at %s are not reachable: %s", sub.name, settings.db_url, exc)
        return 1
    try:
        bus = open_bus(sub.kind, **sub.config)
    except Exception as exc:  # noqa: BLE001 - a clear line for the operator; the supervisor retries
        log.error("%s: cannot connect to %s (%s): %s", sub.name, sub.kind, sub.config, exc)
        return 1
    totals = {"messages": 0, "landed": 0}
    last = [time.monotonic()]

    def report(r) -> None:  # a progress line every 10 s while messages flow
        totals["messages"] += r.messages
        totals["landed"] += r.landed
        if time.monotonic() - last[0] >= 10:
            last[0] = time.monotonic()
            log.info("%s: %d messages so far, %d landed", sub.name, totals["messages"], totals["landed"])

    try:
        bus.ensure()
        log.info("%s: landing from %s (batches of %d)", sub.name, bus.source, max_messages)
        stats = consume(bus, engine, stop, max_messages=max_messages, pull_timeout_s=pull_timeout_s,
                        idle_stop_s=idle_exit, on_batch=report)
    except Exception as exc:  # noqa: BLE001
        log.error("%s: stopped on error: %s: %s", sub.name, type(exc).__name__, exc)
        return 1
    finally:
        bus.close()
    log.info("%s: stopped; %d messages in %d batches (%d landed, %d duplicates, %d dead-lettered), %.0f msg/s",
             sub.name, stats.messages, stats.batches, stats.landed, stats.duplicates, stats.dead_lettered, stats.rate)
    return 0


def supervise(names: list[str]) -> int:
    """Run `aios land --bus NAME` for each name; restart a consumer that dies (back-off 1 s doubling to
    30 s, reset after it ran 60 s); on SIGTERM/SIGINT stop them all (SIGTERM, then SIGKILL after 15 s)."""
    if not names:
        log.error("no subscriptions configured: nothing to land")
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    procs: dict[str, subprocess.Popen] = {}
    started: dict[str, float] = {}
    delay: dict[str, float] = dict.fromkeys(names, RESTART_MIN_S)
    next_start: dict[str, float] = dict.fromkeys(names, 0.0)
    while not stop.is_set():
        now = time.monotonic()
        for name in names:
            p = procs.get(name)
            if p is not None and p.poll() is not None:
                ran = now - started[name]
                delay[name] = RESTART_MIN_S if ran >= HEALTHY_AFTER_S else min(delay[name] * 2, RESTART_MAX_S)
                log.warning("consumer %s exited with %s after %.0f s; restarting in %.0f s",
                            name, p.returncode, ran, delay[name])
                next_start[name] = now + delay[name]
                procs.pop(name)
            if name not in procs and now >= next_start[name]:
                procs[name] = subprocess.Popen([sys.executable, "-m", "aios", "land", "--bus", name])
                started[name] = now
                log.info("started consumer %s (pid %d)", name, procs[name].pid)
        stop.wait(0.5)
    for p in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for p in procs.values():
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    log.info("all consumers stopped")
    return 0
