"""Orchestration: the Dagster assets, checks, jobs and schedules of the claims vertical."""
