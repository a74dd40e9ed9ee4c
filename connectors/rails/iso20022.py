"""ISO 20022 rail: one `pain.001.001.09` credit-transfer file per batch out, `pain.002` status reports in.

Outbound: each batch becomes one file whose `MsgId` is the batch id and whose transactions carry
the claim's idempotency key as `EndToEndId`; the file is validated against the official ISO XSD
(shipped by `sepaxml`) and written atomically (temporary name, fsync, rename, fsync of the folder)
into the outbound folder (an SFTP drop in production), so the bank never reads half a file. The
same batch always renders to the same bytes, so re-sending after a crash hands the bank a file it
recognises by `MsgId` (a bank refuses a duplicate `MsgId`: `DUPL`) instead of a second payment.

Inbound: `collect` reads every `pain.002` in the inbound folder and reports each transaction as
acknowledged (`ACCP`, `ACSC`, `ACSP`, `ACWC`, `ACCC`) or rejected (`RJCT`, with its reason code).
A whole-file `RJCT` rejects every payment of the original file, except `DUPL`, which only says the
bank already had that file (its first report stands).
"""

from __future__ import annotations

import os
import re
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from connectors.rails.base import ACKNOWLEDGED, REJECTED, SENT, PaymentOrder, PaymentRail, RailOutcome

SCHEMA = "pain.001.001.09"
ACCEPTED_CODES = {"ACCP", "ACSC", "ACSP", "ACWC", "ACCC", "ACTC"}
DUPLICATE_FILE = "DUPL"
_MSG_ID = re.compile(r"^[A-Za-z0-9.\-]{1,35}$")


class InvalidPaymentFile(ValueError):
    """A pain.001 that does not validate against the XSD; the message names the element and why."""


@dataclass(frozen=True)
class Debtor:
    """The account payouts are made from, in one currency."""

    name: str
    iban: str
    bic: str | None = None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _children(el: ET.Element, name: str) -> list[ET.Element]:
    return [c for c in el if _local(c.tag) == name]


def _find(el: ET.Element, *path: str) -> ET.Element | None:
    cur: ET.Element | None = el
    for name in path:
        if cur is None:
            return None
        found = _children(cur, name)
        cur = found[0] if found else None
    return cur


def _text(el: ET.Element, *path: str) -> str:
    node = _find(el, *path)
    return (node.text or "").strip() if node is not None else ""


_SCHEMAS: dict[str, object] = {}


def pain001_schema():  # noqa: ANN201 - xmlschema.XMLSchema
    """The official pain.001.001.09 XSD shipped by `sepaxml`, compiled once per process (~0.5 s)."""
    import sepaxml
    import xmlschema

    if SCHEMA not in _SCHEMAS:
        _SCHEMAS[SCHEMA] = xmlschema.XMLSchema(str(Path(sepaxml.__file__).parent / "schemas" / f"{SCHEMA}.xsd"))
    return _SCHEMAS[SCHEMA]


def validate_pain001(xml: bytes) -> None:
    """Raise `InvalidPaymentFile` naming the element and reason unless `xml` is valid pain.001.001.09."""
    errors = list(pain001_schema().iter_errors(xml.decode()))
    if errors:
        e = errors[0]
        raise InvalidPaymentFile(f"{SCHEMA} invalid at {e.path}: {e.reason}")


def render_pain001(batch_id: str, created_at: str, debtor: Debtor, orders: list[PaymentOrder],
                   execution_date: date) -> bytes:
    """The batch as pain.001.001.09 bytes: MsgId = batch id, EndToEndId = idempotency key, deterministic.

    Deterministic because a batch re-sent after a crash must be the very same file; `sepaxml`
    stamps the creation time and payment-information id itself, so both are set from the batch.
    """
    from sepaxml import SepaTransfer

    if not _MSG_ID.match(batch_id):
        raise ValueError(f"batch_id: {batch_id!r} is not a valid MsgId (1-35 of A-Z a-z 0-9 . -)")
    currencies = {o.currency for o in orders}
    if len(currencies) != 1:
        raise ValueError(f"orders: one currency per file, got {sorted(currencies)}")
    cfg = {"name": debtor.name, "IBAN": debtor.iban, "batch": True, "currency": currencies.pop()}
    if debtor.bic:
        cfg["BIC"] = debtor.bic
    transfer = SepaTransfer(cfg, schema=SCHEMA, clean=True)
    for o in sorted(orders, key=lambda o: o.idempotency_key):
        if len(o.idempotency_key) > 35:
            raise ValueError(f"idempotency_key: {o.idempotency_key!r} longer than EndToEndId's 35 characters")
        transfer.add_payment({"name": o.creditor_name, "IBAN": o.creditor_iban, "amount": int(o.amount_cents),
                              "currency": o.currency, "execution_date": execution_date,
                              "description": o.remittance, "endtoend_id": o.idempotency_key})
    raw = transfer.export(validate=False)
    ET.register_namespace("", f"urn:iso:std:iso:20022:tech:xsd:{SCHEMA}")
    root = ET.fromstring(raw)
    header = _find(root, "CstmrCdtTrfInitn", "GrpHdr")
    assert header is not None
    _find(header, "MsgId").text = batch_id  # type: ignore[union-attr]
    _find(header, "CreDtTm").text = created_at[:19]  # type: ignore[union-attr]
    for i, pmt in enumerate(_children(_find(root, "CstmrCdtTrfInitn"), "PmtInf"), 1):  # type: ignore[arg-type]
        _find(pmt, "PmtInfId").text = f"{batch_id[:31]}-{i}"  # type: ignore[union-attr]
    out = b'<?xml version="1.0" encoding="UTF-8"?>' + ET.tostring(root, "utf-8")
    validate_pain001(out)
    return out


def write_atomically(folder: Path, name: str, data: bytes) -> Path:
    """Write `data` to `folder/name` so that readers see the whole file or nothing: temp, fsync, rename."""
    folder.mkdir(parents=True, exist_ok=True)
    _remove_orphans(folder, name)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            _crash_point("file_half_written")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, folder / name)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return folder / name


def _remove_orphans(folder: Path, name: str, max_age_s: float = 3600.0) -> None:
    """Delete temporary files of `name` whose writer died (killed mid-file), never a live writer's.

    A temporary name carries its writer's pid: a concurrent dispatcher writing the same batch
    is alive and keeps its file; an hour-old one is an orphan whatever its pid says.
    """
    import time

    for tmp in folder.glob(f".{name}.*.tmp"):
        parts = tmp.name[len(name) + 2:].split(".")
        pid = int(parts[0]) if parts and parts[0].isdigit() else 0
        try:
            age = time.time() - tmp.stat().st_mtime
        except FileNotFoundError:
            continue
        if age > max_age_s or (pid and not _alive(pid)):
            tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _crash_point(name: str) -> None:
    from connectors.rails.crash import crash_point

    crash_point(name)


def parse_pain002(xml: bytes) -> tuple[str, list[RailOutcome]]:
    """(original MsgId, outcomes) of a pain.002 status report; [] when it only reports a duplicate file."""
    root = ET.fromstring(xml)
    report = _find(root, "CstmrPmtStsRpt")
    if report is None:
        raise ValueError("pain.002: no CstmrPmtStsRpt element (not a payment status report)")
    group = _find(report, "OrgnlGrpInfAndSts")
    orig_msg = _text(group, "OrgnlMsgId") if group is not None else ""
    group_status = _text(group, "GrpSts") if group is not None else ""
    group_reason = _text(group, "StsRsnInf", "Rsn", "Cd") if group is not None else ""
    ref = _text(report, "GrpHdr", "MsgId")
    outcomes: list[RailOutcome] = []
    for pmt in _children(report, "OrgnlPmtInfAndSts"):
        for tx in _children(pmt, "TxInfAndSts"):
            key = _text(tx, "OrgnlEndToEndId")
            status = _text(tx, "TxSts") or _text(pmt, "PmtInfSts") or group_status
            reason = _text(tx, "StsRsnInf", "Rsn", "Cd")
            if status in ACCEPTED_CODES:
                outcomes.append(RailOutcome(key, ACKNOWLEDGED, receipt=f"{orig_msg}/{key}", batch_id=orig_msg,
                                            detail=f"{status} ({ref})"))
            elif status == "RJCT":
                outcomes.append(RailOutcome(key, REJECTED, receipt=f"{orig_msg}/{key}", batch_id=orig_msg,
                                            detail=f"RJCT {reason} ({ref})".strip()))
    if not outcomes and group_status == "RJCT" and group_reason != DUPLICATE_FILE:
        # a file rejected outright: every payment of it is rejected (`batch_id` names the file)
        outcomes.append(RailOutcome("*", REJECTED, batch_id=orig_msg, detail=f"RJCT {group_reason} ({ref})"))
    return orig_msg, outcomes


class Pain001FileRail(PaymentRail):
    """Pays by dropping pain.001 files into `outbound` and reading pain.002 reports from `inbound`."""

    name = "iso20022"

    def __init__(self, outbound: Path | str, inbound: Path | str, debtors: Mapping[str, Debtor],
                 execution_date: date | None = None) -> None:
        self.outbound, self.inbound = Path(outbound), Path(inbound)
        self.debtors = dict(debtors)
        self.execution_date = execution_date

    @staticmethod
    def file_name(batch_id: str) -> str:
        """The outbound file name of a batch (stable, so a re-send replaces rather than adds)."""
        return f"{SCHEMA}-{batch_id}.xml"

    def send(self, batch_id: str, created_at: str, orders: list[PaymentOrder]) -> list[RailOutcome]:
        """Write the batch's file (validated, atomically); every order is `sent`, the bank's report follows."""
        currency = orders[0].currency
        debtor = self.debtors.get(currency)
        if debtor is None:
            return [RailOutcome(o.idempotency_key, REJECTED, batch_id=batch_id,
                                detail=f"currency: no debtor account for {currency}") for o in orders]
        when = self.execution_date or date.fromisoformat(created_at[:10])
        data = render_pain001(batch_id, created_at, debtor, orders, when)
        write_atomically(self.outbound, self.file_name(batch_id), data)
        return [RailOutcome(o.idempotency_key, SENT, receipt=batch_id, batch_id=batch_id) for o in orders]

    def _reports(self) -> list[Path]:
        if not self.inbound.is_dir():
            return []
        return sorted(p for p in self.inbound.iterdir()
                      if p.is_file() and p.suffix == ".xml" and not p.name.startswith(".")
                      and p.name.startswith("pain.002"))

    def collect(self) -> list[RailOutcome]:
        """Every payment outcome in the inbound pain.002 reports not yet archived (each names its report)."""
        out: list[RailOutcome] = []
        for path in self._reports():
            outcomes = parse_pain002(path.read_bytes())[1]
            if not outcomes:  # e.g. a duplicate-file answer: nothing to record, archive it now
                self._archive([path.name])
            out.extend(RailOutcome(o.idempotency_key, o.status, o.receipt, o.detail, o.batch_id, path.name)
                       for o in outcomes)
        return out

    def collected(self, outcomes: list[RailOutcome]) -> None:
        """Move the reports these (recorded) outcomes came from into `inbound/read/`."""
        self._archive(sorted({o.source for o in outcomes if o.source}))

    def _archive(self, names: list[str]) -> None:
        done = self.inbound / "read"
        done.mkdir(parents=True, exist_ok=True)
        for name in names:
            try:
                os.replace(self.inbound / name, done / name)
            except FileNotFoundError:  # archived meanwhile by a concurrent dispatcher
                pass
