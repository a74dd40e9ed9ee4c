"""Governance at module boundaries: policy-as-code, the audit ledger, RBAC. Never imports Dagster."""
