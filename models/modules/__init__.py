"""Decision modules: independently released signal sources with declared contracts (see contract.py)."""
