"""The multimo auto-pilot: a Prefect flow that drives one simulation through its five steps."""

__version__ = "0.1.0"
