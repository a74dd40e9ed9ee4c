"""The sync path: one FastAPI app (decision API, review UI, metrics). Never imports Dagster."""
