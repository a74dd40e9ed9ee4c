"""Claim validation: the claim contract (pydantic), duplicates, then the business rules (Great Expectations).

Identifiers (claim, policy, customer and document ids) are checked by the contract itself against the one
charset and length of `aios.kernel.contracts` (ID_PATTERN, ID_MAX_LENGTH), so a batch file, a bus message
and an API request refuse the same ids with the same reason.

Every failing row is kept with all of its reasons, each naming the field (or the
expectation and column) and why; nothing is dropped.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import pandas as pd
from pydantic import ValidationError

from aios.kernel.contracts import (  # noqa: F401 - ID_* re-exported: the id rule validation applies
    CHANNELS,
    CLAIM_TYPES,
    CURRENCIES,
    ID_MAX_LENGTH,
    ID_PATTERN,
    Claim,
    describe_validation_error,
)

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

MAX_AMOUNT = 1_000_000.0
MAX_PRIOR_CLAIMS = 100
MAX_REPORT_DELAY_DAYS = 3 * 365
MAX_TENURE_DAYS = 120 * 365


@dataclass(frozen=True)
class ValidationResult:
    """Valid claims (typed) and quarantined rows (raw values + reasons)."""

    valid: pd.DataFrame
    quarantined: pd.DataFrame  # claim_id, source, reasons (list[str]), raw (dict)


def _quarantine_id(value: Any) -> str | None:
    """The claim id a quarantine record is filed under: the submitted id when it is usable text, else None
    (the raw row keeps whatever was sent)."""
    if isinstance(value, str) and 0 < len(value) <= 80 and value.isprintable():
        return value
    return None


def _clean(record: dict[str, Any]) -> dict[str, Any]:
    """Blank and NaN values count as absent, so a missing field says 'Field required'."""
    out = {}
    for k, v in record.items():
        if v is None or (isinstance(v, float) and v != v) or (isinstance(v, str) and not v.strip()):
            continue
        out[k] = v
    return out


def _expectations():
    import great_expectations as gx

    E = gx.expectations
    return [
        E.ExpectColumnValuesToBeBetween(column="amount", min_value=0, max_value=MAX_AMOUNT, strict_min=True),
        E.ExpectColumnValuesToBeInSet(column="currency", value_set=list(CURRENCIES)),
        E.ExpectColumnValuesToBeInSet(column="claim_type", value_set=list(CLAIM_TYPES)),
        E.ExpectColumnValuesToBeInSet(column="channel", value_set=list(CHANNELS)),
        E.ExpectColumnValuesToBeBetween(column="customer_tenure_days", min_value=0, max_value=MAX_TENURE_DAYS),
        E.ExpectColumnValuesToBeBetween(column="prior_claims", min_value=0, max_value=MAX_PRIOR_CLAIMS),
        E.ExpectColumnValuesToBeBetween(column="report_delay_days", min_value=0, max_value=MAX_REPORT_DELAY_DAYS),
    ]


def _business_rule_failures(typed: pd.DataFrame) -> dict[int, list[str]]:
    """Row position → reasons, from the Great Expectations suite run on the whole batch at once."""
    import great_expectations as gx

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = ctx.data_sources.add_pandas("claims")
    batch_def = source.add_dataframe_asset("batch").add_batch_definition_whole_dataframe("all")
    suite = ctx.suites.add(gx.ExpectationSuite(name="claims_business_rules"))
    for e in _expectations():
        suite.add_expectation(e)
    frame = typed.reset_index(drop=True)
    result = batch_def.get_batch(batch_parameters={"dataframe": frame}).validate(
        suite, result_format={"result_format": "COMPLETE"})
    failures: dict[int, list[str]] = {}
    for r in result.results:
        if r.success:
            continue
        column = r.expectation_config.kwargs.get("column")
        for pos in r.result.get("unexpected_index_list") or []:
            value = frame.at[pos, column]
            value = value.item() if hasattr(value, "item") else value
            failures.setdefault(int(pos), []).append(
                f"{column}: {r.expectation_config.type} failed (value {value!r})")
    return failures


def validate_claims(raw: pd.DataFrame, source: str = "batch", seen_claim_ids: set[str] | None = None) -> ValidationResult:
    """Split a raw batch into valid claims and quarantined rows with their reasons.

    Checks in order: the claim contract per row (types, required fields, dates), duplicate
    claim ids (the first occurrence wins; ids in `seen_claim_ids` were landed before), then
    the business rules. `source` is recorded on quarantined rows (file name, bus batch id).
    """
    seen = set(seen_claim_ids or ())
    typed_rows: list[dict[str, Any]] = []
    raw_rows: list[dict[str, Any]] = []
    quarantined: list[dict[str, Any]] = []
    for record in raw.to_dict("records"):
        record = {k: (None if (isinstance(v, float) and v != v) else v) for k, v in record.items()}
        row_source = record.pop("_source", None) or source
        if record.get("_parse_error"):
            quarantined.append({"claim_id": None, "source": row_source, "reasons": [str(record["_parse_error"])],
                                "raw": record})
            continue
        if record.get("_reject"):  # refused before validation, e.g. a claim id owned with other content
            reason = str(record.pop("_reject"))
            quarantined.append({"claim_id": record.get("claim_id"), "source": row_source, "reasons": [reason],
                                "raw": {k: v for k, v in record.items() if not k.startswith("_")}})
            continue
        record = {k: v for k, v in record.items() if not k.startswith("_")}
        try:
            claim = Claim.model_validate(_clean(record))
        except ValidationError as err:
            quarantined.append({"claim_id": _quarantine_id(record.get("claim_id")), "source": row_source,
                                "reasons": describe_validation_error(err), "raw": record})
            continue
        if claim.claim_id in seen:
            quarantined.append({"claim_id": claim.claim_id, "source": row_source,
                                "reasons": [f"claim_id: duplicate of an earlier claim {claim.claim_id}"], "raw": record})
            continue
        seen.add(claim.claim_id)
        typed_rows.append(claim.model_dump())
        raw_rows.append({**record, "_source": row_source})
    typed = pd.DataFrame(typed_rows, columns=list(Claim.model_fields))
    if len(typed):
        typed["submitted_at"] = pd.to_datetime(typed["submitted_at"], utc=True).dt.tz_convert(None)
        typed["incident_date"] = pd.to_datetime(typed["incident_date"])
        typed["report_delay_days"] = (typed["submitted_at"].dt.normalize() - typed["incident_date"]).dt.days
        failures = _business_rule_failures(typed)
    else:
        typed["report_delay_days"] = pd.Series(dtype=int)
        failures = {}
    keep = [i for i in range(len(typed)) if i not in failures]
    for pos, reasons in sorted(failures.items()):
        raw_row = dict(raw_rows[pos])
        quarantined.append({"claim_id": typed.at[pos, "claim_id"], "source": raw_row.pop("_source"),
                            "reasons": reasons, "raw": raw_row})
    valid = typed.iloc[keep].drop(columns=["report_delay_days"]).reset_index(drop=True)
    q = pd.DataFrame(quarantined, columns=["claim_id", "source", "reasons", "raw"])
    return ValidationResult(valid=valid, quarantined=q)
