"""The documents job's Dagster wiring, tested once: a generated day read, signalled and triaged."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from models.docgen import draw_specs, write_documents
from models.generator import generate_claims, make_book


@pytest.mark.slow
def test_documents_job_reads_signals_and_triages_a_day_with_metadata(settings, tmp_path):
    """The Dagster wiring once: a day's generated documents → readings → signals, and triage by @champion."""
    import dagster as dg

    from aios_assets.documents import claim_triage, document_readings, document_signals
    from aios_assets.partitions import daily_partitions
    from aios_resources import DocumentStoreResource, ModelRegistryResource
    from models.nlp_triage import MODEL_NAME, train_and_evaluate
    from connectors.registry import log_and_register

    claims, docs = generate_claims(make_book(300, seed=8), date(2026, 11, 20), 1, 3, seed=8)
    write_documents(draw_specs(claims, docs, seed=8), tmp_path / "documents", seed=8)
    model, metrics = train_and_evaluate(400, 100, seed=8)
    log_and_register(model, tracking_uri=settings.mlflow_uri, artifact_root=settings.mlflow_artifacts_dir,
                     name=MODEL_NAME, alias="champion", metrics=metrics, params={}, experiment="aios-triage")

    @dg.asset(name="validated_claims", partitions_def=daily_partitions)
    def generated_claims() -> pd.DataFrame:
        return claims.drop(columns=["is_fraud"])

    result = dg.materialize(
        [generated_claims, document_readings, document_signals, claim_triage], partition_key="2026-11-20",
        resources={"documents": DocumentStoreResource(home=str(tmp_path)),
                   "registry": ModelRegistryResource(tracking_uri=settings.mlflow_uri, home=str(settings.home))})
    assert result.success
    readings = result.output_for_node("document_readings")
    assert len(readings) == sum(len(r.split(";")) for r in claims["document_refs"])
    meta = result.asset_materializations_for_node("document_readings")[0].metadata
    assert meta["pages_read"].value >= len(docs) and "field_accuracy_vs_truth" in meta
    signals = result.output_for_node("document_signals")
    assert list(signals.index) == list(claims["claim_id"])
    triage = result.output_for_node("claim_triage")
    assert set(triage["type_state"]) <= {"consistent", "inconsistent", "unavailable"}
    assert triage["triage_version"].eq(model.version).all()
