"""The document store: claim documents by reference (a folder here; an object store in production).

Two namespaces. The shared one (`<root>/<ref>.txt`) holds documents the insurer's own intake put there
(the batch path's documents). A claim's own one (`<root>/claims/<claim_id>/<ref>.txt`) holds documents sent
with that claim through the API: an API caller can only ever write into the namespace of a claim it owns,
so nothing it sends can change another claim's evidence. Reads for a claim look in its own namespace
first, then in the shared one; the batch path reads only the shared one. References and claim ids must be identifiers (`aios.kernel.contracts`),
which keeps every path inside the store.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from aios.kernel.contracts import ID_RULE, is_id

CLAIMS_DIR = "claims"
# The forms a document may be stored in: the file as received first, the legacy text rendering last.
DOCUMENT_SUFFIXES = (".pdf", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".txt")


class DocumentStore:
    """Reads and writes claim documents as text files named by their reference."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @staticmethod
    def _check(what: str, value: str) -> str:
        if not is_id(value) or value == CLAIMS_DIR:
            raise ValueError(f"{what} {value!r} is not an identifier ({ID_RULE})")
        return value

    def _path(self, ref: str) -> Path:
        return self.root / f"{self._check('document reference', ref)}.txt"

    def _claim_path(self, claim_id: str, ref: str) -> Path:
        return (self.root / CLAIMS_DIR / self._check("claim id", claim_id)
                / f"{self._check('document reference', ref)}.txt")

    def write(self, ref: str, text: str) -> None:
        """Store a document in the shared namespace (the insurer's intake only)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._path(ref).write_text(text)

    def read(self, ref: str) -> str | None:
        """The shared document's text, or None when it never reached the store."""
        p = self._path(ref)
        return p.read_text() if p.exists() else None

    def file_of(self, ref: str) -> Path | None:
        """The stored (shared) file of a document in whatever form it arrived (text, image, PDF), or None when
        absent. Ground-truth files written beside generated documents are never returned."""
        self._check("document reference", ref)
        for suffix in DOCUMENT_SUFFIXES:
            p = self.root / f"{ref}{suffix}"
            if p.is_file():
                return p
        return None

    def write_for_claim(self, claim_id: str, ref: str, text: str) -> None:
        """Store a document in the claim's own namespace (replacing the claim's earlier copy, nobody else's)."""
        p = self._claim_path(claim_id, ref)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)

    def read_for_claim(self, claim_id: str, ref: str) -> str | None:
        """The claim's document: its own copy if it has one, else the shared one, else None."""
        own = self._claim_path(claim_id, ref)
        if own.exists():
            return own.read_text()
        return self.read(ref)

    def fetch(self, claims: pd.DataFrame) -> pd.DataFrame:
        """Every readable shared document of the claims (the batch path never reads what API callers sent):
        columns claim_id, doc_ref, text."""
        rows = []
        for claim_id, refs in zip(claims["claim_id"], claims["document_refs"]):
            for ref in refs if isinstance(refs, (list, tuple)) else str(refs or "").split(";"):
                if ref:
                    text = self.read(ref)
                    if text is not None:
                        rows.append((claim_id, ref, text))
        return pd.DataFrame(rows, columns=["claim_id", "doc_ref", "text"])
