"""The kernel: settings and profiles, the database engine, contracts, canonical JSON, tracing. Imports nothing else of the project."""
