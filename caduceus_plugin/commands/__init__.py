"""Sub-commands of the ``caduceus`` CLI, one module each.

Every module here defines ``register(subparsers)``, which adds its parser and sets ``func`` (called with the
parsed ``argparse.Namespace``; returns the exit status). Modules import only the standard library at top level so
that ``caduceus --help`` stays fast; heavy imports go inside the command function. User errors are raised as
:class:`caduceus_plugin.errors.CaduceusError` (printed as one line, exit status 2).
"""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value
