"""The document store: claim documents by reference (a folder here; an object store in production)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

# The forms a document may be stored in: the file as received first, the legacy text rendering last.
DOCUMENT_SUFFIXES = (".pdf", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".txt")


class DocumentStore:
    """Reads and writes claim documents as text files named by their reference."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, ref: str) -> Path:
        if not ref or "/" in ref or ref.startswith("."):
            raise ValueError(f"document reference {ref!r} is not a plain name")
        return self.root / f"{ref}.txt"

    def write(self, ref: str, text: str) -> None:
        """Store a document."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._path(ref).write_text(text)

    def read(self, ref: str) -> str | None:
        """The document's text, or None when it never reached the store."""
        p = self._path(ref)
        return p.read_text() if p.exists() else None

    def file_of(self, ref: str) -> Path | None:
        """The stored file of a document in whatever form it arrived (text, image, PDF), or None when absent.

        Ground-truth files written beside generated documents are never returned.
        """
        self._path(ref)  # validates the reference
        for suffix in DOCUMENT_SUFFIXES:
            p = self.root / f"{ref}{suffix}"
            if p.is_file():
                return p
        return None

    def fetch(self, claims: pd.DataFrame) -> pd.DataFrame:
        """Every readable document of the claims: columns claim_id, doc_ref, text."""
        rows = []
        for claim_id, refs in zip(claims["claim_id"], claims["document_refs"]):
            for ref in refs if isinstance(refs, (list, tuple)) else str(refs or "").split(";"):
                if ref:
                    text = self.read(ref)
                    if text is not None:
                        rows.append((claim_id, ref, text))
        return pd.DataFrame(rows, columns=["claim_id", "doc_ref", "text"])
