"""`aios documents`: read claim documents (OCR or text layer) into fields, generate sample documents,
and train/register the text triage model. The reading code is the one the pipeline runs."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

documents_app = typer.Typer(help="Claim documents: read (OCR / PDF text layer), generate samples, train triage.",
                            no_args_is_help=True)
console = Console()


def read_files(paths: list[Path], processes: int = 1) -> list[dict]:
    """Per file: its status, document type, fields (value and confidence), seconds and full text."""
    from connectors.ocr import read_many
    from models.fields import extract_fields

    out = []
    for reading in read_many(list(paths), processes):
        fields = extract_fields(reading)
        d = fields.as_dict()
        out.append({"path": d["path"], "status": d["status"], "reason": d["reason"],
                    "doc_type": d["fields"]["doc_type"]["value"] if d["fields"]["doc_type"] else None,
                    "fields": d["fields"], "items_sum": d["items_sum"], "mean_conf": d["mean_conf"],
                    "pages": d["pages"], "source": d["source"], "seconds": d["seconds"], "text": reading.text})
    return out


@documents_app.command("read")
def read(files: list[Path] = typer.Argument(..., help="Document files: PDF, PNG, JPEG, TIFF or text."),
         as_json: bool = typer.Option(False, "--json", help="Print JSON (one object per file) instead of tables."),
         processes: int = typer.Option(1, help="Worker processes (one Tesseract each).")) -> None:
    """Read each file into its document type, fields with confidences, and full text."""
    results = read_files(files, processes)
    if as_json:
        typer.echo(json.dumps(results, indent=1, ensure_ascii=False, default=str))
        return
    for r in results:
        head = f"[bold]{r['path']}[/]  {r['status']}"
        head += f" ({r['reason']})" if r["reason"] else f"  {r['source']}, {r['seconds']:.2f} s, mean conf {r['mean_conf']:.2f}"
        console.print(head)
        if r["status"] != "read":
            continue
        t = Table("field", "value", "confidence")
        for name, f in r["fields"].items():
            t.add_row(name, "" if f is None else str(f["value"]), "" if f is None else f"{f['confidence']:.2f}")
        console.print(t)
        console.print(r["text"].strip(), markup=False, highlight=False)


@documents_app.command("generate")
def generate(out: Path = typer.Argument(..., help="Folder to write documents (and their .truth.json) into."),
             claims: int = typer.Option(20, help="Claims (each 1–3 documents)."),
             day: str = typer.Option("2026-11-20", help="Submission day of the claims."),
             seed: int = typer.Option(7, help="Seed; the same seed gives the same documents.")) -> None:
    """Write a day's generated claim documents as scans, text PDFs and scanned PDFs."""
    from datetime import date

    from models.docgen import draw_specs, write_documents
    from models.generator import generate_claims, make_book

    c, d = generate_claims(make_book(2000, seed), date.fromisoformat(day), 1, claims, seed)
    paths = write_documents(draw_specs(c, d, seed), out, seed)
    console.print(f"{len(paths)} documents of {len(c)} claims → {out}")


@documents_app.command("train-triage")
def train_triage_cmd(n_train: int = typer.Option(4000, help="Generated training texts."),
                     n_heldout: int = typer.Option(1000, help="Held-out texts in the other wording."),
                     alias: str = typer.Option("champion", help="Registry alias to point at the new version.")) -> None:
    """Train the text triage model, evaluate it on differently worded text, register it (aios-triage@alias)."""
    from aios.kernel.settings import get_settings
    from models.nlp_triage import MODEL_NAME, train_and_evaluate
    from connectors.registry import log_and_register

    s = get_settings()
    s.ensure_dirs()
    with console.status("training the triage heads"):
        model, metrics = train_and_evaluate(n_train, n_heldout, s.seed)
    ref = log_and_register(model, tracking_uri=s.mlflow_uri, artifact_root=s.mlflow_artifacts_dir, name=MODEL_NAME,
                           alias=alias, metrics=metrics, params={**{k: str(v) for k, v in model.params.items()},
                                                                 "triage_version": model.version},
                           experiment="aios-triage")
    t = Table("metric", "held-out value")
    for k, v in metrics.items():
        t.add_row(k, f"{v:.3f}")
    console.print(t)
    console.print(f"registered {ref.name} v{ref.version} @{alias} ({model.version})")
