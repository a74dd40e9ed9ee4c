"""`aios cluster`: Celery workers for the distributed profile, and what the cluster looks like now."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import typer
import yaml
from rich.console import Console
from rich.table import Table

from aios.kernel.settings import PROJECT_ROOT, get_settings
from aios_assets.executors import DEFAULT_QUEUE, HEAVY_QUEUE, celery_config

cluster_app = typer.Typer(help="Celery workers of the distributed profile (AIOS_EXECUTOR=celery, RabbitMQ).",
                          no_args_is_help=True)
console = Console()


def worker_config_path() -> Path:
    """Write the executor's Celery configuration where `dagster-celery worker start -y` reads it."""
    s = get_settings()
    path = s.home / "celery.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"execution": {"config": celery_config(s)}}, sort_keys=True))
    return path


@cluster_app.command("worker")
def worker(name: str = typer.Option("w1", help="Worker name (unique per host)."),
           heavy: bool = typer.Option(False, help=f"Also serve the {HEAVY_QUEUE!r} queue (documents, backtests)."),
           only_heavy: bool = typer.Option(False, help=f"Serve only the {HEAVY_QUEUE!r} queue."),
           concurrency: int = typer.Option(1, help="Steps this worker runs at once.")) -> None:
    """Run one Celery worker (named `name@host`) in the foreground with the executor's settings (late acknowledgement)."""
    queues = [HEAVY_QUEUE] if only_heavy else [DEFAULT_QUEUE] + ([HEAVY_QUEUE] if heavy else [])
    args = [str(Path(sys.executable).with_name("dagster-celery")), "worker", "start", "-A", "dagster_celery.app",
            "-y", str(worker_config_path()), "-n", name, "-l", "INFO",
            # one comma-separated -Q: celery keeps only the last of repeated -Q options, so a worker given
            # `-q dagster -q heavy` silently served `heavy` alone and the default queue's steps waited forever
            "-q", ",".join(queues), "-i", "aios_assets.worker_preload"]
    args += ["--", f"--concurrency={concurrency}", "--without-gossip", "--without-mingle"]
    env = dict(os.environ)  # dagster-celery starts `celery` from PATH: the venv's, even when not activated
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    os.execve(args[0], args, env)


def cluster_commands(workers: int, host: str, port: int, webserver: bool = True) -> dict[str, list[str]]:
    """The processes of a one-machine cluster: Dagster webserver and daemon (schedules, sensors, the run
    queue, run monitoring) and `workers` Celery workers, the first also serving the heavy queue."""
    bin_dir = Path(sys.executable).parent
    workspace = str(PROJECT_ROOT / "workspace.yaml")
    procs = {}
    if webserver:
        procs["webserver"] = [str(bin_dir / "dagster-webserver"), "-w", workspace, "-h", host, "-p", str(port)]
    procs["daemon"] = [str(bin_dir / "dagster-daemon"), "run", "-w", workspace]
    for i in range(1, workers + 1):
        procs[f"w{i}"] = [sys.executable, "-m", "aios", "cluster", "worker", "--name", f"w{i}",
                          *(["--heavy"] if i == 1 else [])]
    return procs


def supervise(commands: dict[str, list[str]], env: dict[str, str], grace: float = 20.0) -> int:
    """Start every command in its own process group; when one exits, or on SIGINT/SIGTERM, stop them all
    (SIGTERM, then SIGKILL after `grace` seconds). Returns 0 after a requested stop, else 1."""
    stop = {"requested": False}

    def _request(signum: int, _frame: object) -> None:
        stop["requested"] = True

    signal.signal(signal.SIGINT, _request)
    signal.signal(signal.SIGTERM, _request)
    running = {name: subprocess.Popen(cmd, env=env, cwd=PROJECT_ROOT, start_new_session=True)
               for name, cmd in commands.items()}
    console.print(f"started {', '.join(f'{n} (pid {p.pid})' for n, p in running.items())}; Ctrl-C stops all")
    exited = None
    while not stop["requested"] and exited is None:
        exited = next((n for n, p in running.items() if p.poll() is not None), None)
        time.sleep(0.5)
    if exited is not None:
        console.print(f"[red]{exited} exited with {running[exited].returncode}[/red]: stopping the cluster")
    for p in running.values():
        _signal_group(p, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for p in running.values():
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(p, signal.SIGKILL)
            p.wait(timeout=10)
    console.print("cluster stopped")
    return 0 if exited is None else 1


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


@cluster_app.command("up")
def up(workers: int = typer.Option(2, help="Celery workers on this machine (the first also serves heavy)."),
       host: str = typer.Option("127.0.0.1", help="Webserver host."),
       port: int = typer.Option(3000, help="Webserver port."),
       webserver: bool = typer.Option(True, help="Start the Dagster webserver (UI).")) -> None:
    """Run the cluster in the foreground: webserver, daemon and workers, stopped together on Ctrl-C/SIGTERM
    (`make cluster` runs `aios db prepare` first)."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("DAGSTER_HOME", str(get_settings().dagster_home))
    raise typer.Exit(supervise(cluster_commands(workers, host, port, webserver), env))


@cluster_app.command("status")
def status(timeout: float = typer.Option(3.0, help="Seconds to wait for the workers' answers.")) -> None:
    """Workers that answer, the queues each serves and the steps each is running; exit 1 when none answers."""
    from aios_assets.executors import answering_workers

    cfg = celery_config(get_settings())
    queues, active = answering_workers(get_settings(), timeout)
    table = Table(title=f"Celery workers on {cfg['broker'].split('@')[-1]}")
    for col in ("worker", "queues", "running steps"):
        table.add_column(col)
    for worker_name in sorted(queues):
        running = [t.get("name", "?") for t in active.get(worker_name, [])]
        table.add_row(worker_name, ", ".join(q["name"] for q in queues[worker_name]), str(len(running)))
    console.print(table)
    if not queues:
        console.print("[red]no worker answered[/red] (start them with `make cluster` or `aios cluster worker`)")
        raise typer.Exit(1)
