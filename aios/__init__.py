"""aios shared kernel: schemas, settings and profiles, hashing, the `aios` CLI. Never imports Dagster."""
