"""Helpers that turn results into Dagster UI metadata."""


import base64

import dagster as dg


def image(png: bytes, alt: str = "plot") -> dg.MetadataValue:
    """A PNG shown inline in the Dagster UI."""
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})")


def counts_table(counts: dict[str, int]) -> dg.MetadataValue:
    """A two-column Markdown table of named counts."""
    rows = "\n".join(f"| {k} | {v} |" for k, v in counts.items())
    return dg.MetadataValue.md(f"| | count |\n|---|---|\n{rows}")
