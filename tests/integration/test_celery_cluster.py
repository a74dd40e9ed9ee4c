"""The same claims job on Dagster's Celery executor over the real RabbitMQ, with PostgreSQL for the Dagster
instance and the stores, Celery workers started with `aios cluster worker`, and runs launched the way the
CLI launches them (`python -m aios_assets.launch partition DAY`, which on `AIOS_EXECUTOR=celery` goes
through `dg.execute_job`: the launching process orchestrates, the workers run the steps).

Failures survived: a worker killed with `kill -9` in the middle of a step (late acknowledgement: RabbitMQ
redelivers the step to the other worker; the run completes), a launching process killed mid-run (run
monitoring fails the run instead of leaving it STARTED; a re-execution from failure completes it), and
RabbitMQ restarted mid-run. Every auto-approved claim is paid exactly once, checked in the stores AND in the
bank's own ledger (mock-bank reading the pain.001 files, tests/paymentkit.py).

One trained deployment per module (PostgreSQL stores, Dagster instance and MLflow, a stand-in bank);
each test has its own RabbitMQ virtual host, its own day and its own workers.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

pytestmark = [pytest.mark.server, pytest.mark.slow]

from tests.servers import server_unavailable  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PER_DAY = 150


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=120)


@dataclass
class Deployment:
    env: dict[str, str]
    bank: object
    root: Path

    def env_for(self, vhost: str, **extra: str) -> dict[str, str]:
        """The deployment's environment on the Celery executor over `vhost`."""
        return {**self.env, "AIOS_EXECUTOR": "celery",
                "AIOS_CELERY_BROKER": f"pyamqp://guest:guest@127.0.0.1:5672/{vhost}", **extra}


def _aios(env: dict, *args: str, timeout: int = 600) -> str:
    proc = subprocess.run([sys.executable, "-m", "aios", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)
    assert proc.returncode == 0, f"aios {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """A production-profile deployment, trained once: stores, Dagster and MLflow in PostgreSQL, the bank's
    SFTP folders read by mock-bank."""
    from connectors.bus.local_servers import ServerUnavailable, drop_postgres_database
    from tests.paymentkit import Bank

    try:
        import psycopg2

        psycopg2.connect("dbname=postgres user=postgres host=127.0.0.1 port=5432", connect_timeout=3).close()
        _rabbitmqctl("status")
    except Exception as exc:  # noqa: BLE001
        server_unavailable(f"PostgreSQL on 127.0.0.1:5432 and RabbitMQ (rabbitmqctl): {exc}")
    root = tmp_path_factory.mktemp("cluster")
    base = f"aios_cel_{uuid.uuid4().hex[:8]}"
    names = {"stores": base, "dagster": base + "_dagster", "mlflow": base + "_mlflow"}
    urls = {k: f"postgresql+psycopg2://postgres@127.0.0.1:5432/{v}" for k, v in names.items()}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIOS_", "DAGSTER_HOME"))}
    env.update(AIOS_PROFILE="production", AIOS_HOME=str(root / "home"), DAGSTER_HOME=str(root / "dagster"),
               AIOS_DATABASE_URL=urls["stores"], AIOS_DAGSTER_DATABASE_URL=urls["dagster"],
               AIOS_MLFLOW_TRACKING_URI=urls["mlflow"].replace("+psycopg2", ""),
               AIOS_PAYOUT_BANK_DIR=str(root / "bank"), DAGSTER_DISABLE_TELEMETRY="1",
               OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    bank = None
    try:
        _aios(env, "db", "prepare")
        _aios(env, "generate", "--days", "60", "--per-day", "200")
        _aios(env, "train")  # in process: the executor is the default one here
        bank = Bank(root / "bank")
        yield Deployment(env, bank, root)
    finally:
        if bank is not None:
            bank.stop()
        for name in names.values():
            try:
                drop_postgres_database(name)
            except ServerUnavailable:
                pass


@pytest.fixture
def vhost(deployment):
    name = f"aios-test-{uuid.uuid4().hex[:8]}"
    _rabbitmqctl("add_vhost", name)
    _rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    yield name
    subprocess.run(["rabbitmqctl", "delete_vhost", name], capture_output=True, timeout=120)


@pytest.fixture
def dagster_home(deployment):
    """This process sees the deployment's Dagster instance (for reading run records)."""
    import dagster as dg

    saved = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = deployment.env["DAGSTER_HOME"]
    try:
        with dg.DagsterInstance.get() as instance:
            yield instance
    finally:
        if saved is None:
            os.environ.pop("DAGSTER_HOME", None)
        else:
            os.environ["DAGSTER_HOME"] = saved


class Workers:
    """`aios cluster worker` processes (each in its own session, so the whole worker can be killed)."""

    def __init__(self, env: dict, names: list[str]) -> None:
        self.env, self.procs = env, {}
        for name in names:
            log = open(Path(env["AIOS_HOME"]) / f"worker-{name}-{uuid.uuid4().hex[:4]}.log", "w")
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "aios", "cluster", "worker", "--name", name, "--heavy"],
                env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        for p in self.procs.values():
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in self.procs.values():
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=10)


@pytest.fixture
def workers():
    started: list[Workers] = []

    def _start(env: dict, *names: str) -> Workers:
        started.append(Workers(env, list(names)))
        return started[-1]

    yield _start
    for w in started:
        w.stop()


def _drop_day(env: dict, day: str) -> None:
    """A day's batch dropped and landed (as the inbox sensor would land it), written from this process."""
    from aios.kernel.settings import Settings
    from aios.usecases.datasets import drop_batch

    s = Settings(home=Path(env["AIOS_HOME"]), profile="production", database_url=env["AIOS_DATABASE_URL"])
    path = drop_batch(s, day, per_day=PER_DAY)
    (s.landing_dir / day).mkdir(parents=True)
    path.rename(s.landing_dir / day / path.name)


def _launch(env: dict, day: str) -> subprocess.Popen:
    """`python -m aios_assets.launch partition DAY`: the launcher the CLI uses, orchestrating from a child."""
    return subprocess.Popen([sys.executable, "-m", "aios_assets.launch", "partition", day], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _run_of(instance, day: str):
    import dagster as dg

    runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/partition": day}, job_name="claims_job"))
    return runs[0] if runs else None


def _step_starts(instance, run_id: str, step: str | None = None) -> list:
    import dagster as dg

    events = [r.event_log_entry.dagster_event for r in
              instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_START, limit=1000).records]
    return [e for e in events if step is None or e.step_key == step]


def _wait_for(what: str, probe, proc: subprocess.Popen | None, timeout: float = 300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.2)
    if proc is not None and proc.poll() is None:
        proc.kill()
    out, err = proc.communicate() if proc is not None else ("", "")
    pytest.fail(f"{what} did not happen within {timeout}s:\n{out[-2000:]}\n{err[-6000:]}")


def _worker_tree(pid: int) -> list[int]:
    """The step's process and its ancestors that are part of the Celery worker (the whole worker)."""
    chain, me = [], os.getpid()
    while pid and pid not in (1, me):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        if "celery" not in cmdline:
            break
        chain.append(pid)
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return chain


def _assert_paid_once(deployment: Deployment, day: str) -> None:
    """Every auto-approved claim of `day` paid once: in the stores, and in the bank's own ledger."""
    from tests.paymentkit import run_dispatcher

    env = deployment.env
    for _ in range(2):  # anything still waiting is sent; the bank answers (pain.002); the answers are collected
        done = run_dispatcher(env["AIOS_DATABASE_URL"], "iso20022", bank_dir=Path(env["AIOS_PAYOUT_BANK_DIR"]))
        assert done.returncode == 0, done.stderr[-2000:]
        deployment.bank.scan()
    stores = sa.create_engine(env["AIOS_DATABASE_URL"])
    with stores.connect() as conn:
        auto = set(conn.exec_driver_sql(f"select claim_id from decisions where partition='{day}' "
                                        "and route='auto_approve'").scalars())
        paid = conn.exec_driver_sql(f"select count(*), count(distinct claim_id) from payouts "
                                    f"where partition='{day}'").one()
    stores.dispose()
    assert auto and paid[0] == paid[1] == len(auto)
    ledger = deployment.bank.accepted_keys()
    keys = {f"payout:{c}" for c in auto}
    assert {k: n for k, n in ledger.items() if k in keys and n != 1} == {}, "paid twice at the bank"
    assert keys - set(ledger) == set(), "auto-approved but never reached the bank"


def test_a_worker_killed_mid_step_loses_nothing_and_pays_once(deployment, vhost, workers, dagster_home):
    import dagster as dg

    day, instance = "2026-11-20", dagster_home
    env = deployment.env_for(vhost)
    _drop_day(env, day)
    workers(env, "w1", "w2")
    run = _launch(env, day)
    start = _wait_for("the validate step starting", lambda: (r := _run_of(instance, day)) and
                      _step_starts(instance, r.run_id, "validate"), run)[0]
    victims = _worker_tree(start.pid)
    assert victims, f"no Celery worker process found for pid {start.pid}"
    for p in victims:
        os.kill(p, signal.SIGKILL)
    out, err = run.communicate(timeout=600)
    assert run.returncode == 0, f"run failed:\n{out[-2000:]}\n{err[-4000:]}"
    run_id = _run_of(instance, day).run_id
    assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.SUCCESS
    again = _step_starts(instance, run_id, "validate")
    assert len(again) >= 2 and again[-1].pid not in victims, "the killed step was not run again elsewhere"
    _assert_paid_once(deployment, day)


class _MonitoringContext:
    """What the daemon's run-monitoring pass needs of its workspace process context: the instance (the
    workspace is only used to resume runs, which the default run launcher does not support)."""

    def __init__(self, instance) -> None:
        self.instance = instance

    def create_request_context(self):
        return None


def test_a_run_whose_launcher_died_is_failed_by_run_monitoring_and_completed_by_reexecution(
        deployment, vhost, workers, dagster_home):
    import dagster as dg

    day, instance = "2026-11-21", dagster_home
    env = deployment.env_for(vhost, AIOS_MAX_RUN_SECONDS="20")
    _drop_day(env, day)
    workers(env, "w1")
    run = _launch(env, day)
    _wait_for("a step starting", lambda: (r := _run_of(instance, day)) and _step_starts(instance, r.run_id), run)
    run.kill()  # the orchestrating process dies: nobody will ever mark the run finished
    run.communicate()
    run_id = _run_of(instance, day).run_id
    assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.STARTED
    record = instance.get_run_record_by_id(run_id)
    time.sleep(max(0.0, record.start_time + 21 - time.time()))
    _monitor(instance)
    assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE

    # the failed run is completed from where it stopped, on the cluster, by the launcher the CLI uses
    again = subprocess.run([sys.executable, "-m", "aios_assets.launch", "reexecute", run_id], env=env, cwd=ROOT,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-4000:]
    retry = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/parent_run_id": run_id}))
    assert [r.status for r in retry] == [dg.DagsterRunStatus.SUCCESS]
    _assert_paid_once(deployment, day)


def _monitor(instance) -> None:
    """One pass of the daemon's run monitoring (what `dagster-daemon run` does every poll interval)."""
    from dagster._daemon.monitoring.run_monitoring import execute_run_monitoring_iteration

    list(execute_run_monitoring_iteration(_MonitoringContext(instance), logging.getLogger("run-monitoring")))


def _reexecute(env: dict, run_id: str) -> None:
    """`python -m aios_assets.launch reexecute RUN_ID`: the failed run re-executed from its failure."""
    again = subprocess.run([sys.executable, "-m", "aios_assets.launch", "reexecute", run_id], env=env, cwd=ROOT,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-4000:]


def test_rabbitmq_restarted_mid_run_ends_the_run_cleanly_and_a_reexecution_completes_it(
        deployment, vhost, workers, dagster_home):
    """The broker goes away while steps are in flight (`rabbitmqctl stop_app`, a few seconds, `start_app`).
    The run either completes (workers reconnect, late-acked steps are redelivered) or ends FAILED, by its own
    engine error or, if the launcher is left waiting for a result that died with the broker, by run
    monitoring's max runtime; never STARTED forever. A re-execution from failure completes it; paid once."""
    import dagster as dg

    day, instance, bound = "2026-11-22", dagster_home, 90
    env = deployment.env_for(vhost, AIOS_MAX_RUN_SECONDS=str(bound))
    _drop_day(env, day)
    workers(env, "w1", "w2")
    run = _launch(env, day)
    _wait_for("the validate step starting", lambda: (r := _run_of(instance, day)) and
              _step_starts(instance, r.run_id, "validate"), run)
    _rabbitmqctl("stop_app")
    try:
        time.sleep(3)
    finally:
        _rabbitmqctl("start_app")
    run_id = _run_of(instance, day).run_id
    try:
        run.communicate(timeout=bound + 30)
        ended_by = "itself"
    except subprocess.TimeoutExpired:
        run.kill()
        run.communicate()
        ended_by = "run monitoring"
        record = instance.get_run_record_by_id(run_id)
        time.sleep(max(0.0, record.start_time + bound + 1 - time.time()))
        _monitor(instance)
    status = instance.get_run_by_id(run_id).status
    failures = [r.event_log_entry.dagster_event.message or "" for r in instance.get_records_for_run(
        run_id, of_type={dg.DagsterEventType.RUN_FAILURE, dg.DagsterEventType.STEP_FAILURE}).records]
    print(f"run after the broker restart: {status.value} (ended by {ended_by}): {' | '.join(failures)[:1500]}")
    assert status in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE)
    if status == dg.DagsterRunStatus.FAILURE:
        _reexecute(env, run_id)
        retry = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/parent_run_id": run_id}))
        assert [r.status for r in retry] == [dg.DagsterRunStatus.SUCCESS]
    _assert_paid_once(deployment, day)


def _children(pid: int) -> set[int]:
    try:
        return {int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}
    except OSError:
        return set()


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_the_cluster_supervisor_starts_daemon_and_workers_and_stops_them_all_on_sigterm(deployment, vhost):
    """`aios cluster up` (what `make cluster` runs, here without the webserver): the worker answers
    `aios cluster status`; SIGTERM stops the daemon and every worker process, nothing is left running."""
    env = deployment.env_for(vhost)
    up = subprocess.Popen([sys.executable, "-m", "aios", "cluster", "up", "--workers", "1", "--no-webserver"],
                          env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, status = time.monotonic() + 180, ""
        while time.monotonic() < deadline and up.poll() is None and "w1@" not in status:
            status = subprocess.run([sys.executable, "-m", "aios", "cluster", "status", "--timeout", "2"], env=env,
                                    cwd=ROOT, capture_output=True, text=True).stdout
        assert "w1@" in status and "dagster, heavy" in status, status
        started = _children(up.pid)
        tree = set(started)
        for pid in started:
            tree |= _children(pid)
        assert len(started) == 2, f"expected the daemon and one worker, got {started}"
        up.send_signal(signal.SIGTERM)
        out, _ = up.communicate(timeout=90)
        assert up.returncode == 0, out[-3000:]
        assert "cluster stopped" in out
        assert [p for p in tree if _alive(p)] == [], "processes left running after the cluster stopped"
    finally:
        if up.poll() is None:
            up.kill()
            up.communicate()
