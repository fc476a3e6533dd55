"""What the jobs share about their outputs: the format a path implies, early path checks, and table writers.

Every writer goes through :mod:`caduceus_plugin.fileio` (temporary name beside the target, then rename), so an
interrupted job leaves no half-written file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from caduceus_plugin.errors import InputError
from caduceus_plugin.fileio import atomic_paths
from caduceus_plugin.genome.files import require_file

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
        name = Path(out).name.lower()
        fmt = "vcf" if name.endswith((".vcf.gz", ".vcf.bgz")) else _SUFFIXES.get(Path(out).suffix.lower())
        if fmt is None:
            suffixes = [s for s, f in _SUFFIXES.items() if f in allowed] + (["vcf.gz"] if "vcf" in allowed else [])
            raise InputError(
                f"cannot tell the output format from {Path(out).name!r}: use a suffix ({', '.join(suffixes)}) or "
                "--format"
            )
    if fmt not in allowed:
        raise InputError(f"output format {fmt!r} is not supported here: choose one of {', '.join(allowed)}")
    return fmt


def check_output_path(
    out: str | os.PathLike[str],
    inputs: Sequence[str | os.PathLike[str] | None] = (),
    files: dict[str, str | os.PathLike[str]] | None = None,
) -> Path:
    """Fail early (before any work) when an input of ``files`` (``{"FASTA": path, ...}``) is missing or a
    directory, when ``out`` cannot be written, or when it would overwrite one of ``files`` or ``inputs`` (which may
    be directories, e.g. a checkpoint) or a file beside one that belongs to it (its ``.fai``/``.gzi``/``.tbi``/``.csi``
    index)."""
    files = files or {}
    for what, path in files.items():
        require_file(path, what)
    out = Path(out)
    target = out.resolve()
    for given in [*files.values(), *inputs]:
        if given is None:
            continue
        src = Path(given).resolve()
        owned = [src, *(src.with_name(src.name + ext) for ext in (".fai", ".gzi", ".tbi", ".csi"))]
        if src.is_dir():
            if target.is_relative_to(src):
                raise InputError(f"--out {out} lies inside the input directory {given}: write it elsewhere")
        elif target in owned:
            raise InputError(f"--out {out} is the input file {given} (or its index): choose another output name")
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


def _merge_bins(starts: np.ndarray, ends: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, ...]:
    """Non-overlapping sorted segments; where bins overlap, the mean of the covering values."""
    bounds = np.unique(np.concatenate([starts, ends]))
    i0, i1 = np.searchsorted(bounds, starts), np.searchsorted(bounds, ends)
    total = np.zeros(len(bounds) + 1)
    count = np.zeros(len(bounds) + 1)
    np.add.at(total, i0, values)
    np.add.at(total, i1, -values)
    np.add.at(count, i0, 1)
    np.add.at(count, i1, -1)
    seg_total, seg_count = np.cumsum(total)[:-2], np.rint(np.cumsum(count)[:-2])
    keep = seg_count > 0
    return bounds[:-1][keep], bounds[1:][keep], seg_total[keep] / seg_count[keep]


def write_bigwig_tracks(
    targets: Sequence[Path],
    sizes: Sequence[tuple[str, int]],
    chroms: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    values: np.ndarray,
) -> None:
    """One bigWig per column of ``values`` ``(M, len(targets))``, over the ``M`` segments ``chroms/starts/ends``
    (clipped to the chromosome sizes; overlapping segments averaged), all files written atomically."""
    import pyBigWig

    with atomic_paths(list(targets)) as tmps:
        for k, tmp in enumerate(tmps):
            bw = pyBigWig.open(str(tmp), "w")
            try:
                bw.addHeader(list(sizes))
                for c, length in sizes:
                    rows = chroms == c
                    if not rows.any():
                        continue
                    s = np.clip(starts[rows], 0, length)
                    e = np.clip(ends[rows], 0, length)
                    v = values[rows, k].astype(np.float64)
                    ok = (e > s) & np.isfinite(v)
                    ms, me, mv = _merge_bins(s[ok], e[ok], v[ok])
                    if len(ms):
                        bw.addEntries([c] * len(ms), ms.tolist(), ends=me.tolist(), values=mv.tolist())
            finally:
                bw.close()


def bigwig_paths(out: str | os.PathLike[str], names: list[str]) -> list[Path]:
    """``<out>.<task>.bw`` per task, where a ``.bw``/``.bigwig`` suffix of ``out`` is dropped first."""
    out = Path(out)
    stem = out.with_suffix("") if out.suffix.lower() in (".bw", ".bigwig") else out
    safe = ["".join(c if c.isalnum() or c in "-_." else "_" for c in n) for n in names]
    return [stem.parent / f"{stem.name}.{n}.bw" for n in safe]
