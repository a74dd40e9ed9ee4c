"""The structured rationale: items carry the data, the words are derived in one place, the review UI groups
the items (no parsing of sentences)."""

from __future__ import annotations

import json

import pytest

from aios.kernel.canonical import canonical_json
from aios.kernel.contracts import RationaleItem, rationale_item, rationale_text
from service.review.context import rationale_view
from tests.reviewkit import RATIONALE


def test_an_item_says_in_words_what_its_fields_hold():
    assert rationale_item("score", "classifier", 0.2104, band="mid")["text"] == "classifier score 0.210 (mid band)"
    item = rationale_item("feature", "doc_amount_mismatch", float("nan"), -0.0123)
    assert item["value"] is None and item["text"] == "doc_amount_mismatch=missing moved the score -0.012"
    assert rationale_item("evidence", "late_report", "yes", 0.041)["text"] == "late_report=yes moved p_fraud +0.041"
    assert RationaleItem.model_validate(item).effect == -0.0123
    with pytest.raises(ValueError, match="rationale kind"):
        rationale_text("hunch", "x", 1)


def test_the_review_page_groups_items_by_kind():
    view = rationale_view(RATIONALE)
    assert view["summary"] == ["classifier score 0.210 (mid band)"]
    assert [(f["name"], f["value"], f["delta"]) for f in view["features"]] == [
        ("amount_ratio", "3.1", 0.08), ("report_delay_days", "12", 0.03), ("channel", "web", -0.01)]
    assert [e["name"] for e in view["evidence"]] == ["score_band", "late_report"]


def test_a_rationale_stored_before_it_was_structured_is_shown_as_words():
    legacy = json.dumps(["classifier score 0.210 (mid band)", "amount_ratio=3.1 moved the score +0.080"])
    view = rationale_view(legacy)
    empty = {"summary": [], "features": [], "evidence": [], "modules": []}
    assert view == {**empty, "summary": json.loads(legacy)}
    assert rationale_view(None) == empty
    assert rationale_view(canonical_json([])) == empty


def test_a_module_item_names_its_version_and_whether_it_spoke():
    spoke = rationale_item("module", "watchlist", "hit", 0.0812, version="2026.09")
    silent = rationale_item("module", "device_check", "not_applicable", None, version="1.4.1")
    assert spoke["text"] == "module watchlist 2026.09 said hit, moved p_fraud +0.081"
    assert silent["text"] == "module device_check 1.4.1 could not say (not_applicable; marginalised)"
    assert RationaleItem.model_validate(spoke).version == "2026.09"
    view = rationale_view(canonical_json([spoke, silent]))
    assert view["modules"] == [
        {"name": "watchlist", "version": "2026.09", "state": "hit", "spoke": True, "delta": 0.0812},
        {"name": "device_check", "version": "1.4.1", "state": "not_applicable", "spoke": False, "delta": None}]
    assert view["summary"] == []
