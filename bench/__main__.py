"""`make bench` (`python -m bench`): run every benchmark module, print one table, write bench/results.json.

Every `bench/bench_*.py` module is run in turn, in one process (they share one trained home, see
bench/_home.py). A module exposing `run(quick: bool) -> list[dict]` is called as is; the one that
predates this runner is called through its own function (`ADAPTERS`). Each entry is
`{name, value, unit, baseline, ratio}` plus what the module adds (the baseline's name, differences,
goals); a module that fails gives one entry with `value: null` and its error, and the others still run.
`ratio` is always "how many times better than the baseline" (a speed-up; for latencies baseline/value).

    python -m bench [--quick] [--only api,batch] [--skip ingest] [--out bench/results.json]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results.json"
ORDER = ["bench_inference", "bench_batch", "bench_api", "bench_ingest", "bench_fusion_study", "bench_ocr", "bench_cluster"]
KEYS = ("name", "value", "unit", "baseline", "ratio")


def _ingest(quick: bool) -> list[dict[str, Any]]:
    from bench.bench_ingest import BASELINE_NAME, measure, measure_product

    entries = measure(n=5_000 if quick else 20_000)
    for e in entries:
        e.setdefault("baseline_name", BASELINE_NAME)
    # the product path: the `aios land` process against the broker's own pull+ack rate, same run
    entries += measure_product(n=5_000 if quick else 20_000, rounds=1 if quick else 3)
    return entries


ADAPTERS: dict[str, Callable[[bool], list[dict[str, Any]]]] = {
    "bench_ingest": _ingest,
}


def modules() -> list[str]:
    """The benchmark modules, known ones first in `ORDER`, then any other `bench_*` module."""
    found = sorted(m.name for m in pkgutil.iter_modules([str(BENCH_DIR)]) if m.name.startswith("bench_"))
    return [m for m in ORDER if m in found] + [m for m in found if m not in ORDER]


def run_module(name: str, quick: bool) -> list[dict[str, Any]]:
    """The entries of one module; one error entry if it fails or has no runnable entry point."""
    t0 = time.perf_counter()
    try:
        if name in ADAPTERS:
            entries = ADAPTERS[name](quick)
        else:
            module = importlib.import_module(f"bench.{name}")
            if not hasattr(module, "run"):
                raise AttributeError(f"bench.{name} has no run(quick) function")
            entries = module.run(quick=quick)
    except Exception as exc:  # noqa: BLE001 - one failing benchmark must not hide the others
        traceback.print_exc()
        entries = [{"name": name, "value": None, "unit": "", "baseline": None, "ratio": None,
                    "error": f"{type(exc).__name__}: {exc}"}]
    for e in entries:
        e.setdefault("module", name)
        e.setdefault("module_seconds", round(time.perf_counter() - t0, 1))
    return entries


def normalise(entry: dict[str, Any]) -> dict[str, Any]:
    """The five required keys first (missing ones null), then the module's extra keys (JSON-safe)."""
    out = {k: entry.get(k) for k in KEYS}
    for k, v in entry.items():
        if k not in out:
            out[k] = v if isinstance(v, (str, int, float, bool, type(None), list, dict)) else str(v)
    return out


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if v != v:
            return "nan"
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def table(entries: list[dict[str, Any]]) -> str:
    """One fixed-width table of every entry, with the baseline's name and any difference or goal."""
    head = f"{'benchmark':<26}{'value':>12} {'unit':<9}{'baseline':>12}{'ratio':>10}  notes"
    lines = [head, "-" * len(head)]
    for e in entries:
        notes = []
        if e.get("error"):
            notes.append(f"ERROR {e['error']}")
        if e.get("baseline_name"):
            notes.append(f"vs {e['baseline_name']}")
        if "pyagrum_us" in e:
            notes.append(f"pyAgrum {_fmt(e['pyagrum_us'])} {e.get('unit')} ({e['ratio_pyagrum']:.3g}x)")
        if "min_ratio_pyagrum" in e:
            notes.append(f"min {e['min_ratio']:.3g}x vs pgmpy, min {e['min_ratio_pyagrum']:.3g}x vs pyAgrum")
        if "max_abs_diff" in e:
            notes.append(f"max|diff| {e['max_abs_diff']:.1e}")
        if "goal_met" in e:
            notes.append("goal met" if e["goal_met"] else "goal NOT met")
        ratio = f"{e['ratio']:.3g}x" if isinstance(e.get("ratio"), (int, float)) else "-"
        lines.append(f"{e['name']:<26}{_fmt(e.get('value')):>12} {e.get('unit') or '':<9}{_fmt(e.get('baseline')):>12}"
                     f"{ratio:>10}  {'; '.join(notes)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smaller sizes and shorter runs (~2-3 min)")
    p.add_argument("--only", default="", help="comma-separated modules (e.g. api,batch)")
    p.add_argument("--skip", default="", help="comma-separated modules to leave out")
    p.add_argument("--out", type=Path, default=RESULTS)
    a = p.parse_args(argv)
    names = modules()

    def pick(spec: str) -> set[str]:
        return {n if n.startswith("bench_") else f"bench_{n}" for n in spec.split(",") if n}

    if a.only:
        names = [n for n in names if n in pick(a.only)]
    names = [n for n in names if n not in pick(a.skip)]
    t0 = time.perf_counter()
    entries: list[dict[str, Any]] = []
    for name in names:
        print(f"[bench] {name} ...", flush=True)
        entries += [normalise(e) for e in run_module(name, a.quick)]
    a.out.write_text(json.dumps(entries, indent=2) + "\n")
    print()
    print(table(entries))
    print(f"\n{len(entries)} entries from {len(names)} modules in {time.perf_counter() - t0:.0f} s"
          f"{' (quick)' if a.quick else ''} → {a.out}")
    return 1 if any(e.get("error") for e in entries) else 0


if __name__ == "__main__":
    sys.exit(main())
