"""Ingress sensors: they land what arrives and request runs for it, micro-batched."""
