"""Sign-in under load: memory and time of N concurrent sign-ins, and the cost of refused attempts.

Each configuration runs in a child process on a fresh home (peak RSS is per process): the review UI app
in-process (FastAPI TestClient, one thread per client), N browsers signing in at once with the right
password. Baseline, in the same run: the same app with the argon2 pool widened to N slots (what the code
did before the pool: one argon2 computation, ~64 MiB, per concurrent attempt). Second figure: the time of
an attempt refused by the throttle (no argon2) against a wrong-password attempt (one argon2).

    python -m bench.bench_signin [--quick] [--n 40]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

PASSWORD = "correct horse battery"


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _child(slots: int, n: int) -> dict:
    """One configuration, in this (child) process."""
    import re

    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from aios.kernel.db import ensure_tables, get_engine
    from aios.kernel.settings import Settings
    from connectors.stores import accounts
    from connectors.stores.reviews import ensure_review_tables
    from governance.policy import load_policy_set
    from service.review import install

    accounts.HASH_POOL = accounts.HashPool(slots=slots, wait_s=120)
    home = Path(tempfile.mkdtemp(prefix="aios-bench-signin-"))
    settings = Settings(home=home)
    settings.ensure_dirs()
    engine = get_engine(settings.db_url)
    ensure_tables(engine)
    ensure_review_tables(engine)
    policy = load_policy_set()
    for i in range(n):
        accounts.create_user(engine, f"user{i}", "reviewer", PASSWORD, policy.roles, created_by="bench")
    app = FastAPI()
    install(app, settings)
    csrf = re.compile(r'name="login_csrf" value="([^"]+)"|name="csrf_token" value="([^"]+)"')
    clients = [TestClient(app) for _ in range(n)]
    tokens = []
    for c in clients:
        m = csrf.search(c.get("/review/login").text)
        tokens.append(m.group(1) or m.group(2))

    def login(i: int) -> int:
        return clients[i].post("/review/login", data={"username": f"user{i}", "password": PASSWORD,
                                                      "csrf_token": tokens[i]}, follow_redirects=False).status_code

    before = _rss_mib()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(n) as pool:
        codes = list(pool.map(login, range(n)))
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # refused (throttled) attempts against wrong-password attempts, one browser, one account
    c = clients[0]
    free = int(policy.signin_limits["free_failures"])

    def attempt(password: str) -> tuple[int, float]:
        m = csrf.search(c.get("/review/login").text)
        t = time.perf_counter()
        code = c.post("/review/login", data={"username": "user1", "password": password,
                                             "csrf_token": m.group(1) or m.group(2)}).status_code
        return code, time.perf_counter() - t

    c.cookies.clear()
    wrong = [attempt("wrong password") for _ in range(free)]
    refused = [attempt("wrong password") for _ in range(20)]
    return {"slots": slots, "n": n, "ok": codes.count(303), "wall_s": wall, "rss_before_mib": before,
            "peak_rss_mib": peak, "wrong_ms": 1000 * sum(t for _, t in wrong) / len(wrong),
            "wrong_codes": sorted({code for code, _ in wrong}),
            "refused_ms": 1000 * sum(t for _, t in refused) / len(refused),
            "refused_codes": sorted({code for code, _ in refused})}


def _measure(slots: int, n: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GX_ANALYTICS_ENABLED": "false"}
    out = subprocess.run([sys.executable, "-m", "bench.bench_signin", "--child", "--slots", str(slots),
                          "--n", str(n)], capture_output=True, text=True, env=env, timeout=900,
                         cwd=Path(__file__).resolve().parents[1])
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(quick: bool = False, n: int | None = None) -> list[dict]:
    """Entries for peak memory and wall time of N concurrent sign-ins, and the refused-attempt cost."""
    from connectors.stores.accounts import HASH_SLOTS

    n = n or (10 if quick else 40)
    pooled, wide = _measure(HASH_SLOTS, n), _measure(n, n)
    common = {"concurrent_sign_ins": n, "baseline_name": f"argon2 pool widened to {n} slots (no bound)"}
    return [
        {"name": "signin_peak_rss", "value": round(pooled["peak_rss_mib"], 1), "unit": "MiB",
         "baseline": round(wide["peak_rss_mib"], 1), "ratio": round(wide["peak_rss_mib"] / pooled["peak_rss_mib"], 2),
         "rss_before_mib": round(pooled["rss_before_mib"], 1), "ok": pooled["ok"], **common},
        {"name": "signin_wall", "value": round(pooled["wall_s"], 2), "unit": "s", "baseline": round(wide["wall_s"], 2),
         "ratio": round(wide["wall_s"] / pooled["wall_s"], 2), "ok": pooled["ok"], "baseline_ok": wide["ok"], **common},
        {"name": "signin_refused_attempt", "value": round(pooled["refused_ms"], 2), "unit": "ms",
         "baseline": round(pooled["wrong_ms"], 2), "ratio": round(pooled["wrong_ms"] / pooled["refused_ms"], 1),
         "baseline_name": "a wrong-password attempt (one argon2 verification)",
         "codes": pooled["refused_codes"], "baseline_codes": pooled["wrong_codes"]},
    ]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.bench_signin")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--n", type=int, default=None)
    p.add_argument("--child", action="store_true")
    p.add_argument("--slots", type=int, default=2)
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(_child(a.slots, a.n or 10)))
        return
    for e in run(a.quick, a.n):
        print(f"{e['name']:<24}{e['value']:>10} {e['unit']:<4} baseline {e['baseline']:>10}  ratio {e['ratio']}x")


if __name__ == "__main__":
    main()
