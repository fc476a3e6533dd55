"""Atomic writes, the one home of them: build under a temporary name beside the target, then rename into place.

A failure (or an interrupt) leaves the target as it was and no temporary file behind, so no command ever leaves a
half-written output. Files get the usual permissions for the process umask (not ``mkstemp``'s 0600), directories
likewise (not ``mkdtemp``'s 0700).

* :func:`atomic_write` / :func:`atomic_write_text` / :func:`atomic_write_json` / :func:`atomic_copy`: one file;
* :func:`atomic_paths`: several files that appear together (all renamed after the block succeeds);
* :func:`atomic_directory`: a whole directory (a checkpoint, an exported kipoi model), optionally replacing one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def umask() -> int:
    """The process umask (read without changing it for longer than the call)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_paths(targets: list[Path], suffix: str = ".tmp") -> Iterator[list[Path]]:
    """Temporary paths beside ``targets``; renamed onto them when the block succeeds, deleted when it fails.

    The temporary names are ``.<target name>.<random><suffix>``: pass a ``suffix`` such as ``".tmp.vcf.gz"`` for
    tools that look at a file's extension (tabix does).
    """
    tmps: list[Path] = []
    try:
        for target in targets:
            fd, tmp = tempfile.mkstemp(prefix=f".{Path(target).name}.", suffix=suffix, dir=Path(target).parent)
            os.close(fd)
            tmps.append(Path(tmp))
        yield tmps
        mode = 0o666 & ~umask()
        for tmp, target in zip(tmps, targets):
            os.chmod(tmp, mode)
            os.replace(tmp, target)
    finally:
        for tmp in tmps:
            tmp.unlink(missing_ok=True)


def atomic_write(target: str | os.PathLike[str], write: Callable[[str], object]) -> None:
    """Call ``write(tmp_path)`` to produce the file, then move it to ``target`` in one step."""
    with atomic_paths([Path(target)]) as (tmp,):
        write(str(tmp))


def atomic_write_text(target: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``target`` atomically."""
    atomic_write(target, lambda p: Path(p).write_text(text, encoding="utf-8"))


def atomic_write_json(target: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as indented JSON (with a final newline) to ``target`` atomically."""
    atomic_write_text(target, json.dumps(data, indent=2) + "\n")


def atomic_copy(source: bytes | str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Copy a file (or write ``bytes``) to ``target`` atomically."""
    if isinstance(source, bytes):
        atomic_write(target, lambda p: Path(p).write_bytes(source))
    else:
        atomic_write(target, lambda p: shutil.copyfile(source, p))


def atomic_directory(
    target: str | os.PathLike[str], build: Callable[[Path], object], replace: bool = False
) -> Path:
    """Call ``build(tmp_dir)`` to fill a new directory, then rename it to ``target``.

    An existing empty ``target`` is replaced; a non-empty one only with ``replace`` (it is moved aside first, put
    back if the rename fails, and deleted afterwards). The target's parent is created when missing.

    Raises:
        FileExistsError: ``target`` is a non-empty directory and ``replace`` is false, or ``target`` is a file.
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"{target} exists and is not a directory")
    if target.is_dir() and any(target.iterdir()) and not replace:
        raise FileExistsError(f"{target} is not empty")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    old: Path | None = None
    try:
        build(tmp)
        tmp.chmod(0o777 & ~umask())
        if target.exists():
            if any(target.iterdir()) and not replace:  # something appeared meanwhile
                raise FileExistsError(f"{target} is not empty")
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            os.replace(target, old / target.name)
        os.replace(tmp, target)
    except BaseException:
        if old is not None and not target.exists():
            os.replace(old / target.name, target)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return target
