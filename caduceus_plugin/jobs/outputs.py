"""What the jobs share about their outputs: the format a path implies, early path checks, and table writers.

Every writer goes through :mod:`caduceus_plugin.fileio` (temporary name beside the target, then rename), so an
interrupted job leaves no half-written file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from caduceus_plugin.errors import InputError
from caduceus_plugin.fileio import atomic_paths

FORMATS = ("parquet", "tsv", "h5", "bigwig")
_SUFFIXES = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".tsv": "tsv",
    ".txt": "tsv",
    ".h5": "h5",
    ".hdf5": "h5",
    ".bw": "bigwig",
    ".bigwig": "bigwig",
}


def output_format(out: str | os.PathLike[str], fmt: str | None, allowed: tuple[str, ...] = FORMATS) -> str:
    """``fmt`` if given, else the format implied by the suffix of ``out``."""
    if fmt is None:
        fmt = _SUFFIXES.get(Path(out).suffix.lower())
        if fmt is None:
            raise InputError(
                f"cannot tell the output format from {Path(out).name!r}: use a suffix "
                f"({', '.join(s for s, f in _SUFFIXES.items() if f in allowed)}) or --format"
            )
    if fmt not in allowed:
        raise InputError(f"output format {fmt!r} is not supported here: choose one of {', '.join(allowed)}")
    return fmt


def check_output_path(out: str | os.PathLike[str]) -> Path:
    """Fail early (before any work) when ``out`` cannot be written."""
    out = Path(out)
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"output directory {parent} does not exist: create it first (mkdir -p {parent})")
    if out.is_dir():
        raise InputError(f"output path {out} is a directory: give a file name")
    if not os.access(parent, os.W_OK):
        raise InputError(f"output directory {parent} is not writable")
    return out


def write_table(table: Any, out: Path, fmt: str) -> None:
    """A polars DataFrame as Parquet or TSV (``fmt``), atomically."""
    with atomic_paths([out]) as (tmp,):
        if fmt == "parquet":
            table.write_parquet(tmp)
        else:
            table.write_csv(tmp, separator="\t")
