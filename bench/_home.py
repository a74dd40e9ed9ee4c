"""A trained AIOS home for the benchmarks: a fresh temporary one, or the one named by `AIOS_BENCH_HOME`.

A fresh home is a temporary directory with a small seeded history and the training job run
through the one launcher in a child process (`aios_assets.launch.run_in_child`: the benchmarks never
import Dagster);
it is removed when the process exits. `AIOS_BENCH_HOME=.aios` reuses a trained home (saves ~30 s);
the API benchmark then writes its decisions to a temporary store but the claims' documents into
that home's document store.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import time
from functools import lru_cache
from pathlib import Path

from aios.kernel.settings import Settings
from aios_assets.launch import child_env, run_in_child

__all__ = ["child_env", "trained_settings"]

HISTORY_DAYS = 100
CLAIMS_PER_DAY = 300
N_POLICIES = 8000


def _is_trained(settings: Settings) -> bool:
    from connectors.registry import resolve_alias

    if not (settings.policies_path.exists() and (settings.artifacts_dir / "bayes" / "current.json").exists()):
        return False
    try:
        resolve_alias(settings.mlflow_uri, settings.model_name, settings.model_alias)
    except Exception:  # noqa: BLE001 - any failure means "not usable", we train a fresh home
        return False
    return True


@lru_cache(maxsize=1)
def trained_settings() -> Settings:
    """Settings of a home with a champion classifier, a network and the book of policies."""
    named = os.environ.get("AIOS_BENCH_HOME")
    if named:
        s = Settings(home=Path(named).resolve())
        if not _is_trained(s):
            raise RuntimeError(f"AIOS_BENCH_HOME={named} holds no trained model (run `aios generate` and `aios train`)")
        print(f"[bench] reusing trained home {s.home}", flush=True)
        return s
    from aios.usecases.datasets import generate_history

    s = Settings(home=Path(tempfile.mkdtemp(prefix="aios-bench-")))
    atexit.register(shutil.rmtree, s.home, ignore_errors=True)
    s.ensure_dirs()
    from aios.usecases.production import write_embedded_dagster_yaml

    write_embedded_dagster_yaml(s.dagster_home)
    t0 = time.perf_counter()
    print(f"[bench] training a fresh home in {s.home} ({HISTORY_DAYS} days x {CLAIMS_PER_DAY} claims) ...",
          flush=True)
    generate_history(s, HISTORY_DAYS, CLAIMS_PER_DAY, s.seed, n_policies=N_POLICIES)
    run_in_child(s, "train", timeout=900)
    if not _is_trained(s):
        raise RuntimeError(f"training for the benchmarks left no champion in {s.home}")
    print(f"[bench] trained in {time.perf_counter() - t0:.0f} s", flush=True)
    return s
