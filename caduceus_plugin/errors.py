"""Exceptions users see. Each carries a one-line message that says what is wrong and how to fix it."""

from __future__ import annotations


class CaduceusError(Exception):
    """Base class: the CLI prints ``error: <message>`` for these, without a traceback."""


class CheckpointError(CaduceusError, ValueError):
    """A checkpoint directory or file that cannot be loaded as it is (missing, corrupt, mismatched)."""


class InputError(CaduceusError, ValueError):
    """Bad user input (arguments, BED/FASTA/VCF contents, output paths)."""


class JobInterrupted(BaseException):
    """Ctrl-C during a command (raised by the CLI's SIGINT handler). Not a KeyboardInterrupt, which Lightning answers
    with a message of its own and ``sys.exit(1)``; the CLI prints one line and exits with status 130."""
