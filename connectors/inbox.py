"""The file-drop inbox: claims files (CSV or JSON lines) whose names carry their day."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

SUFFIXES = (".csv", ".jsonl")
_DATE = re.compile(r"(\d{4}-\d{2}-\d{2})")


@dataclass(frozen=True)
class InboxFile:
    """A file waiting in the inbox, identified by name, size and modification time."""

    path: Path
    partition: str | None

    @property
    def fingerprint(self) -> str:
        """`name:size:mtime_ns`, what identifies the file in the sensor cursor."""
        st = self.path.stat()
        return f"{self.path.name}:{st.st_size}:{st.st_mtime_ns}"


def partition_of(name: str) -> str | None:
    """The day a file belongs to, from the first YYYY-MM-DD in its name; None when it has none or it is no date."""
    m = _DATE.search(name)
    if not m:
        return None
    try:
        pd.Timestamp(m.group(1))
    except ValueError:
        return None
    return m.group(1)


def list_inbox(inbox: Path) -> list[InboxFile]:
    """Files in the inbox, oldest first; partial uploads (dot-files, *.tmp) are left alone."""
    if not inbox.exists():
        return []
    files = [p for p in inbox.iterdir() if p.is_file() and not p.name.startswith(".") and not p.name.endswith(".tmp")]
    files.sort(key=lambda p: (p.stat().st_mtime_ns, p.name))
    return [InboxFile(p, partition_of(p.name)) for p in files]


def land_file(f: InboxFile, landing: Path) -> Path:
    """Move an inbox file to landing/<partition>/ (copy, fsync, then remove): it is never lost mid-move."""
    dest_dir = landing / str(f.partition)
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / f.path.name
    tmp = dest.with_suffix(dest.suffix + ".tmp")
    shutil.copyfile(f.path, tmp)
    with open(tmp, "rb") as fh:
        import os
        os.fsync(fh.fileno())
    tmp.replace(dest)
    f.path.unlink()
    return dest


def reject_file(f: InboxFile, rejected: Path, reason: str) -> Path:
    """Move a file the platform cannot take to the rejected folder, with a `.reason` file beside it."""
    rejected.mkdir(parents=True, exist_ok=True)
    dest = rejected / f.path.name
    shutil.move(str(f.path), dest)
    (rejected / (f.path.name + ".reason")).write_text(reason + "\n")
    return dest


def read_claims_file(path: Path) -> pd.DataFrame:
    """Raw rows of a claims file, values as written (strings for CSV), plus `_source` = file name.

    A JSON-lines row that is not a JSON object is kept as a row whose `_parse_error` says why.
    """
    if path.suffix == ".csv":
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    elif path.suffix == ".jsonl":
        rows = []
        for n, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                rows.append(obj if isinstance(obj, dict) else {"_parse_error": f"line {n}: not a JSON object"})
            except json.JSONDecodeError as exc:
                rows.append({"_parse_error": f"line {n}: not JSON: {exc.msg}", "_line": line})
        frame = pd.DataFrame(rows)
    else:
        raise ValueError(f"{path.name}: unsupported file type (expected {', '.join(SUFFIXES)})")
    frame["_source"] = path.name
    return frame
