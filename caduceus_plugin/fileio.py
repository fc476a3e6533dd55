"""Atomic file writes: write under a temporary name in the target's directory, then rename over the target.

A failure (or an interrupt) leaves the target as it was and no temporary file behind, so no command ever leaves a
half-written output. The file gets the usual permissions for the process umask (not ``mkstemp``'s 0600).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(target: str | os.PathLike[str], write: Callable[[str], object]) -> None:
    """Call ``write(tmp_path)`` to produce the file, then move it to ``target`` in one step."""
    target = Path(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(target: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``target`` atomically."""
    atomic_write(target, lambda p: Path(p).write_text(text))
