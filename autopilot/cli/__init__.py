"""The `autopilot` command line (`app`) and its live status view (`watch`)."""

from autopilot.cli.app import app, main

__all__ = ["app", "main"]
