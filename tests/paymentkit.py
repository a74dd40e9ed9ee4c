"""Shared helpers of the payment-rail tests: the provider and bank as real processes, and approvals."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx

from connectors.stores import reviews
from aios.usecases import review_workflow as workflow

ROOT = Path(__file__).resolve().parents[1]


def stop_process(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL when the process has not exited within 10 s."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{what} did not answer {url} within {timeout}s")


class Provider:
    """The payment provider (tests/payment_provider/app.py) under uvicorn, its own SQLite ledger."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "AIOS_PROVIDER_DB": str(root / "provider.db"), "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--app-dir", str(ROOT / "tests"), "payment_provider.app:app",
             "--host", "127.0.0.1",
             "--port", str(self.port), "--log-level", "critical"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _wait_http(f"{self.url}/health", self.proc, "payment provider")

    def fault(self, mode: str | None, count: int = 1, delay_s: float = 0.0) -> None:
        httpx.post(f"{self.url}/admin/faults", json={"mode": mode, "count": count, "delay_s": delay_s}).raise_for_status()

    def paid_keys(self) -> Counter:
        """The provider's own ledger: payments per idempotency key."""
        return Counter(p["idempotency_key"] for p in httpx.get(f"{self.url}/admin/ledger").json())

    def stop(self) -> None:
        stop_process(self.proc)


class Bank:
    """mock-bank as its own process, reading `root/outbound` and writing `root/inbound` (an SFTP pair)."""

    def __init__(self, root: Path) -> None:
        from connectors.rails.bank_standin import account_specs, bank_command

        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(bank_command(root, self.port), cwd=ROOT, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        _wait_http(f"{self.url}/_mock/health", self.proc, "mock-bank")
        for ident, fields in account_specs():
            r = httpx.post(f"{self.url}/_mock/accounts", json={"id": ident, **fields})
            assert r.status_code in (201, 409), r.text

    def scan(self) -> list[dict]:
        """Make the bank read its drop folder now (instead of waiting for its poller)."""
        r = httpx.post(f"{self.url}/_mock/drop/scan", timeout=30)
        r.raise_for_status()
        return r.json()

    def accepted_keys(self) -> Counter:
        """The bank's own ledger: accepted payments per EndToEndId (our idempotency key)."""
        rows = httpx.get(f"{self.url}/_mock/payments", params={"all": ""}, timeout=30).json()
        rows = rows.get("payments", rows) if isinstance(rows, dict) else rows
        return Counter(p.get("endToEndId") or p.get("end_to_end_id") for p in rows
                       if (p.get("status") or "") != "rejected")

    def stop(self) -> None:
        stop_process(self.proc)


def approve(env, partition: str, claims: dict[str, float], currency: str = "EUR") -> list[str]:
    """Open cases for `claims` (claim_id → amount) and approve each as a reviewer; returns their keys."""
    env.cases(partition, {cid: (amount, 0.2) for cid, amount in claims.items()})
    if currency != "EUR":
        from connectors.stores.decisions import review_cases

        with env.engine.begin() as conn:
            conn.execute(review_cases.update().where(review_cases.c.claim_id.in_(list(claims)))
                         .values(currency=currency))
    user = env.user("rita", "reviewer")
    for cid in claims:
        workflow.claim_case(env.engine, cid, user, env.policy)
        workflow.record_review_decision(env.engine, cid, user, "approve", "documents check out", env.policy)
    return [f"payout:{cid}" for cid in claims]


def run_dispatcher(db_url: str, rail: str, *, bank_dir: Path | None = None, api_url: str = "",
                   crash_at: str | None = None, batch_size: int = 2, timeout: float = 1.0,
                   wait: float = 60.0) -> subprocess.CompletedProcess:
    """One dispatcher process (connectors/rails/run.py); `crash_at` names the point where it kills itself."""
    env = {k: v for k, v in os.environ.items() if k != "AIOS_CRASH_AT"}
    env["PYTHONPATH"] = str(ROOT)
    if crash_at:
        env["AIOS_CRASH_AT"] = crash_at
    cmd = [sys.executable, "-m", "connectors.rails.run", "--db", db_url, "--rail", rail,
           "--batch-size", str(batch_size), "--timeout", str(timeout)]
    if bank_dir is not None:
        cmd += ["--bank-dir", str(bank_dir)]
    if api_url:
        cmd += ["--api-url", api_url]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=wait)


def _dispatch_child(argv: list[str], crash_at: str | None) -> None:
    from aios.kernel.db import get_engine
    from connectors.rails import crash
    from connectors.rails.run import main

    if crash_at:
        os.environ["AIOS_CRASH_AT"] = crash_at
    else:
        os.environ.pop("AIOS_CRASH_AT", None)
    crash._passes.clear()
    get_engine.cache_clear()  # a fresh engine: never reuse the parent's pooled connections in the child
    os._exit(main(argv))


def fork_dispatcher(db_url: str, rail: str, *, bank_dir: Path | None = None, api_url: str = "",
                    crash_at: str | None = None, batch_size: int = 2, timeout: float = 1.0,
                    wait: float = 60.0) -> int:
    """One dispatcher as a forked child process (no interpreter start-up: the chaos loop runs many);
    returns its exit code (137 when it killed itself at `crash_at`)."""
    import multiprocessing

    argv = ["--db", db_url, "--rail", rail, "--batch-size", str(batch_size), "--timeout", str(timeout)]
    if bank_dir is not None:
        argv += ["--bank-dir", str(bank_dir)]
    if api_url:
        argv += ["--api-url", api_url]
    proc = multiprocessing.get_context("fork").Process(target=_dispatch_child, args=(argv, crash_at))
    proc.start()
    proc.join(wait)
    if proc.exitcode is None:
        proc.kill()
        proc.join(5)
        raise RuntimeError(f"dispatcher did not finish within {wait}s ({crash_at=})")
    return proc.exitcode
