"""Poison-proof ingress: a file that cannot be read is rejected with a reason, a row that cannot be used is
quarantined with its field (or line) and reason, and everything else is read as usual.

The fuzz test builds claims files the way careless producers do (other encodings, BOMs, CRLF, other
delimiters and decimal commas, JSON arrays, truncated or over-long lines, NUL bytes, nested or wrong
types, path-like document refs, garbage) and checks, for each: no exception escapes the inbox triage,
the reader or validation; every row written is accounted for (valid + quarantined, or the whole file
rejected); and the rows left intact are still valid.
"""

from __future__ import annotations

import json
from datetime import date
from functools import lru_cache
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.inbox import InboxFile, UnreadableFile, read_claims_file, triage_inbox_file
from models.generator import generate_claims, make_book, to_inbox_records
from models.validation import validate_claims

DAY = "2026-03-03"
N_ROWS = 8


@lru_cache(maxsize=1)
def base_records() -> tuple[dict, ...]:
    """A handful of valid claims of one day, as an inbox file carries them (strings)."""
    claims, _docs = generate_claims(make_book(200, seed=3), date.fromisoformat(DAY), 1, N_ROWS, seed=3)
    frame = to_inbox_records(claims).astype(str)
    return tuple(frame.to_dict("records"))


ROW_DEFECTS = ("nul_in_field", "nested_amount", "list_claim_id", "path_ref", "truncated", "extra_field",
               "long_line", "blank_id")
SHAPES = ("csv", "csv_crlf", "csv_bom", "csv_utf16", "csv_semicolon_decimal_comma", "jsonl", "jsonl_crlf",
          "json_array", "jsonl_utf16")


def _csv_line(values: list[str], sep: str) -> str:
    out = []
    for v in values:
        v = str(v)
        out.append('"' + v.replace('"', '""') + '"' if (sep in v or '"' in v or "\n" in v) else v)
    return sep.join(out)


def render(shape: str, records: list[dict], defects: dict[int, str]) -> tuple[bytes, str]:
    """The bytes of a claims file of `shape` holding `records`, with `defects` (row index → defect) applied."""
    header = list(records[0])
    is_csv = shape.startswith("csv")
    sep = ";" if "semicolon" in shape else ","
    lines = []
    for i, rec in enumerate(records):
        rec = dict(rec)
        defect = defects.get(i)
        if defect == "nul_in_field":
            rec["description"] = "water\x00damage"
        elif defect == "path_ref":
            rec["document_refs"] = "../../etc/passwd"
        elif defect == "long_line":
            rec["description"] = "x" * (1024 * 1024 + 10)
        elif defect == "blank_id":
            rec["claim_id"] = ""
        if sep == ";" and rec.get("amount"):
            rec["amount"] = f"{float(rec['amount']):,.2f}".replace(",", "X").replace(".", ",").replace("X", ".")
        if is_csv:
            values = [rec[h] for h in header]
            if defect in ("nested_amount", "list_claim_id"):
                values[header.index("amount")] = "{'a': 1}"
            line = _csv_line(values, sep)
            if defect == "extra_field":
                line += sep + "surplus"
            if defect == "truncated":
                line = line[: len(line) // 3]
        else:
            obj: dict = dict(rec)
            if defect == "nested_amount":
                obj["amount"] = {"value": obj["amount"], "nested": [1, 2]}
            elif defect == "list_claim_id":
                obj["claim_id"] = [obj["claim_id"]]
            elif defect == "extra_field":
                obj["surplus"] = {"deep": {"deeper": None}}
            line = json.dumps(obj)
            if defect == "truncated":
                line = line[: len(line) // 2]
        lines.append(line)
    if shape == "json_array":
        text = "[" + ",\n".join(lines) + "]"
        if any(d == "truncated" for d in defects.values()):
            text = "[" + ",\n".join(ln for i, ln in enumerate(lines) if defects.get(i) != "truncated") + "]"
    else:
        body = ([_csv_line(header, sep)] if is_csv else []) + lines
        nl = "\r\n" if shape.endswith("_crlf") else "\n"
        text = nl.join(body) + nl
    suffix = ".csv" if is_csv else (".json" if shape == "json_array" else ".jsonl")
    if shape.endswith("utf16"):
        return text.encode("utf-16"), suffix  # with its BOM
    data = text.encode("utf-8")
    return (b"\xef\xbb\xbf" + data if shape == "csv_bom" else data), suffix


def account(path: Path) -> tuple[int, pd.DataFrame, pd.DataFrame] | str:
    """What the platform makes of one inbox file: the rejection reason, or (rows read, valid, quarantined)."""
    reason = triage_inbox_file(InboxFile(path, DAY))
    if reason is not None:
        return reason
    frame = read_claims_file(path)
    result = validate_claims(frame, source=path.name)
    return len(frame), result.valid, result.quarantined


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shape=st.sampled_from(SHAPES),
       defects=st.dictionaries(st.integers(0, N_ROWS - 1), st.sampled_from(ROW_DEFECTS), max_size=4))
def test_malformed_rows_are_quarantined_and_the_rest_decided(tmp_path_factory, shape, defects):
    records = list(base_records())
    defects = {i: d for i, d in defects.items() if i < len(records)}
    if shape == "json_array":  # a truncated element breaks the whole array, which is a file-level case
        defects = {i: d for i, d in defects.items() if d != "truncated"}
    data, suffix = render(shape, records, defects)
    path = tmp_path_factory.mktemp("inbox") / f"claims-{DAY}{suffix}"
    path.write_bytes(data)
    outcome = account(path)
    assert not isinstance(outcome, str), f"{shape} with {defects} was rejected: {outcome}"
    rows, valid, quarantined = outcome
    assert rows == len(records), "every row written is read, as a claim or as a line that cannot be read"
    assert len(valid) + len(quarantined) == len(records)
    intact = {records[i]["claim_id"] for i in range(len(records)) if i not in defects}
    assert intact <= set(valid["claim_id"]), "an intact row was not decided"
    assert all(reasons and all(isinstance(r, str) and r for r in reasons) for reasons in quarantined["reasons"])
    # A surplus JSON key is ignored by the claim contract; every other defect makes its row unusable.
    unusable = {i for i, d in defects.items() if d != "extra_field" or suffix == ".csv"}
    assert len(quarantined) == len(unusable)
    assert not {records[i]["claim_id"] for i in unusable} & set(valid["claim_id"])


GARBAGE = {
    "binary": (bytes(range(256)) * 40, ".csv", "binary"),
    "png_named_csv": (b"\x89PNG\r\n\x1a\n" + bytes(2000), ".csv", "binary"),
    "empty": (b"", ".csv", "empty"),
    "whitespace_only": (b"\n\n  \n", ".jsonl", "empty"),
    "header_only": (b"claim_id,policy_id,amount\n", ".csv", "no claim rows"),
    "latin1": ("claim_id,description\nC1,dégât des eaux\n".encode("latin-1"), ".csv", "not UTF-8"),
    "utf16_without_bom": ("claim_id,amount\nC1,10\n".encode("utf-16-le"), ".csv", "UTF-16"),
    "no_claim_id_header": (b"foo,bar\n1,2\n", ".csv", "no claim_id column"),
    "broken_json_array": (b'[{"claim_id": "C1"}, {"claim_id": ', ".json", "not valid JSON"),
    "unknown_extension": (b"claim_id\nC1\n", ".xlsx", "unsupported file type"),
}


@pytest.mark.parametrize("case", sorted(GARBAGE))
def test_a_file_that_cannot_be_read_is_rejected_with_a_reason(tmp_path, case):
    data, suffix, words = GARBAGE[case]
    path = tmp_path / f"claims-{DAY}{suffix}"
    path.write_bytes(data)
    reason = account(path)
    assert isinstance(reason, str) and words in reason, reason
    if suffix != ".xlsx":
        with pytest.raises(UnreadableFile):
            read_claims_file(path)


def test_a_five_megabyte_line_is_quarantined_with_its_line_number(tmp_path):
    records = list(base_records())
    header = list(records[0])
    lines = [",".join(header)] + [_csv_line([r[h] for h in header], ",") for r in records]
    lines.insert(3, "C-HUGE," + "y" * (5 * 1024 * 1024))
    path = tmp_path / f"claims-{DAY}.csv"
    path.write_text("\n".join(lines) + "\n")
    rows, valid, quarantined = account(path)
    assert rows == len(records) + 1 and len(valid) == len(records)
    assert quarantined["reasons"].iloc[0][0].startswith("line 4:")


def test_decimal_commas_of_a_semicolon_file_are_read_as_amounts(tmp_path):
    records = list(base_records())
    data, suffix = render("csv_semicolon_decimal_comma", records, {})
    path = tmp_path / f"claims-{DAY}{suffix}"
    path.write_bytes(data)
    rows, valid, quarantined = account(path)
    assert len(quarantined) == 0
    expected = sorted(round(float(r["amount"]), 2) for r in records)
    assert sorted(valid["amount"].round(2)) == expected
