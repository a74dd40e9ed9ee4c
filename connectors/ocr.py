"""Reading document files: a PDF's text layer directly, images and scanned PDFs through Tesseract.

The engine is Tesseract 5 in-process (`tesserocr`) with the Debian model files
(`tesseract-ocr-eng`), page segmentation mode 6 (one block: label and value stay on one line),
one thread per process (OMP_THREAD_LIMIT=1; parallelism is one process per core, see `read_many`).
Scanned PDFs are rendered with pypdfium2 at `RENDER_DPI`. A file that cannot be read gives a
`DocumentReading` with status "unreadable" and the reason, never an exception.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

from models.doc_signals import DOC_COLUMNS
from models.page_hash import page_hash
from models.fields import DocumentReading, Page, Word, extract_fields, unreadable_reason

os.environ.setdefault("OMP_THREAD_LIMIT", "1")

TESSDATA = os.environ.get("TESSDATA_PREFIX") or "/usr/share/tesseract-ocr/5/tessdata/"
RENDER_DPI = 300
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}
# A PDF page whose text layer has fewer characters than this is treated as a scan.
MIN_TEXT_LAYER_CHARS = 20


class OcrUnavailable(RuntimeError):
    """Tesseract or its English model is not installed (a deployment defect, not a document defect)."""


class TesseractEngine:
    """One Tesseract API per process, created on first use and reused (creating one costs ~0.1 s)."""

    def __init__(self, tessdata: str = TESSDATA, lang: str = "eng") -> None:
        self.tessdata, self.lang = tessdata, lang
        self._api = None

    def _get(self):
        if self._api is None:
            import tesserocr

            if not Path(self.tessdata, f"{self.lang}.traineddata").exists():
                raise OcrUnavailable(f"no {self.lang}.traineddata in {self.tessdata}: apt-get install "
                                     f"tesseract-ocr tesseract-ocr-{self.lang} (or `make install`)")
            self._api = tesserocr.PyTessBaseAPI(path=self.tessdata, lang=self.lang, psm=tesserocr.PSM.SINGLE_BLOCK)
        return self._api

    def read_image(self, img) -> Page:
        """The text of one page image with each word's confidence (0–1)."""
        api = self._get()
        api.SetImage(img.copy())  # a copy is ~10× faster than an image fresh from a PNG decoder
        text = api.GetUTF8Text()
        words = tuple(Word(w, max(0.0, c) / 100.0) for w, c in api.MapWordConfidences() if w.strip())
        return Page(text=text, words=words, source="ocr")

    def close(self) -> None:
        """Release the engine."""
        if self._api is not None:
            self._api.End()
            self._api = None


def _text_layer_page(text: str) -> Page:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return Page(text=text, words=tuple(Word(w, 1.0) for w in text.split()), source="text_layer")


def _pdf_pages(path: Path, engine: TesseractEngine) -> tuple[list[Page], str | None]:
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(str(path))
    try:
        pages, phash = [], None
        for page in pdf:
            text = page.get_textpage().get_text_range()
            if len(text.strip()) >= MIN_TEXT_LAYER_CHARS:
                pages.append(_text_layer_page(text))
            else:
                img = page.render(scale=RENDER_DPI / 72, grayscale=True).to_pil()
                phash = phash or page_hash(img)
                pages.append(engine.read_image(img))
        return pages, phash
    finally:
        pdf.close()


def read_document(path: str | Path, engine: TesseractEngine | None = None) -> DocumentReading:
    """Read one file (PDF or image) into pages of text with word confidences; unreadable files say why.

    Raises only `OcrUnavailable` (the engine is not installed): a bad file is a signal, a missing
    engine is a broken deployment.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    engine = engine or _default_engine()
    t0 = time.perf_counter()

    def done(pages: list[Page], reason: str | None = None, phash: str | None = None) -> DocumentReading:
        reason = reason or unreadable_reason(pages)
        return DocumentReading(str(path), tuple(pages), "unreadable" if reason else "read", reason,
                               round(time.perf_counter() - t0, 4), phash)

    if not path.is_file():
        return done([], "file not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".pdf":
            pages, phash = _pdf_pages(path, engine)
            return done(pages, phash=phash)
        if suffix in IMAGE_SUFFIXES:
            with Image.open(path) as im:
                im.load()
                grey = im.convert("L")
                return done([engine.read_image(grey)], phash=page_hash(grey))
        if suffix == ".txt":
            return done([_text_layer_page(path.read_text(errors="replace"))])
        return done([], f"unsupported file type {suffix or '(none)'}")
    except OcrUnavailable:
        raise
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        return done([], f"cannot decode: {type(exc).__name__}: {exc}")
    except Exception as exc:  # pdfium raises its own PdfiumError for damaged PDFs
        return done([], f"cannot decode: {type(exc).__name__}: {exc}")


_ENGINE: TesseractEngine | None = None


def _default_engine() -> TesseractEngine:
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = TesseractEngine()
    return _ENGINE


def _read_one(path: str) -> DocumentReading:
    return read_document(path)


def read_many(paths: list[str | Path], processes: int = 1) -> list[DocumentReading]:
    """Read files in order; with `processes` > 1 in that many worker processes (one Tesseract each)."""
    paths = [str(p) for p in paths]
    if processes <= 1 or len(paths) < 2:
        return [read_document(p) for p in paths]
    with ProcessPoolExecutor(max_workers=processes) as pool:
        return list(pool.map(_read_one, paths, chunksize=max(1, len(paths) // (processes * 4))))


def read_claims_documents(claims: pd.DataFrame, store, processes: int = 1) -> pd.DataFrame:
    """Every referenced document of `claims` read from the document store: one row per document.

    Columns are `models.doc_signals.DOC_COLUMNS` plus `path`, `pages`, `seconds` and each field's
    confidence; a reference with no file in the store is a row with status "missing".
    """
    wanted, missing = [], []
    for claim_id, refs in zip(claims["claim_id"], claims["document_refs"]):
        refs = list(refs) if isinstance(refs, (list, tuple)) else [r for r in str(refs or "").split(";") if r]
        for ref in refs:
            path = store.file_of(ref)
            (wanted if path else missing).append((claim_id, ref, path))
    readings = read_many([p for _, _, p in wanted], processes)
    rows = []
    for (claim_id, ref, _), reading in zip(wanted, readings):
        rows.append({"claim_id": claim_id, "doc_ref": ref, **extract_fields(reading).row()})
    for claim_id, ref, _ in missing:
        rows.append({"claim_id": claim_id, "doc_ref": ref, "status": "missing", "reason": "not in the document store"})
    extra = [c for c in ("path", "pages", "seconds", "issuer_conf", "currency_conf", "iban_conf")]
    return pd.DataFrame(rows, columns=[*DOC_COLUMNS, *extra])
