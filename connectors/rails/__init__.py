"""Payment rails: where a payout intent becomes money moved (ISO 20022 files, an HTTP payment API)."""
