"""Fields of a claim document read from its text: type, issuer, number, date, total, currency, IBAN.

Input is what a reader produced (`DocumentReading`: pages of text with a confidence per word, 1.0 for a
PDF text layer); output is each field's value with a confidence in [0, 1] (the lowest word confidence
behind the value, halved when the value does not validate, e.g. an IBAN failing its check digits).
A field the document does not state is None. Nothing here opens files or calls an OCR engine.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import date

FIELDS = ("doc_type", "issuer", "number", "date", "total", "currency", "iban")
SYMBOL_CURRENCY = {"€": "EUR", "$": "USD", "£": "GBP"}
CURRENCY_CODES = ("EUR", "USD", "GBP", "CHF")
# Below this mean word confidence, or with fewer words than this, a page is not a document we can read.
UNREADABLE_MEAN_CONF = 0.40
UNREADABLE_MIN_WORDS = 4

_MONTHS = {m: i + 1 for i, m in enumerate(("january", "february", "march", "april", "may", "june", "july",
                                           "august", "september", "october", "november", "december"))}
_TYPE_KEYWORDS = (  # most specific first: a medical "statement" or "patient bill" is not an invoice
    ("police_report", re.compile(r"\bPOLICE\b|\bINCIDENT\s+REPORT\b", re.I)),
    ("repair_estimate", re.compile(r"\bESTIMATE\b|\bQUOTATION\b", re.I)),
    ("medical_bill", re.compile(r"\bMEDICAL\b|\bPATIENT\b", re.I)),
    ("invoice", re.compile(r"\bINVOICE\b", re.I)),
)
_NUMBER = re.compile(r"^(?:Invoice\s+No\b|Invoice\s+number|Inv\.?\s*#|Estimate\s+No|Estimate\s+number|Quote\s+ref|"
                     r"Bill\s+No|Account\s+number|Statement\s+ref|Report\s+No|Case\s+number|Reference)\s*[:.;]?\s*"
                     r"(?P<v>[A-Z0-9][A-Z0-9/\-]{3,})\s*$", re.I)
_DATE = re.compile(r"^(?:Issue\s+date|Dated|Date)\b\s*[:.;]?\s*(?P<v>.+?)\s*$", re.I)
_TOTAL = re.compile(r"^(?:Total\s+due|Amount\s+due|Grand\s+total|Balance\s+due|Total)\b\s*[:.;]?\s*(?P<v>.+?)\s*$", re.I)
_ISSUED_BY = re.compile(r"^(?:Issued\s+by|From)\s*[:.;]?\s*(?P<v>.+?)\s*$", re.I)
_IBAN = re.compile(r"^IBAN\s*[:.;]?\s*(?P<v>[A-Z]{2}[0-9A-Z ]{12,40})\s*$", re.I)
_MONEY = re.compile(r"^(?P<c1>[A-Z]{3}|[€$£])?\s*(?P<n>[0-9][0-9.,' ]*[0-9])\s*(?P<c2>[A-Z]{3}|[€$£])?$")
_ITEM = re.compile(r"^(?P<name>[A-Za-z][A-Za-z \-/&]+?)\s+(?P<m>(?:[A-Z]{3}|[€$£])?\s*[0-9][0-9.,' ]*[0-9]\s*"
                   r"(?:[A-Z]{3}|[€$£])?)$")


@dataclass(frozen=True)
class Word:
    """One word as read, with the reader's confidence in [0, 1]."""

    text: str
    conf: float


@dataclass(frozen=True)
class Page:
    """One page's text in reading order, its words with confidences, and where the text came from."""

    text: str
    words: tuple[Word, ...]
    source: str  # "text_layer" or "ocr"

    @property
    def mean_conf(self) -> float:
        """Mean word confidence (0 for a page without words)."""
        return sum(w.conf for w in self.words) / len(self.words) if self.words else 0.0


@dataclass(frozen=True)
class DocumentReading:
    """What a reader made of one file: its pages, or why it could not be read (never an exception)."""

    path: str
    pages: tuple[Page, ...]
    status: str  # "read" or "unreadable"
    reason: str | None = None
    seconds: float = 0.0
    phash: str | None = None  # perceptual hash of the first page image (None for a text layer)

    @property
    def text(self) -> str:
        """All pages' text, pages separated by a form feed."""
        return "\f".join(p.text for p in self.pages)

    @property
    def mean_conf(self) -> float:
        """Mean word confidence over all pages (0 when nothing was read)."""
        words = [w for p in self.pages for w in p.words]
        return sum(w.conf for w in words) / len(words) if words else 0.0


@dataclass(frozen=True)
class FieldValue:
    """A field's value, the confidence in it, and the text it was read from."""

    value: str | float | None
    confidence: float
    raw: str = ""


@dataclass
class DocumentFields:
    """The fields of one document (None where it states none), the line-item sum, and the reading's status."""

    path: str
    status: str
    reason: str | None
    fields: dict[str, FieldValue | None] = field(default_factory=dict)
    items_sum: FieldValue | None = None
    mean_conf: float = 0.0
    pages: int = 0
    source: str | None = None  # "text_layer", "ocr" (first page), None when nothing was read
    phash: str | None = None
    seconds: float = 0.0

    def values(self) -> dict[str, object]:
        """Field name → value (None when absent)."""
        return {k: (v.value if v else None) for k, v in self.fields.items()}

    def row(self) -> dict[str, object]:
        """One flat row: each field's value and confidence, the line-item sum, and the reading's facts."""
        out: dict[str, object] = {"path": self.path, "status": self.status, "reason": self.reason,
                                  "pages": self.pages, "source": self.source, "mean_conf": self.mean_conf,
                                  "phash": self.phash, "seconds": self.seconds}
        for k in FIELDS:
            v = self.fields.get(k)
            out[k] = v.value if v else None
            out[f"{k}_conf"] = v.confidence if v else None
        out["items_sum"] = self.items_sum.value if self.items_sum else None
        return out

    def as_dict(self) -> dict:
        """A JSON-ready dict."""
        out = asdict(self)
        out["fields"] = {k: (asdict(v) if v else None) for k, v in self.fields.items()}
        out["items_sum"] = asdict(self.items_sum) if self.items_sum else None
        return out


def unreadable_reason(pages: list[Page]) -> str | None:
    """Why these pages do not make a readable document, or None when they do."""
    words = [w for p in pages for w in p.words]
    if len(words) < UNREADABLE_MIN_WORDS:
        return f"only {len(words)} words found"
    mean = sum(w.conf for w in words) / len(words)
    if mean < UNREADABLE_MEAN_CONF:
        return f"mean word confidence {mean:.2f} below {UNREADABLE_MEAN_CONF}"
    return None


# ---------------------------------------------------------------- value parsers

def parse_amount(text: str) -> float | None:
    """``1,234.50``, ``1.234,50``, ``1'234.50``, ``1 234,50`` or ``1234`` as a number; None when not a number.

    Decimals are the last two digits after a ``.`` or ``,``; thousands are grouped by threes with the
    other separator (``1.2.3`` or ``1,234,50`` are not amounts).
    """
    s = text.strip().replace(" ", "").replace("'", "")
    m = re.fullmatch(r"(?P<int>\d{1,3}(?:(?P<g>[.,])\d{3})(?:(?P=g)\d{3})*|\d+)(?:(?P<d>[.,])(?P<dec>\d{2}))?", s)
    if not m or (m["g"] and m["d"] and m["g"] == m["d"]):
        return None
    whole = re.sub(r"[.,]", "", m["int"])
    return float(f"{whole}.{m['dec']}") if m["dec"] else float(whole)


def parse_money(text: str) -> tuple[float | None, str | None]:
    """An amount with its currency (code, or symbol mapped to its code); (None, None) when not money."""
    m = _MONEY.match(text.strip())
    if not m:
        return None, None
    cur = m.group("c1") or m.group("c2")
    cur = SYMBOL_CURRENCY.get(cur, cur) if cur else None
    if cur is not None and cur not in CURRENCY_CODES:
        cur = None
    return parse_amount(m.group("n")), cur


def parse_date(text: str) -> str | None:
    """``2026-11-20``, ``20/11/2026``, ``20.11.2026`` or ``November 20, 2026`` as an ISO date; None otherwise."""
    s = text.strip()
    try:
        if m := re.fullmatch(r"(\d{4})-(\d{1,2})-(\d{1,2})", s):
            return date(int(m[1]), int(m[2]), int(m[3])).isoformat()
        if m := re.fullmatch(r"(\d{1,2})[/.](\d{1,2})[/.](\d{4})", s):
            return date(int(m[3]), int(m[2]), int(m[1])).isoformat()
        if m := re.fullmatch(r"([A-Za-z]+)\.?\s+(\d{1,2}),?\s+(\d{4})", s):
            month = _MONTHS.get(m[1].lower())
            return date(int(m[3]), month, int(m[2])).isoformat() if month else None
    except ValueError:
        return None
    return None


_DIGIT_LOOKALIKES = str.maketrans({"O": "0", "D": "0", "I": "1", "L": "1", "S": "5", "B": "8", "Z": "2"})


def repair_iban(iban: str) -> str | None:
    """An IBAN whose OCR misread digits (O for 0, I for 1, ...) are put back, if the check digits then agree.

    Only the check digits and an all-digit BBAN are repaired (the IBANs of the countries we see carry
    digits there); the mod-97 check makes a wrong repair vanishingly unlikely.
    """
    fixed = iban[:2] + iban[2:].translate(_DIGIT_LOOKALIKES)
    return fixed if fixed != iban and iban_valid(fixed) else None


def iban_valid(iban: str) -> bool:
    """True when the IBAN's check digits are right (ISO 13616 mod 97)."""
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{8,30}", iban):
        return False
    moved = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


# ---------------------------------------------------------------- lines with confidences

def _lines(page: Page) -> list[tuple[str, list[float]]]:
    """Each non-empty line with the confidence of each of its tokens (aligned to the page's words in order)."""
    raw = [ln.strip() for ln in page.text.replace("\r", "").split("\n")]
    tokens = [ln.split() for ln in raw]
    n = sum(len(t) for t in tokens)
    confs = [w.conf for w in page.words]
    aligned = len(confs) == n
    fallback = page.mean_conf
    out, k = [], 0
    for ln, toks in zip(raw, tokens):
        if not toks:
            continue
        cs = confs[k:k + len(toks)] if aligned else [fallback] * len(toks)
        k += len(toks)
        out.append((ln, cs))
    return out


def _conf(line: str, confs: list[float], value: str) -> float:
    """The lowest confidence among the tokens of `line` that carry `value`."""
    toks = line.split()
    vtoks = set(value.split())
    picked = [c for t, c in zip(toks, confs) if t in vtoks or any(v in t for v in vtoks)]
    return round(min(picked or confs), 3)


def extract_fields(reading: DocumentReading) -> DocumentFields:
    """The document's fields from a reading; an unreadable reading gives no fields, only its reason."""
    out = DocumentFields(path=reading.path, status=reading.status, reason=reading.reason,
                         fields={k: None for k in FIELDS}, mean_conf=round(reading.mean_conf, 3),
                         pages=len(reading.pages), source=reading.pages[0].source if reading.pages else None,
                         phash=reading.phash, seconds=reading.seconds)
    if reading.status != "read":
        return out
    lines = [lc for p in reading.pages for lc in _lines(p)]
    f = out.fields
    title_idx = None
    for i, (ln, cs) in enumerate(lines[:8]):
        for doc_type, rx in _TYPE_KEYWORDS:
            if rx.search(ln) and ln.upper() == ln:  # titles are printed in capitals
                f["doc_type"] = FieldValue(doc_type, _conf(ln, cs, rx.search(ln).group(0)), ln)
                title_idx = i
                break
        if title_idx is not None:
            break
    items: list[tuple[float, float]] = []
    total_seen = False
    for i, (ln, cs) in enumerate(lines):
        if f["issuer"] is None and (m := _ISSUED_BY.match(ln)):
            f["issuer"] = FieldValue(m["v"], _conf(ln, cs, m["v"]), ln)
        elif f["number"] is None and (m := _NUMBER.match(ln)):
            f["number"] = FieldValue(m["v"].upper(), _conf(ln, cs, m["v"]), ln)
        elif f["date"] is None and (m := _DATE.match(ln)):
            iso = parse_date(m["v"])
            f["date"] = FieldValue(iso, _conf(ln, cs, m["v"]), ln) if iso else None
        elif f["total"] is None and (m := _TOTAL.match(ln)):
            amount, cur = parse_money(m["v"])
            if amount is not None:
                f["total"] = FieldValue(amount, _conf(ln, cs, m["v"]), ln)
                total_seen = True
                if cur:
                    f["currency"] = FieldValue(cur, _conf(ln, cs, m["v"]), ln)
        elif f["iban"] is None and (m := _IBAN.match(ln)):
            iban = re.sub(r"\s", "", m["v"]).upper()
            conf = _conf(ln, cs, m["v"])
            if not iban_valid(iban):
                repaired = repair_iban(iban)
                iban, conf = (repaired, conf * 0.9) if repaired else (iban, conf * 0.5)
            f["iban"] = FieldValue(iban, round(conf, 3), ln)
        elif not total_seen and (m := _ITEM.match(ln)):
            amount, _ = parse_money(m["m"])
            if amount is not None:
                items.append((amount, _conf(ln, cs, m["m"])))
    if f["issuer"] is None:
        for i, (ln, cs) in enumerate(lines[:4]):
            if i != title_idx and not any(rx.match(ln) for rx in (_NUMBER, _DATE, _TOTAL)):
                f["issuer"] = FieldValue(ln, _conf(ln, cs, ln), ln)
                break
    if items:
        out.items_sum = FieldValue(round(sum(a for a, _ in items), 2), min(c for _, c in items), "")
    return out


def fold_accents(text: str) -> str:
    """`text` without diacritics (``Zürich`` → ``Zurich``)."""
    import unicodedata

    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def compare_to_truth(fields: DocumentFields, truth: dict) -> dict[str, bool]:
    """Per field: whether the value read equals the ground truth exactly (amounts to the cent).

    The issuer is compared without diacritics: Tesseract's English model reads ``ä`` as ``a``.
    """
    got = fields.values()
    out = {}
    for k in FIELDS:
        want, have = truth.get(k), got.get(k)
        if k == "total" and want is not None and have is not None:
            out[k] = round(float(have), 2) == round(float(want), 2)
        elif k == "issuer" and want is not None and have is not None:
            out[k] = fold_accents(str(have)) == fold_accents(str(want))
        else:
            out[k] = have == want
    return out
