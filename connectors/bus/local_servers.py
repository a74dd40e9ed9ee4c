"""Start, find and stop the local servers the bus backends and the landing store talk to.

Plain functions (no pytest, no Dagster) shared by the test fixtures (`tests/servers.py`)
and the benchmark (`bench/bench_ingest.py`):

- the Google Cloud Pub/Sub emulator (Java, ships with the Google Cloud CLI),
- `nats-server` with JetStream (Debian package),
- a throw-away PostgreSQL database on a local trust-auth server.

Every wait is bounded. A server that is already listening is reused and never
stopped; only processes started here are stopped, by their own process group.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

PUBSUB_EMULATOR_BIN = os.environ.get(
    "AIOS_PUBSUB_EMULATOR_BIN",
    "/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator",
)
NATS_SERVER_BIN = os.environ.get("AIOS_NATS_SERVER_BIN", "/usr/sbin/nats-server")
POSTGRES_ADMIN_DSN = os.environ.get("AIOS_TEST_POSTGRES_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")


class ServerUnavailable(RuntimeError):
    """A server is not listening and cannot be started here; the message says why."""


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout_s: float, proc: subprocess.Popen | None = None) -> bool:
    """Poll host:port until it accepts connections, the process dies, or timeout_s passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if port_open(host, port, timeout_s=0.5):
            return True
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(0.2)
    return False


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class LocalServer:
    """A server at host:port; `proc` is set only when this process started it."""

    name: str
    host: str
    port: int
    proc: subprocess.Popen | None = None
    argv: list[str] = field(default_factory=list)
    log_path: Path | None = None
    workdir: Path | None = None
    owns_workdir: bool = False

    @property
    def started_here(self) -> bool:
        """True when this process started the server."""
        return self.proc is not None

    @property
    def address(self) -> str:
        """The server's `host:port`."""
        return f"{self.host}:{self.port}"

    def log_tail(self, n: int = 20) -> str:
        """The last `n` lines of the server's log ("" when there is none)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the server if it was started here (SIGTERM, then SIGKILL); no-op otherwise."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)  # our own process group (start_new_session)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=timeout_s)
        # wait until the port is released so a restart on the same port works
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and port_open(self.host, self.port, timeout_s=0.2):
            time.sleep(0.1)

    def start(self, timeout_s: float = 30.0) -> None:
        """(Re)start a server this process owns, with the same argv (same port and data dir)."""
        if not self.argv:
            raise ServerUnavailable(f"{self.name} at {self.address} was not started here; cannot (re)start it")
        if self.proc is not None and self.proc.poll() is None:
            return
        self.proc = _spawn(self.argv, self.log_path)
        if not wait_for_port(self.host, self.port, timeout_s, self.proc):
            tail = self.log_tail()
            self.stop()
            raise ServerUnavailable(f"{self.name} did not listen on {self.address} within {timeout_s:.0f}s:\n{tail}")

    def restart(self, timeout_s: float = 30.0) -> None:
        """Stop and start again a server this process owns."""
        self.stop()
        self.start(timeout_s)

    def close(self) -> None:
        """Stop (if started here) and remove a temporary data dir created here."""
        self.stop()
        if self.owns_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _spawn(argv: list[str], log_path: Path | None) -> subprocess.Popen:
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    try:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    finally:
        if log_path:
            log.close()


def ensure_pubsub_emulator(host: str = "127.0.0.1", port: int = 8085, timeout_s: float = 60.0) -> LocalServer:
    """The Pub/Sub emulator on host:port: reuse a listening one, else start it (~10 s, needs java)."""
    if port_open(host, port):
        return LocalServer("pubsub-emulator", host, port)
    if not Path(PUBSUB_EMULATOR_BIN).exists():
        raise ServerUnavailable(f"nothing listens on {host}:{port} and {PUBSUB_EMULATOR_BIN} is missing "
                                "(install the Google Cloud CLI pubsub emulator component)")
    if shutil.which("java") is None:
        raise ServerUnavailable(f"nothing listens on {host}:{port} and `java` is not on PATH (the emulator needs it)")
    workdir = Path(tempfile.mkdtemp(prefix="aios-pubsub-emulator-"))
    server = LocalServer("pubsub-emulator", host, port, workdir=workdir, owns_workdir=True,
                         argv=[PUBSUB_EMULATOR_BIN, f"--host={host}", f"--port={port}"],
                         log_path=workdir / "emulator.log")
    server.start(timeout_s)
    return server


def start_nats_server(host: str = "127.0.0.1", port: int | None = None, store_dir: Path | str | None = None,
                      timeout_s: float = 20.0) -> LocalServer:
    """Start our own nats-server with JetStream (file storage in store_dir) on a free or given port."""
    if not Path(NATS_SERVER_BIN).exists():
        raise ServerUnavailable(f"{NATS_SERVER_BIN} is missing (apt-get install nats-server)")
    port = port or free_port(host)
    owns = store_dir is None
    workdir = Path(store_dir) if store_dir else Path(tempfile.mkdtemp(prefix="aios-nats-"))
    workdir.mkdir(parents=True, exist_ok=True)
    server = LocalServer("nats-server", host, port, workdir=workdir, owns_workdir=owns,
                         argv=[NATS_SERVER_BIN, "-a", host, "-p", str(port), "-js", "-sd", str(workdir / "js")],
                         log_path=workdir / "nats.log")
    server.start(timeout_s)
    return server


def ensure_nats_server(host: str = "127.0.0.1", port: int = 4222, timeout_s: float = 20.0) -> LocalServer:
    """NATS on host:port: reuse a listening one, else start nats-server with JetStream on that port."""
    if port_open(host, port):
        return LocalServer("nats-server", host, port)
    return start_nats_server(host, port, None, timeout_s)


def check_jetstream(url: str, timeout_s: float = 5.0) -> None:
    """Raise ServerUnavailable unless the NATS server at url answers with JetStream enabled."""
    import asyncio

    import nats

    async def _probe() -> None:
        nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False)
        try:
            await nc.jetstream().account_info()
        finally:
            await nc.close()

    try:
        asyncio.run(asyncio.wait_for(_probe(), timeout_s))
    except Exception as exc:  # noqa: BLE001 - any failure means "not usable"
        raise ServerUnavailable(f"NATS at {url} has no usable JetStream: {type(exc).__name__}: {exc}") from exc


def create_postgres_database(admin_dsn: str = POSTGRES_ADMIN_DSN, prefix: str = "aios_test_") -> tuple[str, str]:
    """Create a fresh database; return (dbname, SQLAlchemy postgresql+psycopg2 URL)."""
    try:
        import psycopg2
    except ImportError as exc:  # pragma: no cover
        raise ServerUnavailable("psycopg2 is not installed") from exc
    name = f"{prefix}{uuid.uuid4().hex[:12]}"
    try:
        conn = psycopg2.connect(admin_dsn, connect_timeout=3)
    except Exception as exc:  # noqa: BLE001
        raise ServerUnavailable(f"PostgreSQL not reachable with '{admin_dsn}': {exc}".strip()) from exc
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        params = conn.get_dsn_parameters()
    finally:
        conn.close()
    user = params.get("user", "postgres")
    host = params.get("host", "127.0.0.1")
    port = params.get("port", "5432")
    return name, f"postgresql+psycopg2://{user}@{host}:{port}/{name}"


def drop_postgres_database(name: str, admin_dsn: str = POSTGRES_ADMIN_DSN) -> None:
    """Drop a database created by create_postgres_database (forcing other sessions out)."""
    import psycopg2

    conn = psycopg2.connect(admin_dsn, connect_timeout=3)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        conn.close()
