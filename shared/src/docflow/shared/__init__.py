"""Contracts every docflow service shares: names, settings, messages, storage, status.

Nothing in this package imports a stage's heavy libraries (pypdf, torch, lancedb, ...),
so the gateway can depend on it freely.
"""
