"""Documents and text of a day's claims: every referenced document read (PDF text layer or OCR) into
fields, the document verification signals, and the text triage model's scores.

Its own group and job (`documents_job`), downstream of `validated_claims`: the daily claims job is
unchanged. Pages are read in `AIOS_OCR_PROCESSES` worker processes (default: one per core).
"""

import os
import statistics

import dagster as dg
import pandas as pd

from aios_assets.metadata import counts_table
from aios_assets.partitions import daily_partitions
from aios_resources import DocumentStoreResource, ModelRegistryResource

GROUP = "documents"


def _processes() -> int:
    return max(1, int(os.environ.get("AIOS_OCR_PROCESSES") or os.cpu_count() or 1))


def _field_accuracy(docs: pd.DataFrame) -> dict[str, float]:
    """Exact-match share per field over the documents that have a generated truth file beside them."""
    from models.docgen import read_truth
    from models.fields import FIELDS, fold_accents

    hits: dict[str, list[bool]] = {k: [] for k in FIELDS}
    for row in docs[docs["status"] == "read"].itertuples(index=False):
        truth = read_truth(row.path) if isinstance(row.path, str) else None
        if not truth or truth["meta"].get("defects"):
            continue
        for k in FIELDS:
            have, want = getattr(row, k), truth.get(k)
            have = None if isinstance(have, float) and pd.isna(have) else have
            if k == "total" and have is not None and want is not None:
                hits[k].append(round(float(have), 2) == round(float(want), 2))
            elif k == "issuer" and have is not None and want is not None:
                hits[k].append(fold_accents(str(have)) == fold_accents(str(want)))
            else:
                hits[k].append(have == want)
    return {k: round(sum(v) / len(v), 4) for k, v in hits.items() if v}


@dg.asset(partitions_def=daily_partitions, group_name=GROUP, kinds={"pandas", "tesseract"},
          description="Every referenced document of the day's validated claims read into fields with confidences "
                      "(PDF text layer directly; images and scanned PDFs through Tesseract). One row per document; "
                      "unreadable and missing documents are rows with their reason.")
def document_readings(validated_claims: pd.DataFrame, documents: DocumentStoreResource) -> dg.Output[pd.DataFrame]:
    """The day's documents read into fields."""
    from connectors.ocr import read_claims_documents

    processes = _processes()
    docs = read_claims_documents(validated_claims, documents.store(), processes=processes)
    read = docs[docs["status"] != "missing"]
    pages = int(pd.to_numeric(read["pages"], errors="coerce").fillna(0).sum())
    ocr = read[read["source"] == "ocr"]
    per_page = [s / p for s, p in zip(pd.to_numeric(ocr["seconds"]), pd.to_numeric(ocr["pages"])) if p]
    accuracy = _field_accuracy(docs)
    return dg.Output(docs, metadata={
        "documents": len(docs), "pages_read": pages, "processes": processes,
        "ocr_s_per_page_median": dg.MetadataValue.float(round(statistics.median(per_page), 3) if per_page else 0.0),
        "mean_confidence": dg.MetadataValue.float(round(float(pd.to_numeric(read["mean_conf"]).mean()), 3)
                                                  if len(read) else 0.0),
        "unreadable": int((docs["status"] == "unreadable").sum()),
        "missing": int((docs["status"] == "missing").sum()),
        "by_source": counts_table(read["source"].fillna("none").value_counts().to_dict()),
        "field_accuracy_vs_truth": dg.MetadataValue.json(accuracy) if accuracy else dg.MetadataValue.text("no truth"),
    })


@dg.asset(partitions_def=daily_partitions, group_name=GROUP, kinds={"pandas"},
          description="Document verification signals per claim (total, date, line items, duplicate number or scan, "
                      "missing document, reading quality), each a named state with its evidence.")
def document_signals(validated_claims: pd.DataFrame, document_readings: pd.DataFrame) -> dg.Output[pd.DataFrame]:
    """The day's document signals per claim."""
    from models.doc_signals import SIGNAL_STATES
    from models.doc_signals import document_signals as signals_of

    signals = signals_of(validated_claims, document_readings)
    md = {name: counts_table(signals[name].value_counts().to_dict()) for name in SIGNAL_STATES}
    return dg.Output(signals, metadata={"claims": len(signals), **md})


@dg.asset(partitions_def=daily_partitions, group_name=GROUP, kinds={"pandas", "scikit-learn"},
          description="Text triage of each claim's description by the registered aios-triage@champion model: "
                      "topic vs claim type, suspicious-language and urgency scores (unavailable without a model).")
def claim_triage(validated_claims: pd.DataFrame, registry: ModelRegistryResource) -> dg.Output[pd.DataFrame]:
    """Triage scores per claim, with the model version that produced them."""
    from models.nlp_triage import MODEL_NAME
    from connectors.registry import load_by_alias

    claims = validated_claims.set_index("claim_id")
    try:
        model, ref = load_by_alias(registry.tracking_uri, MODEL_NAME, "champion")
    except LookupError as exc:
        out = pd.DataFrame({"type_state": "unavailable", "reason": str(exc)}, index=claims.index)
        return dg.Output(out, metadata={"claims": len(out), "model": "none: " + str(exc)})
    out = model.predict(claims["description"], claims["claim_type"])
    out["registry_version"] = ref.version
    return dg.Output(out, metadata={
        "claims": len(out), "model": f"{MODEL_NAME} v{ref.version} ({model.version})",
        "type_states": counts_table(out["type_state"].value_counts().to_dict()),
        "mean_suspicious": dg.MetadataValue.float(round(float(out["suspicious_score"].mean()), 3) if len(out) else 0.0),
        "mean_urgency": dg.MetadataValue.float(round(float(out["urgency_score"].mean()), 3) if len(out) else 0.0),
    })


documents_job = dg.define_asset_job(
    "documents_job", selection=dg.AssetSelection.groups(GROUP), partitions_def=daily_partitions,
    description="One day's claim documents read (OCR / text layer) into signals, and the descriptions triaged.",
)
