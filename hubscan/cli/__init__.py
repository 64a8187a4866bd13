"""The ``hubscan`` command line (typer + rich). Each sub-command lives in its own module."""

from __future__ import annotations

from ._app import app, main

__all__ = ["app", "main"]
