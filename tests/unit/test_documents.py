"""Claim documents: generated files read back through OCR / the PDF text layer, verification signals,
and the text triage model. Sizes are small; accuracy and speed at scale live in `bench/bench_ocr.py`."""

from __future__ import annotations

import io
import json
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from connectors.documents import DocumentStore
from connectors.ocr import read_claims_documents, read_document
from models.doc_signals import SIGNAL_STATES, document_signals
from models.docgen import FORMS, _jpeg, degrade, draw_specs, read_truth, render_page, write_documents
from models.fields import compare_to_truth, extract_fields, iban_valid, parse_amount, parse_date, repair_iban
from models.generator import generate_claims, make_book
from models.page_hash import hash_distance, page_hash


@pytest.fixture(scope="module")
def day_docs(tmp_path_factory):
    """Six claims' documents written cycling through the four forms, each read once."""
    claims, docs = generate_claims(make_book(500, seed=3), date(2026, 11, 20), 1, 6, seed=3)
    specs = draw_specs(claims, docs, seed=3)
    folder = tmp_path_factory.mktemp("docs")
    paths = write_documents(specs, folder, seed=3, forms=FORMS)
    readings = [read_document(p) for p in paths]
    return claims, specs, folder, paths, readings


def test_generator_is_seeded_and_writes_truth_beside_each_file(day_docs, tmp_path):
    claims, specs, folder, paths, _ = day_docs
    again = draw_specs(*generate_claims(make_book(500, seed=3), date(2026, 11, 20), 1, 6, seed=3), seed=3)
    assert [s.truth() for s in again] == [s.truth() for s in specs]
    for p in paths:
        truth = read_truth(p)
        assert truth["doc_type"] in ("invoice", "repair_estimate", "medical_bill", "police_report")
        assert truth["meta"]["form"] in FORMS
    assert {read_truth(p)["meta"]["form"] for p in paths} == set(FORMS)


def test_fields_are_read_exactly_from_every_form(day_docs):
    _, _, _, paths, readings = day_docs
    checked = 0
    for path, reading in zip(paths, readings):
        truth = read_truth(path)
        if truth["meta"]["defects"]:  # dark or cropped scans are allowed to lose fields
            continue
        result = compare_to_truth(extract_fields(reading), truth)
        assert all(result.values()), (path.name, {k: v for k, v in extract_fields(reading).values().items()
                                                  if not result[k]}, truth)
        checked += 1
    assert checked >= len(paths) - 1


def test_text_pdfs_are_read_from_their_text_layer_and_scans_through_ocr(day_docs):
    _, _, _, paths, readings = day_docs
    for path, reading in zip(paths, readings):
        form = read_truth(path)["meta"]["form"]
        assert reading.pages[0].source == ("text_layer" if form == "text_pdf" else "ocr")
        assert (reading.phash is None) == (form == "text_pdf")


@pytest.mark.parametrize("name,content", [
    ("broken.png", b"\x89PNG\r\n\x1a\n not really an image"),
    ("broken.pdf", b"%PDF-1.4\n garbage"),
    ("notes.docx", b"PK\x03\x04"),
])
def test_a_file_that_cannot_be_decoded_is_unreadable_not_an_exception(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    reading = read_document(path)
    assert reading.status == "unreadable" and reading.reason
    fields = extract_fields(reading)
    assert fields.status == "unreadable" and all(v is None for v in fields.fields.values())


def test_a_blank_or_black_page_is_unreadable(tmp_path):
    Image.new("L", (1600, 1100), 255).save(tmp_path / "blank.png")
    Image.new("L", (1600, 1100), 8).save(tmp_path / "black.jpg")
    for name in ("blank.png", "black.jpg"):
        reading = read_document(tmp_path / name)
        assert reading.status == "unreadable", (name, reading.text)
    assert read_document(tmp_path / "missing.pdf").reason == "file not found"


@pytest.mark.parametrize("text,value", [("1,234.50", 1234.5), ("1.234,50", 1234.5), ("1'234.50", 1234.5),
                                        ("12 345,00", 12345.0), ("950", 950.0), ("0,99", 0.99), ("1.2.3", None)])
def test_amounts_parse_in_every_locale(text, value):
    assert parse_amount(text) == value


@pytest.mark.parametrize("text,iso", [("2026-11-20", "2026-11-20"), ("20/11/2026", "2026-11-20"),
                                      ("November 20, 2026", "2026-11-20"), ("20.11.2026", "2026-11-20"),
                                      ("31/02/2026", None), ("Smarch 3, 2026", None)])
def test_dates_parse_in_every_format(text, iso):
    assert parse_date(text) == iso


def test_an_iban_misread_by_ocr_is_repaired_only_when_the_check_digits_agree():
    good = "DE05232332175848514450"
    assert iban_valid(good)
    assert repair_iban("DEO5232332175848514450") == good
    assert repair_iban("DE05232332175848514451") is None


def _doc_row(claim_id, ref, **kw):
    row = {"claim_id": claim_id, "doc_ref": ref, "status": "read", "reason": None, "doc_type": "invoice",
           "issuer": "X", "number": f"N-{ref}", "date": "2026-11-21", "total": 100.0, "currency": "EUR",
           "iban": None, "items_sum": 100.0, "mean_conf": 0.95, "phash": None, "source": "text_layer",
           "doc_type_conf": 0.95, "number_conf": 0.95, "date_conf": 0.95, "total_conf": 0.95}
    row.update(kw)
    return row


def _claims(*ids, amount=100.0, refs=None):
    return pd.DataFrame({"claim_id": list(ids), "amount": amount, "currency": "EUR", "incident_date": "2026-11-20",
                         "document_refs": refs or [f"{i}-0" for i in ids]})


def test_signals_name_each_inconsistency_with_its_evidence():
    claims = _claims("A", "B", "C", "D", "E")
    docs = pd.DataFrame([
        _doc_row("A", "A-0"),
        _doc_row("B", "B-0", date="2026-11-02", total=180.0, items_sum=120.0),  # predated, inflated, below claim? no: above
        _doc_row("C", "C-0", number="N-A-0"),                                   # re-used number of A
        _doc_row("D", "D-0", status="unreadable", reason="mean word confidence 0.20 below 0.4", doc_type=None,
                 total=None, number=None, date=None, items_sum=None),
    ])
    s = document_signals(claims, docs)
    assert s.loc["A"].drop("evidence").to_dict() == {
        "doc_total": "match", "doc_date": "consistent", "doc_items": "consistent", "doc_duplicate_number": "duplicate",
        "doc_duplicate_image": "not_applicable", "doc_missing": "complete", "doc_ocr_quality": "high"}
    assert s.loc["B", "doc_total"] == "total_above_claim"
    assert s.loc["B", "doc_date"] == "before_incident"
    assert s.loc["B", "doc_items"] == "total_above_items"
    assert json.loads(s.loc["B", "evidence"])["doc_date"]["days_after_incident"] == -18
    assert s.loc["C", "doc_duplicate_number"] == "duplicate"
    assert json.loads(s.loc["C", "evidence"])["doc_duplicate_number"]["also_on_claims"] == {"N-A-0": ["A"]}
    assert s.loc["D", "doc_ocr_quality"] == "unreadable" and s.loc["D", "doc_total"] == "unavailable"
    assert s.loc["E", "doc_missing"] == "missing_referenced" and s.loc["E", "doc_ocr_quality"] == "unavailable"
    for signal, states in SIGNAL_STATES.items():
        assert set(s[signal]) <= set(states), signal


def test_a_rescanned_page_is_a_near_duplicate_and_a_different_page_is_not():
    claims, docs = generate_claims(make_book(500, seed=5), date(2026, 11, 20), 1, 4, seed=5)
    specs = draw_specs(claims, docs, seed=5)
    rng = np.random.default_rng(0)
    first = degrade(render_page(specs[0], 200), rng)
    rescan = degrade(Image.open(io.BytesIO(_jpeg(first, 50, 200))).convert("L"), rng)
    other = degrade(render_page(specs[1], 200), rng)
    h1, h2, h3 = page_hash(first), page_hash(rescan), page_hash(other)
    claims2 = _claims("A", "B", "C")
    docs2 = pd.DataFrame([_doc_row("A", "A-0", phash=h1, source="ocr"), _doc_row("B", "B-0", phash=h2, source="ocr"),
                          _doc_row("C", "C-0", phash=h3, source="ocr")])
    s = document_signals(claims2, docs2)
    assert (s.loc["A", "doc_duplicate_image"], s.loc["B", "doc_duplicate_image"]) == ("near_duplicate", "near_duplicate")
    assert s.loc["C", "doc_duplicate_image"] == "unique", (hash_distance(h1, h3), hash_distance(h2, h3))


def test_reading_a_claims_documents_from_the_store_marks_missing_ones(day_docs):
    claims, _, folder, paths, _ = day_docs
    first = claims.iloc[:2].copy()
    first.loc[first.index[0], "document_refs"] += ";DOC-NOT-THERE"
    docs = read_claims_documents(first, DocumentStore(folder))
    assert (docs.loc[docs["doc_ref"] == "DOC-NOT-THERE", "status"] == "missing").all()
    assert (docs.loc[docs["doc_ref"] != "DOC-NOT-THERE", "status"] == "read").all()
    assert not any(str(p).endswith(".truth.json") for p in docs["path"].dropna())
    signals = document_signals(first, docs)
    assert signals.loc[first["claim_id"].iloc[0], "doc_missing"] == "missing_referenced"


def test_triage_beats_the_trivial_baseline_on_differently_worded_text():
    from models.nlp_triage import train_and_evaluate

    model, m = train_and_evaluate(n_train=800, n_heldout=300, seed=11)
    for head in ("topic", "suspicious", "urgent"):
        assert m[f"{head}_macro_f1"] > m[f"{head}_baseline_macro_f1"] + 0.10, (head, m)
        assert 0.0 <= m[f"{head}_ece"] < 0.25, (head, m)
    out = model.predict(pd.Series(["Windscreen cracked on the motorway.", ""]), pd.Series(["health", "auto"]))
    assert out["type_state"].tolist() == ["inconsistent", "unavailable"]


def test_cli_read_json_gives_type_fields_and_text_per_file(day_docs, tmp_path):
    from typer.testing import CliRunner

    from aios.cli.main import app

    _, _, _, paths, _ = day_docs
    text_pdf = next(p for p in paths if read_truth(p)["meta"]["form"] == "text_pdf")
    result = CliRunner().invoke(app, ["documents", "read", "--json", str(text_pdf), str(tmp_path / "nope.png")])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert [o["status"] for o in out] == ["read", "unreadable"]
    assert out[0]["doc_type"] == read_truth(text_pdf)["doc_type"]
    assert set(out[0]["fields"]) == {"doc_type", "issuer", "number", "date", "total", "currency", "iban"}
    assert set(out[0]["fields"]["number"]) == {"value", "confidence", "raw"}
    assert out[0]["fields"]["number"]["value"] == read_truth(text_pdf)["number"]
    assert read_truth(text_pdf)["number"] in out[0]["text"]

