"""The layers hold: import-linter's contracts (pyproject.toml, [tool.importlinter]) are all kept."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_a_kernel_import_of_a_store_would_break_the_contracts(tmp_path):
    """The contracts are not vacuous: a kernel module importing a store is reported as broken."""
    import shutil

    for name in ("pyproject.toml", "aios", "models", "connectors", "governance", "service", "sensors",
                 "aios_assets", "aios_resources"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, tmp_path / name)
    (tmp_path / "aios" / "kernel" / "leak.py").write_text("import connectors.stores.decisions\n")
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(lint), "--no-cache"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert proc.returncode != 0
    assert "aios.kernel.leak" in proc.stdout
