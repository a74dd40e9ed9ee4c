"""Demo data on disk: the generated history (with labels) and daily batches dropped into the inbox."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import pandas as pd

from aios.kernel.settings import Settings
from connectors.documents import DocumentStore
from models.generator import Book, generate_claims, inject_drift, inject_malformed, make_book, to_inbox_records


def generate_history(settings: Settings, days: int, per_day: int, seed: int, n_policies: int = 20_000,
                     on_day: Callable[[], None] | None = None) -> pd.DataFrame:
    """Write the book of policies and `days` of labelled history ending the day before the demo day."""
    settings.ensure_dirs()
    demo = date.fromisoformat(settings.demo_date)
    start = demo - timedelta(days=days)
    book = make_book(n_policies=n_policies, seed=seed)
    book.policies.to_parquet(settings.policies_path)
    claims, docs = [], []
    for d in range(days):
        c, k = generate_claims(book, start + timedelta(days=d), 1, per_day, seed)
        claims.append(c)
        docs.append(k)
        if on_day:
            on_day()
    history = pd.concat(claims, ignore_index=True)
    history.to_parquet(settings.history_path)
    pd.concat(docs, ignore_index=True).to_parquet(settings.data_dir / "history_documents.parquet")
    return history


def drop_batch(settings: Settings, day: str, *, malformed: int = 7, fmt: str = "csv", drift: bool = False,
               per_day: int | None = None, name: str | None = None, document_files: bool = False) -> Path:
    """Generate one day's claims, store their documents and labels, and drop the file into the inbox.

    With `document_files`, each document is also stored as the file a customer would send (scan, text PDF
    or scanned PDF, `models.docgen`), for the documents job to read; the text layer stays for the features.

    The file appears atomically (written under a dot-name, then renamed), so the sensor
    never sees half a file.
    """
    if fmt not in ("csv", "jsonl"):
        raise ValueError(f"format must be csv or jsonl, not {fmt!r}")
    if not settings.policies_path.exists():
        raise FileNotFoundError(f"{settings.policies_path} missing: generate the history first (`aios generate`)")
    settings.ensure_dirs()
    book = Book(pd.read_parquet(settings.policies_path))
    claims, docs = generate_claims(book, date.fromisoformat(day), 1, per_day or settings.claims_per_day,
                                   settings.seed)
    if drift:
        claims = inject_drift(claims)
    store = DocumentStore(settings.documents_dir)
    for ref, text in zip(docs["doc_ref"], docs["text"]):
        store.write(ref, text)
    if document_files:
        from models.docgen import draw_specs, write_documents

        write_documents(draw_specs(claims, docs, settings.seed), settings.documents_dir, settings.seed)
    labels_dir = settings.data_dir / "labels"
    labels_dir.mkdir(parents=True, exist_ok=True)
    claims[["claim_id", "is_fraud", "label_available_at"]].to_parquet(labels_dir / f"{day}.parquet")
    records = to_inbox_records(claims)
    if malformed:
        records = inject_malformed(records, malformed, settings.seed)
    name = name or f"claims-{day}.{fmt}"
    tmp = settings.inbox_dir / f".{name}.tmp"
    if fmt == "csv":
        records.to_csv(tmp, index=False)
    else:
        records.to_json(tmp, orient="records", lines=True, date_format="iso")
    dest = settings.inbox_dir / name
    tmp.replace(dest)
    return dest
