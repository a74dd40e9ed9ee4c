"""The file-drop inbox: claims files (CSV or JSON lines) whose names carry their day."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

SUFFIXES = (".csv", ".jsonl", ".json")
MAX_FILE_BYTES = 256 * 1024 * 1024
_MAX_LINE = 1024 * 1024  # longest row accepted; a longer one is quarantined with its line number
_RAW_KEEP = 2000  # characters of an unreadable line kept with its quarantine record
_BOMS = ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe\x00\x00", "utf-32-le"), (b"\x00\x00\xfe\xff", "utf-32-be"),
         (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be"))
_CONTROL_BYTES = bytes(c for c in range(32) if c not in (9, 10, 13))
# Fields read as numbers: in a `;`-separated file their decimal commas are read as decimal points.
NUMERIC_FIELDS = frozenset({"amount", "customer_tenure_days", "prior_claims"})
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
        os.fsync(fh.fileno())
    tmp.replace(dest)
    f.path.unlink()
    return dest


def reject_file(f: InboxFile | Path, rejected: Path, reason: str) -> Path:
    """Move a file the platform cannot take to the rejected folder, with a `.reason` file beside it.

    A name already in the rejected folder gets a numbered suffix: an earlier rejected file is never
    overwritten.
    """
    path = f.path if isinstance(f, InboxFile) else Path(f)
    rejected.mkdir(parents=True, exist_ok=True)
    dest, n = rejected / path.name, 1
    while dest.exists():
        dest, n = rejected / f"{path.stem}.{n}{path.suffix}", n + 1
    shutil.move(str(path), dest)
    (rejected / (dest.name + ".reason")).write_text(reason + "\n")
    return dest


def triage_inbox_file(f: InboxFile) -> str | None:
    """Why an inbox file cannot be landed (unsupported type, no day in its name, unreadable), or None."""
    if f.path.suffix not in SUFFIXES:
        return f"unsupported file type {f.path.suffix!r}; expected one of {', '.join(SUFFIXES)}"
    if f.partition is None:
        return "file name carries no valid YYYY-MM-DD day"
    try:
        read_claims_file(f.path)
    except UnreadableFile as exc:
        return exc.reason
    return None


def read_landed_day(folder: Path, rejected: Path) -> tuple[list[pd.DataFrame], list[str], dict[str, str]]:
    """The claim rows of every landed file of a day: (frames, files read, files rejected → reason).

    A landed file that cannot be read at all is moved to the rejected folder with its reason, so it
    never poisons a re-run of its day; the other files are read as usual.
    """
    frames, read, refused = [], [], {}
    files = sorted(p for p in folder.glob("*") if p.suffix in SUFFIXES) if folder.exists() else []
    for path in files:
        try:
            frames.append(read_claims_file(path))
            read.append(path.name)
        except UnreadableFile as exc:
            reject_file(path, rejected, exc.reason)
            refused[path.name] = exc.reason
    return frames, read, refused


class UnreadableFile(ValueError):
    """A claims file that cannot be read at all; `reason` says why in words a producer understands."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.reason = reason


def _decode(data: bytes, name: str) -> str:
    """The file's text: UTF-8 (with or without BOM) or UTF-16/32 with a BOM; anything else is refused."""
    if not data.strip(b" \t\r\n\x00"):
        raise UnreadableFile(name, "the file is empty")
    if len(data) > MAX_FILE_BYTES:
        raise UnreadableFile(name, f"the file is {len(data):,} bytes; at most {MAX_FILE_BYTES:,} are accepted")
    for bom, codec in _BOMS:
        if data.startswith(bom):
            try:
                text = data[len(bom):].decode(codec)
            except UnicodeDecodeError as exc:
                raise UnreadableFile(name, f"starts with a {codec} byte-order mark but is not valid {codec} "
                                           f"(offset {exc.start})") from None
            break
    else:
        head = data[:65536]
        if head.count(b"\x00") > len(head) // 10:
            raise UnreadableFile(name, "binary content, or UTF-16/32 text without a byte-order mark (many NUL "
                                       "bytes): send claims files as UTF-8")
        controls = sum(head.count(bytes([c])) for c in _CONTROL_BYTES)
        if controls > max(8, len(head) // 100):
            raise UnreadableFile(name, f"binary content ({controls} control bytes in the first {len(head):,}): "
                                       "not a text claims file")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UnreadableFile(name, f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                                       "send claims files as UTF-8") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _error_row(line: int, reason: str, raw: str = "") -> dict[str, Any]:
    return {"_parse_error": f"line {line}: {reason}", "_line": raw[:_RAW_KEEP]}


_EU_NUMBER = re.compile(r"^-?\d{1,3}(\.\d{3})+(,\d+)?$|^-?\d+,\d+$")


def _eu_number(value: str) -> str:
    """`1.234,50` → `1234.50` (a `;`-separated file's decimal commas); anything else unchanged."""
    v = value.strip()
    return v.replace(".", "").replace(",", ".") if _EU_NUMBER.match(v) else value


def _record_lines(lines: list[str], start: int, rows: list[dict[str, Any]]) -> Iterator[tuple[int, str]]:
    """(line number, line) of each non-blank line from `start` on; an over-long line becomes an error row."""
    for n, line in enumerate(lines[start:], start=start + 1):
        if not line.strip():
            continue
        if len(line) > _MAX_LINE:
            rows.append(_error_row(n, f"line is {len(line):,} characters; at most {_MAX_LINE:,} are accepted", line))
            continue
        yield n, line


def _read_csv(text: str, name: str) -> list[dict[str, Any]]:
    """Rows of a CSV text, one per physical line: a quoted field may not span lines, so a truncated or
    unterminated line costs only itself (it becomes an error row), never the lines after it."""
    lines = text.split("\n")
    first = next((i for i, ln in enumerate(lines) if ln.strip()), None)
    if first is None:
        raise UnreadableFile(name, "the file is empty")
    try:
        delimiter = csv.Sniffer().sniff(lines[first][:_MAX_LINE], delimiters=",;\t|").delimiter
    except csv.Error:
        delimiter = ","
    header = [h.strip() for h in next(csv.reader([lines[first]], delimiter=delimiter))]
    if "claim_id" not in header:
        raise UnreadableFile(name, f"the header row has no claim_id column (read {header[:8]!r} with delimiter "
                                   f"{delimiter!r}): not a claims file")
    if len(set(header)) != len(header):
        raise UnreadableFile(name, f"the header row repeats a column: {header!r}")
    csv.field_size_limit(_MAX_LINE)
    rows: list[dict[str, Any]] = []
    for n, line in _record_lines(lines, first + 1, rows):
        try:
            values = next(csv.reader([line], delimiter=delimiter, strict=True))
        except csv.Error as exc:
            rows.append(_error_row(n, f"unreadable CSV record ({exc})", line))
            continue
        if len(values) != len(header):
            rows.append(_error_row(n, f"expected {len(header)} fields, got {len(values)}", line))
            continue
        row: dict[str, Any] = dict(zip(header, values))
        bad = _field_with_nul(row)
        if bad is not None:
            rows.append(_error_row(n, f"field {bad!r} contains a NUL byte", line))
            continue
        if delimiter == ";":
            row = {k: _eu_number(v) if k in NUMERIC_FIELDS else v for k, v in row.items()}
        rows.append(row)
    return rows


def _field_with_nul(row: dict[str, Any]) -> str | None:
    """The first field whose text holds a NUL byte (no store keeps one faithfully), or None."""
    return next((str(k)[:80] for k, v in row.items() if "\x00" in str(k) or (isinstance(v, str) and "\x00" in v)),
                None)


def _json_row(obj: Any, line: int) -> dict[str, Any]:
    if not isinstance(obj, dict):
        return _error_row(line, f"not a JSON object but {type(obj).__name__}")
    bad = _field_with_nul(obj)
    if bad is not None:
        return _error_row(line, f"field {bad!r} contains a NUL byte")
    long = next((str(k)[:80] for k, v in obj.items() if len(str(v)) > _MAX_LINE), None)
    if long is not None:
        return _error_row(line, f"field {long!r} is longer than {_MAX_LINE:,} characters")
    return obj


def _read_json(text: str, name: str) -> list[dict[str, Any]]:
    stripped = text.lstrip()
    if stripped.startswith("["):  # a JSON array instead of lines: taken when it parses as a whole
        try:
            items = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise UnreadableFile(name, f"starts like a JSON array but is not valid JSON ({exc.msg} at line "
                                       f"{exc.lineno})") from None
        return [_json_row(obj, i) for i, obj in enumerate(items, start=1)]
    rows: list[dict[str, Any]] = []
    for n, line in _record_lines(text.split("\n"), 0, rows):
        try:
            rows.append(_json_row(json.loads(line), n))
        except (json.JSONDecodeError, RecursionError) as exc:
            rows.append(_error_row(n, f"not JSON: {getattr(exc, 'msg', 'nested too deeply')}", line))
    return rows


def read_claims_file(path: Path) -> pd.DataFrame:
    """Raw rows of a claims file, values as written (strings for CSV), plus `_source` = file name.

    A row that cannot be read (bad JSON, wrong field count, an over-long line) is kept as a row whose
    `_parse_error` says which line and why, so validation quarantines it. A file that cannot be read
    at all raises `UnreadableFile` with the reason (the inbox moves it to the rejected folder).
    """
    if path.suffix not in SUFFIXES:
        raise UnreadableFile(path.name, f"unsupported file type {path.suffix!r} (expected {', '.join(SUFFIXES)})")
    text = _decode(path.read_bytes(), path.name)
    rows = _read_csv(text, path.name) if path.suffix == ".csv" else _read_json(text, path.name)
    if not rows:
        raise UnreadableFile(path.name, "no claim rows (header only)")
    frame = pd.DataFrame(rows, dtype=object)
    frame["_source"] = path.name
    return frame


# Bounded cursor: fingerprints of the files landed most recently. Files leave the inbox when
# landed, so the cursor only has to cover a crash between landing and the cursor update.
CURSOR_KEEP = 2000
MAX_FILES_PER_TICK = 500


@dataclass
class InboxTick:
    """What one look at the inbox did: files landed per partition, files rejected, the new cursor."""

    landed: dict[str, list[str]] = field(default_factory=dict)
    rejected: list[str] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)


def collect_inbox(inbox: Path, landing: Path, rejected: Path, seen: list[str],
                  before_landing: Callable[[InboxFile], None] | None = None) -> InboxTick:
    """Land every new file of `inbox` under `landing/<day>/` (or move it to `rejected` with a reason), at most
    MAX_FILES_PER_TICK; `seen` are the fingerprints already handled, the tick's `seen` the ones to remember.
    `before_landing` runs on each accepted file before it moves (the sensor registers its claims there)."""
    tick = InboxTick(seen=list(seen))
    known = set(seen)
    for f in list_inbox(inbox)[:MAX_FILES_PER_TICK]:
        fp = f.fingerprint
        if fp in known:
            continue
        reason = triage_inbox_file(f)
        if reason is not None:
            reject_file(f, rejected, reason)
            tick.rejected.append(f.path.name)
        else:
            if before_landing is not None:
                before_landing(f)
            land_file(f, landing)
            tick.landed.setdefault(f.partition, []).append(fp)
        tick.seen.append(fp)
        known.add(fp)
    tick.seen = tick.seen[-CURSOR_KEEP:]
    return tick
