"""The ``caduceus`` command line: :func:`main` (see :mod:`caduceus_plugin.cli.main`); one module per command."""

from __future__ import annotations

from caduceus_plugin.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
