"""Sync API latency: p50/p95/p99 at a fixed request rate against a real `aios serve` on 127.0.0.1.

The server is `python -m aios serve` in a child process on a trained home (bench/_home.py) with
its own temporary decision store. The load is open-loop and bounded: request i is due at
t0 + i/rate (one claim per request, its documents inline, every claim new), sent on an HTTP/1.1
keep-alive pool (aiohttp on uvloop: the client must cost far less than the server), and its latency counts from the time it was *due*, so a slow server is not
excused by the client waiting for it (no coordinated omission). Requests time out after 10 s.

Baseline, measured in the same run: the same load against the same server code with micro-batching
off (`--max-batch 1`: one claim per decision call), for a shorter time. `ratio` = baseline latency /
measured latency (how many times lower). The issue's goal (p95 ≤ 20 ms) is reported beside it.

    python -m bench.bench_api [--rate 200] [--seconds 20] [--quick]
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
REQUEST_TIMEOUT_S = 10.0
READY_TIMEOUT_S = 180.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_payloads(settings: Settings, n: int, seed: int = 5) -> list[bytes]:
    """n distinct claims as request bodies (one claim each, documents inline), ids unique to this run."""
    from models.generator import Book, generate_claims, to_inbox_records

    book = Book(pd.read_parquet(settings.policies_path))
    run = uuid.uuid4().hex[:6]
    claims, docs = generate_claims(book, date(2026, 11, 26), 1, int(n * 1.1) + 10, seed=seed,
                                   id_prefix=f"BENCH-{run}-")
    claims = to_inbox_records(claims).head(n)
    by_claim = {cid: list(zip(g["doc_ref"], g["text"])) for cid, g in docs.groupby("claim_id")}
    out = []
    for rec in claims.to_dict("records"):
        rec["document_refs"] = rec["document_refs"].split(";")
        rec["documents"] = [{"doc_ref": r, "text": t} for r, t in by_claim.get(rec["claim_id"], [])]
        out.append(json.dumps(rec).encode())
    if len(out) < n:
        raise RuntimeError(f"generated only {len(out)} claims, wanted {n}")
    return out


class Server:
    """`aios serve` in a child process on `settings.home`, with its own decision store."""

    def __init__(self, settings: Settings, max_batch: int | None = None) -> None:
        self.port = _free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="aios-bench-api-"))
        env = child_env(settings)
        env["AIOS_DATABASE_URL"] = f"sqlite:///{self.workdir / 'api.db'}"
        self.key = _register_client(env["AIOS_DATABASE_URL"])
        args = [sys.executable, "-m", "aios", "serve", "--port", str(self.port), "--log-level", "warning",
                "--pin-check-seconds", "5"]
        if max_batch is not None:
            args += ["--max-batch", str(max_batch)]
        self.log = open(self.workdir / "server.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(args, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self) -> None:
        """Block until /readyz answers 200 (bounded)."""
        import httpx

        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {(self.workdir / 'server.log').read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
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
    _, key = add_client(engine, "bench", ["decisions:write"], created_by="bench", rate_per_minute=1_000_000)
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


def measure_load(settings: Settings, rate: float, seconds: float, max_batch: int | None = None,
                 payloads: list[bytes] | None = None) -> dict:
    """Percentiles (ms), achieved rate and errors of one bounded load run against a fresh server."""
    n = int(rate * seconds)
    payloads = payloads or make_payloads(settings, n)
    server = Server(settings, max_batch)
    try:
        server.wait_ready()
        lat, errors, elapsed = _run_load(server.url, payloads[:n], rate, server.key)
    finally:
        server.stop()
    pct = {f"p{q}": float(np.percentile(lat, q) * 1000) if len(lat) else float("nan") for q in (50, 95, 99)}
    return {**pct, "requests": n, "ok": int(len(lat)), "errors": errors, "elapsed_s": round(elapsed, 2),
            "achieved_rps": round(len(lat) / elapsed, 1) if elapsed > 0 else 0.0, "rate": rate,
            "max_batch": max_batch or "default"}


def run(quick: bool = False, rate: float = 200.0, seconds: float | None = None,
        baseline_seconds: float | None = None) -> list[dict]:
    """Entries `{name, value, unit, baseline, ratio, ...}` for p50/p95/p99 (see module docstring)."""
    seconds = seconds or (5.0 if quick else 20.0)
    baseline_seconds = baseline_seconds or (3.0 if quick else 8.0)
    settings = trained_settings()
    payloads = make_payloads(settings, int(rate * max(seconds, baseline_seconds)))
    main = measure_load(settings, rate, seconds, payloads=payloads)
    base = measure_load(settings, rate, baseline_seconds, max_batch=1, payloads=payloads)
    entries = []
    for q in ("p50", "p95", "p99"):
        value, baseline = main[q], base[q]
        entries.append({
            "name": f"api_latency_{q}", "value": round(value, 2), "unit": "ms", "baseline": round(baseline, 2),
            "ratio": round(baseline / value, 2) if value > 0 else None,
            "baseline_name": f"same server, micro-batching off (--max-batch 1), {baseline_seconds:.0f} s",
            "rate_rps": rate, "seconds": seconds, "requests": main["requests"], "errors": main["errors"],
            "achieved_rps": main["achieved_rps"],
            **({"goal_ms": GOAL_P95_MS, "goal_met": value <= GOAL_P95_MS} if q == "p95" else {}),
        })
    entries.append({"name": "api_throughput", "value": main["achieved_rps"], "unit": "req/s",
                    "baseline": base["achieved_rps"], "ratio": round(main["achieved_rps"] / base["achieved_rps"], 2)
                    if base["achieved_rps"] else None,
                    "baseline_name": "micro-batching off", "errors": main["errors"],
                    "baseline_errors": base["errors"]})
    return entries


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.bench_api")
    p.add_argument("--rate", type=float, default=200.0)
    p.add_argument("--seconds", type=float, default=None)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    entries = run(a.quick, a.rate, a.seconds)
    if a.json:
        print(json.dumps(entries, indent=2))
        return
    for e in entries:
        print(f"{e['name']:<18}{e['value']:>10} {e['unit']:<6} baseline {e['baseline']:>10}  ratio {e['ratio']}x"
              f"  errors {e.get('errors', 0)}")


if __name__ == "__main__":
    main()
