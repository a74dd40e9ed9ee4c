"""Use cases: each written once, called by the Dagster assets, the API and the CLI alike."""
