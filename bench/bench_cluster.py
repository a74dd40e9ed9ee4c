"""A backfill of daily partitions of `claims_job` on three executors, on the production profile (PostgreSQL
stores, Dagster instance and MLflow): in process (the baseline: each run's steps in its launching
process), Celery with 1 worker, Celery with 2 workers (RabbitMQ on 127.0.0.1:5672, a private vhost).

Each configuration gets its own days (already landed), launched the way the CLI launches them
(`python -m aios_assets.launch partition DAY`), two runs at a time (the run queue's `max_concurrent_runs`).
Workers are started and answering before the clock starts. Reported: wall time of the backfill, partitions
per minute, and the steps' own compute time summed from the Dagster instance (wall minus that is the
orchestration: process start-up, Celery hand-offs, event writes). `ratio` is in-process wall / this wall.

    python -m bench.bench_cluster [--quick] [--days 10]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
FIRST_DAY = date(2026, 11, 20)
CONCURRENT_RUNS = 2


def _run(env: dict, *args: str, timeout: int = 900) -> None:
    proc = subprocess.run([sys.executable, "-m", *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")


def _deployment(root: Path, names: list[str], history_days: int, per_day: int) -> dict:
    url = "postgresql+psycopg2://postgres@127.0.0.1:5432/"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIOS_", "DAGSTER_HOME"))}
    env.update(AIOS_PROFILE="production", AIOS_HOME=str(root / "home"), DAGSTER_HOME=str(root / "dagster"),
               AIOS_DATABASE_URL=url + names[0], AIOS_DAGSTER_DATABASE_URL=url + names[1],
               AIOS_MLFLOW_TRACKING_URI="postgresql://postgres@127.0.0.1:5432/" + names[2],
               AIOS_PAYOUT_BANK_DIR=str(root / "bank"), DAGSTER_DISABLE_TELEMETRY="1", OMP_NUM_THREADS="1",
               HF_HUB_OFFLINE="1", GX_ANALYTICS_ENABLED="false", PYTHONPATH=str(ROOT))
    _run(env, "aios", "db", "prepare")
    _run(env, "aios", "generate", "--days", str(history_days), "--per-day", str(per_day))
    _run(env, "aios", "train")
    return env


def _land(env: dict, days: list[str], per_day: int) -> None:
    """Drop and land each day (as the inbox sensor would), in this process."""
    from aios.kernel.settings import Settings
    from aios.usecases.datasets import drop_batch

    s = Settings(home=Path(env["AIOS_HOME"]), profile="production", database_url=env["AIOS_DATABASE_URL"])
    for day in days:
        path = drop_batch(s, day, malformed=0, per_day=per_day, name=f"bench-{day}.csv")
        (s.landing_dir / day).mkdir(parents=True, exist_ok=True)
        path.rename(s.landing_dir / day / path.name)


def _start_workers(env: dict, n: int) -> list[subprocess.Popen]:
    procs = [subprocess.Popen([sys.executable, "-m", "aios", "cluster", "worker", "--name", f"b{i}",
                               *(["--heavy"] if i == 1 else [])], env=env, cwd=ROOT, start_new_session=True,
                              stdout=open(Path(env["AIOS_HOME"]) / f"worker-b{i}.log", "w"),
                              stderr=subprocess.STDOUT) for i in range(1, n + 1)]
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:  # every worker answering before the clock starts
        out = subprocess.run([sys.executable, "-m", "aios", "cluster", "status", "--timeout", "2"], env=env,
                             cwd=ROOT, capture_output=True, text=True)
        if sum(f"b{i}@" in out.stdout for i in range(1, n + 1)) == n:
            return procs
        time.sleep(1)
    _stop(procs)
    raise RuntimeError(f"{n} Celery workers did not answer within 180 s")


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


def _backfill(env: dict, days: list[str]) -> float:
    def one(day: str) -> None:
        _run(env, "aios_assets.launch", "partition", day)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(CONCURRENT_RUNS) as pool:
        list(pool.map(one, days))
    return time.perf_counter() - t0


def _step_seconds(env: dict, days: list[str]) -> float:
    """The steps' own compute time of the runs of `days`, from the Dagster instance's step events."""
    engine = sa.create_engine(env["AIOS_DAGSTER_DATABASE_URL"])
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "select e.event from event_logs e join run_tags t on t.run_id = e.run_id "
            "where e.dagster_event_type = 'STEP_SUCCESS' and t.key = 'dagster/partition' "
            "and t.value = any(:days)"), {"days": days}).scalars().all()
    engine.dispose()
    return sum(json.loads(r)["dagster_event"]["event_specific_data"]["duration_ms"] for r in rows) / 1000


def measure(days: int = 10, per_day: int = 300, history_days: int = 60) -> list[dict[str, Any]]:
    """Wall time of a `days`-partition backfill in process, on Celery with 1 and with 2 workers."""
    from connectors.bus.local_servers import drop_postgres_database

    root = Path(tempfile.mkdtemp(prefix="aios-bench-cluster-"))
    vhost = f"aios-bench-{uuid.uuid4().hex[:8]}"
    base = f"aios_bench_{uuid.uuid4().hex[:8]}"
    names = [base, base + "_dagster", base + "_mlflow"]
    configs = [("in_process", 0), ("celery_1_worker", 1), ("celery_2_workers", 2)]
    results: dict[str, dict[str, float]] = {}
    try:
        env = _deployment(root, names, history_days, per_day)
        subprocess.run(["rabbitmqctl", "add_vhost", vhost], check=True, capture_output=True, timeout=120)
        subprocess.run(["rabbitmqctl", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"], check=True,
                       capture_output=True, timeout=120)
        all_days = [str(FIRST_DAY + timedelta(days=i)) for i in range(days * len(configs))]
        _land(env, all_days, per_day)
        for i, (name, n_workers) in enumerate(configs):
            these = all_days[i * days:(i + 1) * days]
            run_env = dict(env, AIOS_EXECUTOR="celery" if n_workers else "default",
                           AIOS_CELERY_BROKER=f"pyamqp://guest:guest@127.0.0.1:5672/{vhost}")
            workers = _start_workers(run_env, n_workers) if n_workers else []
            try:
                wall = _backfill(run_env, these)
            finally:
                _stop(workers)
            results[name] = {"wall": wall, "steps": _step_seconds(env, these)}
            print(f"[bench_cluster] {name}: {days} partitions in {wall:.0f} s "
                  f"(steps' own time {results[name]['steps']:.0f} s)", flush=True)
    finally:
        subprocess.run(["rabbitmqctl", "delete_vhost", vhost], capture_output=True, timeout=120)
        for db in names:
            drop_postgres_database(db)
        shutil.rmtree(root, ignore_errors=True)
    base = results["in_process"]["wall"]
    load = os.getloadavg()[0]
    return [{"name": f"backfill_{name}", "value": round(r["wall"], 1), "unit": "s", "baseline": round(base, 1),
             "ratio": round(base / r["wall"], 2), "baseline_name": f"in process, {days} partitions x ~{per_day} "
             f"claims, {CONCURRENT_RUNS} runs at a time", "partitions_per_min": round(60 * days / r["wall"], 2),
             "step_seconds": round(r["steps"], 1), "cpus": os.cpu_count(), "load_avg_1m_at_end": round(load, 1)}
            for name, r in results.items()]


def run(quick: bool = False) -> list[dict[str, Any]]:
    """`make bench` entry: 10 partitions (3 with --quick)."""
    return measure(days=3, per_day=150) if quick else measure(days=10, per_day=300)


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="python -m bench.bench_cluster", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--days", type=int, default=None)
    a = p.parse_args()
    entries = run(quick=a.quick) if a.days is None else measure(days=a.days)
    print(json.dumps(entries, indent=2))
