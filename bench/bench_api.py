"""Sync API latency: p50/p95/p99 at a fixed request rate against a real `aios serve` on 127.0.0.1.

The server is `python -m aios serve` in a child process on a trained home (bench/_home.py) with
its own temporary decision store. The load is open-loop and bounded: request i is due at
t0 + i/rate (one claim per request, its documents inline, every claim new), sent on an HTTP/1.1
keep-alive pool (aiohttp on uvloop: the client must cost far less than the server), and its latency counts from the time it was *due*, so a slow server is not
excused by the client waiting for it (no coordinated omission). Requests time out after 10 s.

Each claim's documents are written to the home's document store first and only referenced: the server
reads them. Two profiles: embedded (SQLite file) and production (a fresh PostgreSQL database).

Per profile, in one run: the baseline (the old path, `aios serve --no-fast-path`, one worker: pandas
`decide` and one transaction per store) at the fixed rate for a shorter time; the fast path with
`--workers` processes at the fixed rate (goal p95 <= 20 ms, p99 <= 50 ms); and a rising rate sweep on
one fast server that prints the highest rate holding p95 <= 300 ms with no errors (the knee; goal
>= 1,000 req/s). `ratio` = baseline latency / measured latency (how many times lower).

    python -m bench.bench_api [--rate 200] [--seconds 60] [--quick] [--workers 2] [--profiles embedded,production]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from aios.kernel.settings import Settings
from bench._home import child_env, trained_settings

GOAL_P95_MS = 20.0
GOAL_P99_MS = 50.0
KNEE_P95_MS = 300.0
GOAL_KNEE_RPS = 1000.0
SWEEP = [200.0, 400.0, 600.0, 800.0, 1000.0, 1200.0, 1500.0]
SWEEP_QUICK = [200.0, 400.0, 700.0, 1000.0]
PROFILES = ("embedded", "production")
REQUEST_TIMEOUT_S = 10.0
READY_TIMEOUT_S = 600.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_payloads(settings: Settings, n: int, seed: int = 5) -> list[bytes]:
    """n distinct claims as request bodies (one claim each, ids unique to this run), their documents written
    to the home's document store beforehand and only referenced (`document_refs`): the server reads them."""
    from connectors.documents import DocumentStore
    from models.generator import Book, generate_claims, to_inbox_records

    book = Book(pd.read_parquet(settings.policies_path))
    run = uuid.uuid4().hex[:6]
    claims, docs = generate_claims(book, date(2026, 11, 26), 1, int(n * 1.1) + 10, seed=seed,
                                   id_prefix=f"BENCH-{run}-")
    claims = to_inbox_records(claims).head(n)
    store = DocumentStore(settings.documents_dir)
    for claim_id, ref, text in zip(docs["claim_id"], docs["doc_ref"], docs["text"]):
        store.write_for_claim(claim_id, ref, text)
    out = []
    for rec in claims.to_dict("records"):
        rec["document_refs"] = rec["document_refs"].split(";")
        out.append(json.dumps(rec).encode())
    if len(out) < n:
        raise RuntimeError(f"generated only {len(out)} claims, wanted {n}")
    return out


class Server:
    """`aios serve` in a child process on `settings.home`, with its own decision store."""

    def __init__(self, settings: Settings, max_batch: int | None = None, *, fast_path: bool = True,
                 workers: int = 1, db_url: str | None = None) -> None:
        self.port = _free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="aios-bench-api-"))
        env = child_env(settings)
        env["AIOS_DATABASE_URL"] = db_url or f"sqlite:///{self.workdir / 'api.db'}"
        self.key = _register_client(env["AIOS_DATABASE_URL"])
        args = [sys.executable, "-m", "aios", "serve", "--port", str(self.port), "--log-level", "warning",
                "--pin-check-seconds", "5", "--workers", str(workers),
                "--fast-path" if fast_path else "--no-fast-path"]
        if max_batch is not None:
            args += ["--max-batch", str(max_batch)]
        self.log = open(self.workdir / "server.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(args, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self) -> None:
        """Block until /readyz answers 200 twenty times in a row, on fresh connections so every worker
        process is asked (bounded)."""
        import httpx

        deadline = time.monotonic() + READY_TIMEOUT_S
        streak = 0
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {(self.workdir / 'server.log').read_text()[-2000:]}")
            try:
                streak = streak + 1 if httpx.get(self.url + "/readyz", timeout=2).status_code == 200 else 0
            except httpx.HTTPError:
                streak = 0
            if streak >= 20:
                return
            time.sleep(0.05 if streak else 0.25)
        raise TimeoutError(f"server not ready after {READY_TIMEOUT_S} s")

    def stop(self) -> None:
        """Terminate the child (SIGTERM, then SIGKILL after 10 s) and remove its work directory."""
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _register_client(db_url: str) -> str:
    """A service client (decisions:write, no practical rate limit) in the server's store; its API key."""
    from aios.kernel.db import ensure_tables, get_engine
    from connectors.stores.clients import TABLES, add_client

    engine = get_engine(db_url)
    ensure_tables(engine, *TABLES)
    _, key = add_client(engine, f"bench-{uuid.uuid4().hex[:8]}", ["decisions:write"], created_by="bench", rate_per_minute=1_000_000)
    engine.dispose()
    return key


async def _load(url: str, payloads: list[bytes], rate: float, key: str) -> tuple[np.ndarray, int, float]:
    """Send payloads open-loop at `rate`/s; latencies (s, from due time) of the successes, errors, elapsed."""
    import aiohttp

    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=256)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession(base_url=url, connector=connector, timeout=timeout) as session:
        for _ in range(16):  # warm the pool and the server (not measured)
            async with session.get("/healthz") as r:
                await r.read()
        loop = asyncio.get_running_loop()
        t0 = loop.time() + 0.05

        async def one(i: int, body: bytes) -> None:
            nonlocal errors
            due = t0 + i / rate
            await asyncio.sleep(max(0.0, due - loop.time()))
            try:
                async with session.post("/v1/decisions", data=body, headers=headers) as r:
                    await r.read()
                    if r.status == 200:
                        latencies.append(loop.time() - due)
                    else:
                        errors += 1
            except (aiohttp.ClientError, asyncio.TimeoutError):
                errors += 1

        await asyncio.gather(*[one(i, b) for i, b in enumerate(payloads)])
        elapsed = loop.time() - t0
    return np.array(latencies), errors, elapsed


def _run_load(url: str, payloads: list[bytes], rate: float, key: str) -> tuple[np.ndarray, int, float]:
    try:
        import uvloop

        return uvloop.run(_load(url, payloads, rate, key))
    except ImportError:
        return asyncio.run(_load(url, payloads, rate, key))


def _pct(lat: np.ndarray) -> dict[str, float]:
    return {f"p{q}": float(np.percentile(lat, q) * 1000) if len(lat) else float("nan") for q in (50, 95, 99)}


def measure_load(settings: Settings, rate: float, seconds: float, max_batch: int | None = None,
                 payloads: list[bytes] | None = None, server: Server | None = None, **server_kw) -> dict:
    """Percentiles (ms), achieved rate and errors of one bounded load run (against `server`, or a fresh one)."""
    n = int(rate * seconds)
    payloads = payloads or make_payloads(settings, n)
    own = server is None
    server = server or Server(settings, max_batch, **server_kw)
    try:
        if own:
            server.wait_ready()
        lat, errors, elapsed = _run_load(server.url, payloads[:n], rate, server.key)
    finally:
        if own:
            server.stop()
    return {**_pct(lat), "requests": n, "ok": int(len(lat)), "errors": errors, "elapsed_s": round(elapsed, 2),
            "achieved_rps": round(len(lat) / elapsed, 1) if elapsed > 0 else 0.0, "rate": rate,
            "max_batch": max_batch or "default"}


def holds_slo(r: dict, p95_ms: float = KNEE_P95_MS) -> bool:
    """No errors, p95 within `p95_ms`, and the server kept up (>= 95% of the offered rate)."""
    return r["errors"] == 0 and r["p95"] <= p95_ms and r["achieved_rps"] >= 0.95 * r["rate"]


def knee(settings: Settings, rates: list[float], seconds: float, payloads: list[bytes], **server_kw) -> dict:
    """The highest offered rate (of `rates`, rising; stops at the first that fails) holding `holds_slo`."""
    best, runs = 0.0, []
    server = Server(settings, **server_kw)
    try:
        server.wait_ready()
        used = 0
        for rate in rates:
            n = int(rate * seconds)
            r = measure_load(settings, rate, seconds, payloads=payloads[used:used + n], server=server)
            used += n
            runs.append({k: r[k] for k in ("rate", "p50", "p95", "p99", "errors", "achieved_rps")})
            print(f"[bench_api]   sweep {rate:>6.0f}/s p95 {r['p95']:8.1f} ms errors {r['errors']} "
                  f"achieved {r['achieved_rps']}/s", flush=True)
            if not holds_slo(r):
                break
            best = rate
    finally:
        server.stop()
    return {"knee_rps": best, "runs": runs}


def _profile_url(profile: str) -> tuple[str | None, str | None]:
    if profile == "embedded":
        return None, None
    from connectors.bus.local_servers import create_postgres_database

    name, url = create_postgres_database(prefix="aios_bench_")
    return name, url


def run(quick: bool = False, rate: float = 200.0, seconds: float | None = None,
        baseline_seconds: float | None = None, workers: int = 2, profiles: tuple[str, ...] = PROFILES) -> list[dict]:
    """Entries `{name, value, unit, baseline, ratio, ...}` per profile (see module docstring)."""
    from connectors.bus.local_servers import ServerUnavailable, drop_postgres_database

    seconds = seconds or (8.0 if quick else 60.0)
    baseline_seconds = baseline_seconds or (5.0 if quick else 15.0)
    sweep_seconds = 4.0 if quick else 8.0
    rates = SWEEP_QUICK if quick else SWEEP
    settings = trained_settings()
    need = int(rate * (seconds + baseline_seconds) + sum(r * sweep_seconds for r in rates))
    payloads = make_payloads(settings, need)
    entries: list[dict] = []
    for profile in profiles:
        try:
            dbname, url = _profile_url(profile)
        except ServerUnavailable as exc:
            entries.append({"name": f"api_{profile}", "value": None, "unit": "ms", "baseline": None, "ratio": None,
                            "error": str(exc)})
            continue
        try:
            # every run gets claims no other run sent (each claim is new to its store)
            cut = [0]

            def take(n: int) -> list[bytes]:
                part = payloads[cut[0]:cut[0] + n]
                cut[0] += n
                return part

            print(f"[bench_api] {profile}: baseline (old path, 1 worker) {rate:.0f}/s for {baseline_seconds:.0f} s",
                  flush=True)
            base = measure_load(settings, rate, baseline_seconds, payloads=take(int(rate * baseline_seconds)),
                                fast_path=False, workers=1, db_url=url)
            print(f"[bench_api]   baseline p50/p95/p99 {base['p50']:.1f}/{base['p95']:.1f}/{base['p99']:.1f} ms, "
                  f"errors {base['errors']}, achieved {base['achieved_rps']}/s", flush=True)
            print(f"[bench_api] {profile}: fast path, {workers} workers, {rate:.0f}/s for {seconds:.0f} s", flush=True)
            main = measure_load(settings, rate, seconds, payloads=take(int(rate * seconds)), fast_path=True,
                                workers=workers, db_url=url)
            print(f"[bench_api]   fast p50/p95/p99 {main['p50']:.1f}/{main['p95']:.1f}/{main['p99']:.1f} ms, "
                  f"errors {main['errors']}, achieved {main['achieved_rps']}/s", flush=True)
            print(f"[bench_api] {profile}: rate sweep (p95 <= {KNEE_P95_MS:.0f} ms)", flush=True)
            sweep = knee(settings, rates, sweep_seconds, take(int(sum(r * sweep_seconds for r in rates))),
                         fast_path=True, workers=workers, db_url=url)
        finally:
            if dbname:
                drop_postgres_database(dbname)
        common = {"profile": profile, "rate_rps": rate, "workers": workers,
                  "baseline_name": f"old path (pandas decide, one transaction per store, 1 worker), "
                                   f"{baseline_seconds:.0f} s, same run"}
        for q in ("p50", "p95", "p99"):
            value, baseline = main[q], base[q]
            goal = {"p95": GOAL_P95_MS, "p99": GOAL_P99_MS}.get(q)
            entries.append({
                "name": f"api_{profile}_latency_{q}", "value": round(value, 2), "unit": "ms",
                "baseline": round(baseline, 2), "ratio": round(baseline / value, 2) if value > 0 else None,
                **common, "seconds": seconds, "requests": main["requests"], "errors": main["errors"],
                "baseline_errors": base["errors"], "achieved_rps": main["achieved_rps"],
                **({"goal_ms": goal, "goal_met": value <= goal} if goal else {}),
            })
        entries.append({"name": f"api_{profile}_knee", "value": sweep["knee_rps"], "unit": "req/s",
                        "baseline": base["achieved_rps"] if holds_slo(base) else 0.0,
                        "ratio": None, **common, "slo": f"p95 <= {KNEE_P95_MS:.0f} ms, no errors",
                        "goal_rps": GOAL_KNEE_RPS, "goal_met": sweep["knee_rps"] >= GOAL_KNEE_RPS,
                        "sweep": sweep["runs"],
                        "note": "baseline: the old path's achieved rate at the fixed rate if it held the SLO, else 0"})
    return entries


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.bench_api")
    p.add_argument("--rate", type=float, default=200.0)
    p.add_argument("--seconds", type=float, default=None)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--profiles", default=",".join(PROFILES))
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    entries = run(a.quick, a.rate, a.seconds, workers=a.workers, profiles=tuple(a.profiles.split(",")))
    if a.json:
        print(json.dumps(entries, indent=2))
        return
    for e in entries:
        print(f"{e['name']:<32}{e['value']!s:>10} {e['unit']:<6} baseline {e['baseline']!s:>10}  "
              f"ratio {e['ratio']}x  errors {e.get('errors', 0)}  goal_met {e.get('goal_met', '-')}")


if __name__ == "__main__":
    main()
