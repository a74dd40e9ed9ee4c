"""Stores: every table of the platform and the code that reads and writes it (SQLAlchemy)."""
