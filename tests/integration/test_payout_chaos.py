"""Nothing lost, nothing paid twice: the dispatcher killed at every step, the provider failing, then re-run.

Real processes: the dispatcher is a child process (forked, to skip interpreter start-up in the
loop) that kills itself (`os._exit`, like `kill -9`) at the point `AIOS_CRASH_AT` names, or a
`python -m connectors.rails.run` process SIGKILLed from outside while a request hangs; the clean
re-runs are `python -m connectors.rails.run` processes; the bank is
mock-bank in its own process reading the outbound folder; the payment provider is a FastAPI app
under uvicorn with its own SQLite ledger. After each crash the dispatcher runs again, and the
rails' own ledgers (the bank's payments, the provider's payments) must hold every approved claim
exactly once.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa

from connectors.rails.outbox import ACKNOWLEDGED, payout_intents

try:
    from tests.paymentkit import ROOT, Bank, Provider, approve, fork_dispatcher, run_dispatcher
    from tests.reviewkit import make_env
except ImportError:  # pytest's rootdir-relative imports
    from paymentkit import ROOT, Bank, Provider, approve, fork_dispatcher, run_dispatcher
    from reviewkit import make_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

# Kill points of a file-rail dispatch (see connectors/rails/dispatch.py, iso20022.py). `:n` = n-th pass.
FILE_POINTS = [
    "between_batch_claims", "between_batch_claims:2", "after_claim_before_send",
    "before_send", "before_send:2", "before_send:3",
    "file_half_written", "file_half_written:2",
    "after_send_before_receipt", "after_send_before_receipt:2",
    "after_batch_recorded", "after_batch_recorded:2",
]
# Kill points reached while collecting the bank's pain.002 reports (the batch was sent by a clean run).
COLLECT_POINTS = ["after_collect_before_record", "between_outcome_records", "after_record_before_archive"]
HTTP_POINTS = [
    "between_batch_claims", "after_claim_before_send", "before_send", "http_between_orders",
    "http_between_orders:2", "http_between_orders:3", "after_send_before_receipt", "between_outcome_records",
    "after_batch_recorded",
]


def _statuses(engine, keys):
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(payout_intents.c.idempotency_key, payout_intents.c.status)
                                 .where(payout_intents.c.idempotency_key.in_(keys))).all())


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from connectors.rails.iso20022 import pain001_schema

    pain001_schema()  # compiled once here; the forked dispatchers inherit it
    root = tmp_path_factory.mktemp("chaos")
    env = make_env(root / "home")
    bank = Bank(root / "bank")
    provider = Provider(root)
    yield env, bank, provider, root
    bank.stop()
    provider.stop()


def _claims(tag: str, n: int = 5) -> dict[str, float]:
    return {f"{tag}-{i}": 100.0 + 7 * i + 0.01 * i for i in range(n)}


def _assert_each_paid_once(paid, approved):
    assert {k for k, c in paid.items() if c > 1} == set(), "paid twice"
    assert set(approved) - set(paid) == set(), "approved but never paid"


def test_file_rail_dispatcher_killed_at_every_step_pays_each_approval_once(world):
    """Each run is killed at its point, and is the re-run of the run killed before it (crashes during recovery)."""
    env, bank, _, root = world
    url, bank_dir = env.settings.db_url, root / "bank"
    approved: list[str] = []
    crashed = []
    for n, point in enumerate(FILE_POINTS + COLLECT_POINTS):
        approved += approve(env, f"2026-03-{n + 1:02d}", _claims(f"F{n}"), currency="USD" if n % 4 == 3 else "EUR")
        crashed.append((point, fork_dispatcher(url, "iso20022", bank_dir=bank_dir, crash_at=point)))
        bank.scan()  # the bank answers what reached it, so the next run has reports to collect
    for _ in range(2):  # the clean re-run, then one more to collect the bank's answers to it
        again = run_dispatcher(url, "iso20022", bank_dir=bank_dir)
        assert again.returncode == 0, again.stderr[-2000:]
        bank.scan()
    assert [p for p, rc in crashed if rc != 137] == [], f"kill points never reached: {crashed}"
    paid = bank.accepted_keys()
    _assert_each_paid_once(paid, approved)
    assert set(paid) - set(approved) == set(), "paid without approval"
    assert set(_statuses(env.engine, approved).values()) == {ACKNOWLEDGED}
    # nothing half-written is left behind in the bank's folder, and every file the bank read is XSD-valid
    assert list((bank_dir / "outbound").glob(".*.tmp")) == []
    from connectors.rails.iso20022 import pain001_schema

    read = sorted((bank_dir / "outbound").glob("*/pain.001.001.09-*.xml"))
    assert len(read) >= len(FILE_POINTS) and all(pain001_schema().is_valid(str(f)) for f in read)


def test_http_rail_dispatcher_killed_at_every_step_pays_each_approval_once(world):
    env, _, provider, _ = world
    url = env.settings.db_url
    approved, crashed = [], []
    for n, point in enumerate(HTTP_POINTS):
        approved += approve(env, f"2026-05-{n + 1:02d}", _claims(f"H{n}"))
        crashed.append((point, fork_dispatcher(url, "http", api_url=provider.url, crash_at=point)))
    again = run_dispatcher(url, "http", api_url=provider.url)
    assert again.returncode == 0, again.stderr[-2000:]
    assert [p for p, rc in crashed if rc != 137] == [], f"kill points never reached: {crashed}"
    _assert_each_paid_once(provider.paid_keys(), approved)
    assert set(_statuses(env.engine, approved).values()) == {ACKNOWLEDGED}


@pytest.mark.parametrize("mode", ["error_before", "error_after", "slow_after", "drop_after"])
def test_provider_failures_are_retried_with_the_same_key_and_pay_once(world, mode):
    from connectors.rails.dispatch import dispatch
    from connectors.rails.http_api import HttpPaymentRail

    env, _, provider, _ = world
    keys = approve(env, "2026-06-01", _claims(f"P-{mode}", 3))
    # more faults than one run's retries (4 attempts per payment): the first run leaves some
    # payments unanswered (paid or not), the re-run finishes them under the same keys
    provider.fault(mode, count=6, delay_s=1.0)
    rail = HttpPaymentRail(provider.url, timeout_s=0.4, attempts=4, backoff_s=0.02)
    first = dispatch(env.engine, rail, ("data_quality", "drift"), partition="2026-06-01")
    assert len(first.acknowledged) == 2 and "1 payment(s) unanswered" in " ".join(first.unavailable)
    assert sorted(_statuses(env.engine, keys).values()) == [ACKNOWLEDGED, ACKNOWLEDGED, "sending"]  # not lost
    provider.fault(None)
    dispatch(env.engine, rail, ("data_quality", "drift"), partition="2026-06-01")
    paid = provider.paid_keys()
    assert all(paid[k] == 1 for k in keys), {k: paid[k] for k in keys}
    assert set(_statuses(env.engine, keys).values()) == {ACKNOWLEDGED}


def test_dispatcher_sigkilled_while_the_provider_hangs_pays_once_on_rerun(world):
    env, _, provider, root = world
    url = env.settings.db_url
    keys = approve(env, "2026-06-02", _claims("K", 3))
    provider.fault("slow_after", count=1, delay_s=5.0)
    proc = subprocess.Popen([sys.executable, "-m", "connectors.rails.run", "--db", url, "--rail", "http",
                             "--api-url", provider.url, "--timeout", "10"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not provider.paid_keys().keys() & set(keys):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # the provider has paid, the dispatcher never hears it
    assert proc.wait(10) == -signal.SIGKILL
    provider.fault(None)
    assert run_dispatcher(url, "http", api_url=provider.url).returncode == 0
    paid = provider.paid_keys()
    assert all(paid[k] == 1 for k in keys)
    assert set(_statuses(env.engine, keys).values()) == {ACKNOWLEDGED}


class PrivatePostgres:
    """A PostgreSQL cluster of this test's own (initdb in a temp folder, a free port), which the test may crash
    and restart without touching the machine's shared server."""

    def __init__(self, root) -> None:
        import glob
        import shutil

        from tests.paymentkit import free_port

        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not bins or shutil.which("runuser") is None:
            pytest.skip("no PostgreSQL server binaries (pg_ctl) or runuser on this machine")
        self.pg_ctl = bins[-1]
        self.data = root / "pgdata"
        self.data.mkdir(parents=True)
        shutil.chown(self.data, "postgres", "postgres")
        self.port = free_port()
        self._as_postgres([self.pg_ctl.replace("pg_ctl", "initdb"), "-D", str(self.data), "-A", "trust",
                           "-U", "postgres", "--no-sync"])
        self.start()
        self.url = f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, cmd: list[str]) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *cmd], check=True, capture_output=True, timeout=120,
                       cwd="/tmp")

    def start(self) -> None:
        self._as_postgres([self.pg_ctl, "-D", str(self.data), "-w", "-t", "60", "-l", str(self.data / "log"),
                                   "-o", f"-p {self.port} -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off", "start"])

    def crash(self) -> None:
        """Stop the server the way a crash does (immediate: no checkpoint, connections cut)."""
        self._as_postgres([self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop"])


@pytest.fixture
def private_postgres():
    import shutil
    import tempfile
    from pathlib import Path

    root = Path(tempfile.mkdtemp(prefix="aios-pg-"))  # pytest's tmp_path is closed to the postgres user
    root.chmod(0o755)
    try:
        pg = PrivatePostgres(root)
        yield pg
        try:
            pg.crash()
        except subprocess.SubprocessError:
            pass
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("downtime_s", [0.5, 8.0], ids=["quick-restart", "long-outage"])
def test_database_crashed_mid_dispatch_pays_each_approval_once(private_postgres, world, tmp_path, downtime_s):
    """The outbox's PostgreSQL crashes while the provider holds a payment it already made. After a quick restart
    the dispatcher reconnects and finishes; during a long outage it dies on its next write. Either way, a re-run
    after the restart sends the same keys again and the provider's ledger holds each approval exactly once."""
    import threading

    _, _, provider, _ = world
    pg = private_postgres
    env = make_env(tmp_path / "home", database_url=pg.url)
    approved = approve(env, "2026-07-01", _claims("PG", 4))
    env.engine.dispose()
    provider.fault("slow_after", count=1, delay_s=4.0)  # pays the first order, answers 4 s later
    out: dict = {}
    worker = threading.Thread(target=lambda: out.update(r=run_dispatcher(pg.url, "http", api_url=provider.url,
                                                                          timeout=10.0, wait=90.0)))
    worker.start()
    deadline = time.monotonic() + 60
    while not provider.paid_keys() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert provider.paid_keys(), "the provider never received the first order"
    assert worker.is_alive(), "the dispatch had already finished: the crash would not be mid-dispatch"
    pg.crash()
    time.sleep(downtime_s)
    pg.start()
    worker.join(120)
    first = out["r"]
    again = run_dispatcher(pg.url, "http", api_url=provider.url)
    assert again.returncode == 0, again.stderr[-2000:]
    paid = provider.paid_keys()
    _assert_each_paid_once({k: c for k, c in paid.items() if k in approved}, approved)
    engine = sa.create_engine(pg.url)
    try:
        assert set(_statuses(engine, approved).values()) == {ACKNOWLEDGED}
    finally:
        engine.dispose()
    if downtime_s > 4.0:  # still down when the provider answered: the dispatcher could not record it
        assert first.returncode != 0, first.stdout[-1000:]
