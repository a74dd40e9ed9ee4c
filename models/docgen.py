"""Seeded claim documents as files: invoices, repair estimates, medical bills and police reports.

Each document is drawn as a `DocSpec` (what it says) and written in one of four forms:

- ``clean_image``: a PNG rendered at 300 dpi, straight and sharp;
- ``noisy_scan``: a JPEG at 200–300 dpi, rotated up to ±1.5°, blurred, noisy and JPEG-compressed;
  `DARK_RATE` of them are dark (under-exposed) and `CROPPED_RATE` lose their bottom third;
- ``text_pdf``: a PDF with a text layer (fpdf2);
- ``scanned_pdf``: a degraded scan wrapped in a PDF (image only, no text layer).

Variety: three layouts per type with their own labels, issuers per type, three locales
(``1,234.50`` with ``November 20, 2026``; ``1,234.50`` with ``20/11/2026``; ``1.234,50`` with
``2026-11-20``), currencies as ISO codes or symbols (``€ $ £``; CHF always as a code).

Fraud (claims with ``is_fraud``) shows in the primary bill at these rates, each independently:
  - `FRAUD_RATES["inflated_total"]`: the total is above the sum of the line items;
  - `FRAUD_RATES["predated"]`: the document is dated before the incident;
  - `FRAUD_RATES["reused_number"]`: the bill number was already used by another claim's bill;
  - `FRAUD_RATES["reused_image"]`: the scan is another claim's bill scanned again (a near-duplicate image;
    such a document is always written as a scan, and shows the other bill's fields);
  - `FRAUD_RATES["edited_total"]`: the total is raised after the fact (on images pasted over in another
    font), drawn only for bills without another marker, so its effective rate is lower.
Honest documents carry clerical errors at `CLERICAL_RATE`: a line item a little off the total.

Ground truth per file is written beside it as ``<file>.truth.json``; the reading path never opens it.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

DOC_TYPES = ("invoice", "repair_estimate", "medical_bill", "police_report")
FORMS = ("clean_image", "noisy_scan", "text_pdf", "scanned_pdf")
FORM_P = (0.15, 0.45, 0.25, 0.15)
LOCALES = ("en_US", "en_GB", "de_DE")
SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£"}
FRAUD_RATES = {"inflated_total": 0.30, "predated": 0.20, "reused_number": 0.12, "reused_image": 0.08,
               "edited_total": 0.10}
CLERICAL_RATE = 0.03
DARK_RATE = 0.03
CROPPED_RATE = 0.03
TRUTH_SUFFIX = ".truth.json"

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")  # Debian fonts-dejavu-core
FONTS = ("DejaVuSans.ttf", "DejaVuSansMono.ttf", "DejaVuSerif.ttf", "DejaVuSansCondensed.ttf")
FONT_BOLD = "DejaVuSans-Bold.ttf"

TITLES = {
    "invoice": ("INVOICE", "TAX INVOICE", "INVOICE"),
    "repair_estimate": ("REPAIR ESTIMATE", "ESTIMATE OF REPAIR COSTS", "QUOTATION FOR REPAIRS"),
    "medical_bill": ("MEDICAL BILL", "STATEMENT OF MEDICAL SERVICES", "PATIENT BILL"),
    "police_report": ("POLICE REPORT", "INCIDENT REPORT", "POLICE INCIDENT REPORT"),
}
NUMBER_LABELS = {
    "invoice": ("Invoice No:", "Invoice number:", "Inv. #:"),
    "repair_estimate": ("Estimate No:", "Estimate number:", "Quote ref:"),
    "medical_bill": ("Bill No:", "Account number:", "Statement ref:"),
    "police_report": ("Report No:", "Case number:", "Reference:"),
}
DATE_LABELS = ("Date:", "Issue date:", "Dated:")
TOTAL_LABELS = ("Total:", "Total due:", "Amount due:")
ISSUERS = {
    "invoice": ("Northgate Motor Repairs Ltd", "Hansen Bau GmbH", "Lakeside Hotel", "Bright Plumbing Co",
                "City Glass Services", "Alpine Electrics AG"),
    "repair_estimate": ("Kessler Karosserie GmbH", "Reliable Roofing Ltd", "AutoFix Centre", "Meyer Sanitär KG",
                        "Harbour Boat Works"),
    "medical_bill": ("St Mary Clinic", "Praxis Dr. Weber", "Riverside Physiotherapy", "Central Dental Care",
                     "Clinica San Marco"),
    "police_report": ("Metropolitan Police", "Polizei Berlin Mitte", "County Sheriff Office",
                      "Kantonspolizei Zürich"),
}
ITEMS = {
    "auto": ("Rear bumper", "Tail light assembly", "Paint and labour", "Windscreen", "Side panel repair",
             "Wheel alignment"),
    "home": ("Floor tiles", "Plumbing labour", "Roof tiles", "Pipe replacement", "Drying equipment hire",
             "Electrician call-out"),
    "travel": ("Hotel night", "Taxi fare", "Toiletries and clothing", "Rebooking fee", "Camera repair"),
    "health": ("Consultation", "Physiotherapy session", "X-ray", "Dental treatment", "Prescription lenses",
               "Day surgery"),
}
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")
_IBAN_BANKS = {"DE": 18, "GB": 18, "CH": 17, "FR": 23, "NL": 14}


@dataclass
class DocSpec:
    """What one document says (the ground truth of its fields) and how it is to be drawn."""

    doc_ref: str
    claim_id: str
    doc_type: str
    issuer: str
    number: str
    date: str  # ISO
    currency: str | None
    total: float | None
    items: list[tuple[str, float]] = field(default_factory=list)
    iban: str | None = None
    locale: str = "en_US"
    symbol: bool = False
    layout: int = 0
    font: str = FONTS[0]
    fraud: list[str] = field(default_factory=list)
    clerical: bool = False
    reuse_image_of: str | None = None  # doc_ref whose scan this document re-uses
    edited_from: float | None = None  # the total the edit replaced

    def truth(self) -> dict:
        """The fields a reader should find (None where the type has none) and how the document was made."""
        return {"doc_type": self.doc_type, "issuer": self.issuer, "number": self.number, "date": self.date,
                "total": self.total, "currency": self.currency, "iban": self.iban,
                "meta": {k: v for k, v in asdict(self).items() if k not in
                         ("doc_type", "issuer", "number", "date", "total", "currency", "iban")}}


# ---------------------------------------------------------------- formatting

def format_amount(value: float, locale: str) -> str:
    """`1234.5` as the locale writes it: ``1,234.50`` (en) or ``1.234,50`` (de)."""
    s = f"{value:,.2f}"
    return s.replace(",", "\0").replace(".", ",").replace("\0", ".") if locale == "de_DE" else s


def format_money(value: float, currency: str, locale: str, symbol: bool) -> str:
    """An amount with its currency as the locale writes it (code or symbol, before or after)."""
    num = format_amount(value, locale)
    sym = SYMBOLS.get(currency) if symbol else None
    if sym is None:
        return f"{num} {currency}" if locale == "de_DE" else f"{currency} {num}"
    return f"{num} {sym}" if locale == "de_DE" else f"{sym}{num}"


def format_date(iso: str, locale: str) -> str:
    """An ISO date as the locale writes it: ``November 20, 2026``, ``20/11/2026`` or ``2026-11-20``."""
    d = date.fromisoformat(iso)
    if locale == "en_US":
        return f"{_MONTHS[d.month - 1]} {d.day}, {d.year}"
    if locale == "en_GB":
        return f"{d.day:02d}/{d.month:02d}/{d.year}"
    return d.isoformat()


def make_iban(rng: np.random.Generator) -> str:
    """A random IBAN with valid check digits (ISO 13616 mod 97)."""
    country = str(rng.choice(list(_IBAN_BANKS)))
    bban = "".join(str(int(x)) for x in rng.integers(0, 10, _IBAN_BANKS[country]))
    digits = "".join(str(ord(c) - 55) for c in country) + "00"
    check = 98 - int(bban + digits) % 97
    return f"{country}{check:02d}{bban}"


def group_iban(iban: str) -> str:
    """The IBAN in groups of four, as printed."""
    return " ".join(iban[i:i + 4] for i in range(0, len(iban), 4))


# ---------------------------------------------------------------- drawing specs

def _number(rng: np.random.Generator, doc_type: str, year: int) -> str:
    prefix = {"invoice": ("INV", "RE", "F"), "repair_estimate": ("EST", "KV", "Q"),
              "medical_bill": ("MB", "PAT", "ACC"), "police_report": ("PR", "CASE", "AZ")}[doc_type]
    p = str(rng.choice(prefix))
    n = int(rng.integers(1000, 999_999))
    style = int(rng.integers(0, 3))
    return f"{p}-{year}-{n:06d}" if style == 0 else f"{p}{n}" if style == 1 else f"{p}/{year % 100}/{n}"


def _items(rng: np.random.Generator, product: str, total: float) -> list[tuple[str, float]]:
    k = int(rng.integers(1, 4))
    names = rng.choice(ITEMS[product], size=k, replace=False)
    shares = rng.dirichlet(np.ones(k)) if k > 1 else np.ones(1)
    amounts = [round(float(total * s), 2) for s in shares]
    amounts[-1] = round(total - sum(amounts[:-1]), 2)
    return [(str(n), a) for n, a in zip(names, amounts)]


def primary_type(product: str) -> str:
    """The bill a claim of this product is paid against."""
    return "medical_bill" if product == "health" else "invoice"


def secondary_type(product: str, rng: np.random.Generator) -> str:
    """A supporting document for a claim of this product."""
    if product == "auto":
        return str(rng.choice(["police_report", "repair_estimate"]))
    return {"travel": "police_report", "home": "repair_estimate"}.get(product, "medical_bill")


def draw_specs(claims, docs, seed: int = 7) -> list[DocSpec]:
    """One spec per row of `docs` (claim_id, doc_ref, text) for `claims` (the generator's frames).

    The first document of a claim is its bill (invoice, or medical bill for health), stating the total the
    generator put in its text; the others are supporting documents. Fraud and clerical errors at the module's
    documented rates, drawn from `seed` (the same inputs give the same specs).
    """
    from models.documents import extract_invoice_total

    rng = np.random.default_rng([seed, 1414])
    by_id = claims.set_index("claim_id")
    specs: list[DocSpec] = []
    used_numbers: list[str] = []
    used_refs: list[str] = []
    for claim_id, ref, text in zip(docs["claim_id"], docs["doc_ref"], docs["text"]):
        c = by_id.loc[claim_id]
        product, currency = str(c["claim_type"]), str(c["currency"])
        incident = date.fromisoformat(str(c["incident_date"])[:10])
        primary = ref.endswith("-0")
        doc_type = primary_type(product) if primary else secondary_type(product, rng)
        doc_date = incident + timedelta(days=int(rng.integers(0, 6)))
        total, _ = extract_invoice_total(text) if primary else (None, None)
        if doc_type == "repair_estimate" and total is None:
            total = round(float(c["amount"]) * float(rng.uniform(0.9, 1.1)), 2)
        if doc_type == "medical_bill" and total is None:
            total = round(float(c["amount"]) * float(rng.uniform(0.2, 0.6)), 2)
        locale = str(rng.choice(LOCALES))
        spec = DocSpec(
            doc_ref=ref, claim_id=claim_id, doc_type=doc_type, issuer=str(rng.choice(ISSUERS[doc_type])),
            number=_number(rng, doc_type, doc_date.year), date=doc_date.isoformat(),
            currency=None if doc_type == "police_report" else currency,
            total=None if doc_type == "police_report" else round(float(total), 2),
            locale=locale, symbol=bool(rng.random() < 0.5), layout=int(rng.integers(0, 3)),
            font=str(rng.choice(FONTS)))
        if spec.total is not None:
            spec.items = _items(rng, product, spec.total)
        if doc_type == "invoice":
            spec.iban = make_iban(rng)
        if primary and bool(c["is_fraud"]):
            draws = {k: bool(rng.random() < p) for k, p in FRAUD_RATES.items()}
            if draws["inflated_total"] and spec.total is not None:
                spec.items = _items(rng, product, round(spec.total / float(rng.uniform(1.2, 1.8)), 2))
                spec.fraud.append("inflated_total")
            if draws["predated"]:
                spec.date = (incident - timedelta(days=int(rng.integers(3, 40)))).isoformat()
                spec.fraud.append("predated")
            if draws["reused_number"] and used_numbers:
                spec.number = used_numbers[int(rng.integers(0, len(used_numbers)))]
                spec.fraud.append("reused_number")
            if draws["reused_image"] and used_refs:
                spec.reuse_image_of = used_refs[int(rng.integers(0, len(used_refs)))]
                spec.fraud.append("reused_image")
            if draws["edited_total"] and spec.total is not None and not spec.fraud:
                spec.edited_from = spec.total
                spec.total = round(spec.total * float(rng.uniform(1.3, 2.0)), 2)
                spec.fraud.append("edited_total")
        elif spec.total is not None and rng.random() < CLERICAL_RATE:
            name, amt = spec.items[0]
            spec.items[0] = (name, round(amt + float(rng.choice([-1, 1]) * rng.uniform(1, 20)), 2))
            spec.clerical = True
        if primary:
            used_numbers.append(spec.number)
            used_refs.append(ref)
        specs.append(spec)
    return specs


# ---------------------------------------------------------------- text of a document

def document_lines(spec: DocSpec) -> list[str]:
    """The document's lines in reading order, as its layout prints them."""
    L = spec.layout
    title = TITLES[spec.doc_type][L]
    number = f"{NUMBER_LABELS[spec.doc_type][L]} {spec.number}"
    dated = f"{DATE_LABELS[L]} {format_date(spec.date, spec.locale)}"
    head = [spec.issuer, "", title, "", number, dated] if L != 1 else [title, "", f"Issued by: {spec.issuer}", number,
                                                                      dated]
    if L == 2:
        head = [spec.issuer, title, "", dated, number]
    body: list[str] = []
    if spec.doc_type == "police_report":
        body = ["", "Nature of incident: reported damage / loss", "Officer on duty: badge 4471",
                "Statement taken from the claimant on site."]
    else:
        body.append("")
        for name, amt in spec.items:
            body.append(f"{name:<28} {format_money(amt, spec.currency, spec.locale, spec.symbol):>18}")
        body.append("")
        body.append(f"{TOTAL_LABELS[L]} {format_money(spec.total, spec.currency, spec.locale, spec.symbol)}")
    if spec.iban:
        body += ["", f"IBAN: {group_iban(spec.iban)}"]
    return head + body


# ---------------------------------------------------------------- rendering

def _font(name: str, px: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(FONT_DIR / name), px)


def render_page(spec: DocSpec, dpi: int = 300) -> Image.Image:
    """The document drawn on a white half-A4 page (8.27 × 5.85 in) at `dpi`, greyscale."""
    w, h = int(8.27 * dpi), int(5.85 * dpi)
    img = Image.new("L", (w, h), 255)
    draw = ImageDraw.Draw(img)
    px = int(11 / 72 * dpi)
    font, bold = _font(spec.font, px), _font(FONT_BOLD, int(px * 1.25))
    x, y = int(0.6 * dpi), int(0.45 * dpi)
    title = TITLES[spec.doc_type][spec.layout]
    for line in document_lines(spec):
        f = bold if line == title else font
        if line:
            draw.text((x, y), line, fill=0, font=f)
        y += int(f.size * 1.45) if line else int(px * 0.6)
    if spec.edited_from is not None:
        _paste_edited_total(img, spec, x, px, dpi)
    return img


def _paste_edited_total(img: Image.Image, spec: DocSpec, x: int, px: int, dpi: int) -> None:
    """Cover the total line's value with a white patch and write the new total in another font."""
    lines = document_lines(spec)
    font = _font(spec.font, px)
    y = int(0.45 * dpi)
    for line in lines:
        if line.startswith(TOTAL_LABELS[spec.layout]):
            label_w = int(font.getlength(TOTAL_LABELS[spec.layout] + " "))
            draw = ImageDraw.Draw(img)
            draw.rectangle([x + label_w - 2, y - 2, x + label_w + int(px * 9), y + int(px * 1.3)], fill=255)
            other = _font("DejaVuSerif.ttf" if spec.font != "DejaVuSerif.ttf" else "DejaVuSans.ttf", px)
            draw.text((x + label_w, y + 1), format_money(spec.total, spec.currency, spec.locale, spec.symbol),
                      fill=25, font=other)
            return
        f_size = int(px * 1.25) if line == TITLES[spec.doc_type][spec.layout] else px
        y += int(f_size * 1.45) if line else int(px * 0.6)


def degrade(img: Image.Image, rng: np.random.Generator, *, dark: bool = False, cropped: bool = False) -> Image.Image:
    """A scan of the page: slight rotation, blur, sensor noise; optionally dark or with its bottom third cut off."""
    out = img.rotate(float(rng.uniform(-1.5, 1.5)), resample=Image.BICUBIC, expand=False, fillcolor=255)
    out = out.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.0))))
    a = np.asarray(out, dtype=np.float32)
    a = a + rng.normal(0, float(rng.uniform(4, 14)), a.shape)
    if dark:
        a = a * 0.22 + 10
    out = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "L")
    if cropped:
        out = out.crop((0, 0, out.width, int(out.height * 0.45)))
    return out


def _jpeg(img: Image.Image, quality: int, dpi: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality, dpi=(dpi, dpi))
    return buf.getvalue()


def write_text_pdf(spec: DocSpec, path: Path) -> None:
    """The document as a PDF with a text layer (what a billing system exports)."""
    from fpdf import FPDF

    pdf = FPDF(orientation="L", unit="mm", format=(148.0, 210.0))
    pdf.set_auto_page_break(False)
    pdf.add_page()
    pdf.add_font("body", fname=str(FONT_DIR / spec.font))
    pdf.add_font("bold", fname=str(FONT_DIR / FONT_BOLD))
    pdf.set_xy(15, 12)
    title = TITLES[spec.doc_type][spec.layout]
    for line in document_lines(spec):
        pdf.set_font("bold" if line == title else "body", size=13 if line == title else 10)
        pdf.set_x(15)
        pdf.cell(0, 5.5 if line else 3, line, new_x="LMARGIN", new_y="NEXT")
    pdf.output(str(path))


def write_document(spec: DocSpec, folder: Path, form: str, rng: np.random.Generator,
                   scans: dict[str, bytes] | None = None, source: DocSpec | None = None) -> Path:
    """Write `spec` in `form` under `folder` with its truth file beside it; returns the document's path.

    `scans` maps doc_ref → the scan bytes already written, so a re-used image is the other claim's scan
    (re-encoded, hence near-duplicate rather than identical); `source` is that other document, whose
    fields the re-used image shows.
    """
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, not {form!r}")
    folder.mkdir(parents=True, exist_ok=True)
    defects: list[str] = []
    if form == "text_pdf":
        path = folder / f"{spec.doc_ref}.pdf"
        write_text_pdf(spec, path)
    else:
        dpi = 300 if form == "clean_image" else int(rng.choice([200, 240, 300]))
        reused = scans.get(spec.reuse_image_of) if scans and spec.reuse_image_of else None
        is_copy = reused is not None or source is not None
        if reused is not None:
            page = Image.open(io.BytesIO(reused)).convert("L")
        elif source is not None:  # the other bill was a text PDF: this is a scan of its printout
            page = render_page(source, dpi)
        else:
            page = render_page(spec, dpi)
        if form == "clean_image":
            data = io.BytesIO()
            page.save(data, "PNG", dpi=(dpi, dpi))
            raw = data.getvalue()
            path = folder / f"{spec.doc_ref}.png"
        else:
            dark, cropped = bool(rng.random() < DARK_RATE), bool(rng.random() < CROPPED_RATE)
            defects = [n for n, f in (("dark", dark), ("cropped", cropped)) if f]
            scan = degrade(page, rng) if is_copy else degrade(page, rng, dark=dark, cropped=cropped)
            raw = _jpeg(scan, int(rng.integers(45, 86)), dpi)
            path = folder / f"{spec.doc_ref}.{'jpg' if form == 'noisy_scan' else 'pdf'}"
            if form == "scanned_pdf":
                buf = io.BytesIO()
                Image.open(io.BytesIO(raw)).save(buf, "PDF", resolution=float(dpi))
                path.write_bytes(buf.getvalue())
        if form != "scanned_pdf":
            path.write_bytes(raw)
        if scans is not None:
            scans[spec.doc_ref] = raw
    truth = spec.truth()
    if source is not None and form != "text_pdf":
        truth = {**source.truth(), "meta": truth["meta"]}
        truth["meta"]["shows_fields_of"] = source.doc_ref
    truth["meta"].update(form=form, defects=defects)
    Path(str(path) + TRUTH_SUFFIX).write_text(json.dumps(truth, indent=1, ensure_ascii=False))
    return path


def write_documents(specs: list[DocSpec], folder: Path, seed: int = 7,
                    forms: tuple[str, ...] | None = None) -> list[Path]:
    """Write every spec in a form drawn at `FORM_P` (or cycling through `forms`); returns the paths in order."""
    rng = np.random.default_rng([seed, 2828])
    scans: dict[str, bytes] = {}
    by_ref = {s.doc_ref: s for s in specs}
    paths = []
    for i, spec in enumerate(specs):
        form = forms[i % len(forms)] if forms else str(rng.choice(FORMS, p=FORM_P))
        source = by_ref.get(spec.reuse_image_of) if spec.reuse_image_of else None
        if source is not None and form == "text_pdf":
            form = "noisy_scan"  # a re-used image is a scan by definition
        paths.append(write_document(spec, folder, form, rng, scans, source))
    return paths


def read_truth(path: Path) -> dict | None:
    """The ground truth written beside a generated document (for benchmarks and tests only)."""
    t = Path(str(path) + TRUTH_SUFFIX)
    return json.loads(t.read_text()) if t.exists() else None
