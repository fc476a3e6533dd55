"""BED reading (:func:`read_bed`): plain or gzip.

``track``/``browser``/``#`` lines and blank lines are skipped; at least 3 tab-separated columns (0-based,
half-open, ``0 <= start <= end``); columns 4-6 are ``name``, ``score``, ``strand`` (``+``, ``-`` or ``.``); further
columns are kept as ``col7``, ``col8``, ...
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from caduceus_plugin.errors import InputError
from caduceus_plugin.genome.files import not_utf8_message, open_text

BED_NAMES = ("chrom", "start", "end", "name", "score", "strand")
STRANDS = ("+", "-", ".")


@dataclass
class Bed:
    """Intervals of a BED file, in file order. ``columns`` maps a column name to one value per row (strings for
    every column but ``start``/``end``); ``lines`` holds the 1-based line number of each row."""

    path: Path
    columns: dict[str, list[Any]]
    lines: list[int]

    def __len__(self) -> int:
        return len(self.lines)

    @property
    def chrom(self) -> list[str]:
        return self.columns["chrom"]

    @property
    def start(self) -> list[int]:
        return self.columns["start"]

    @property
    def end(self) -> list[int]:
        return self.columns["end"]

    @property
    def strand(self) -> list[str]:
        return [s if s in ("+", "-") else "." for s in self.columns.get("strand", ["."] * len(self))]

    def to_polars(self) -> Any:
        import polars as pl

        schema = {k: (pl.Int64 if k in ("start", "end") else pl.Utf8) for k in self.columns}
        return pl.DataFrame(self.columns, schema=schema)


def _column_name(i: int) -> str:
    return BED_NAMES[i] if i < len(BED_NAMES) else f"col{i + 1}"


def _parse_coord(value: str, what: str, where: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise InputError(f"{where}: {what} {value!r} is not an integer (BED needs chrom, start, end)") from None
    if number < 0:
        raise InputError(f"{where}: {what} {number} is negative (BED coordinates are 0-based, >= 0)")
    return number


def read_bed(path: str | os.PathLike[str]) -> Bed:
    """Read a BED file (plain or gzip). See the module docstring for the accepted format.

    Raises:
        InputError: one line naming the file, the line number and what is wrong.
    """
    path = Path(path)
    rows: list[list[str]] = []
    lines: list[int] = []
    try:
        with open_text(path, "BED") as fh:
            for lineno, raw in enumerate(fh, start=1):
                line = raw.rstrip("\r\n")
                if not line.strip() or line.startswith(("#", "track", "browser")):
                    continue
                fields = line.split("\t") if "\t" in line else line.split()
                where = f"{path.name} line {lineno}"
                if len(fields) < 3:
                    raise InputError(
                        f"{where}: expected at least 3 tab-separated columns (chrom, start, end), found {len(fields)}"
                    )
                start = _parse_coord(fields[1], "start", where)
                end = _parse_coord(fields[2], "end", where)
                if start > end:
                    raise InputError(f"{where}: start {start} is greater than end {end}")
                if len(fields) >= 6 and fields[5] not in STRANDS:
                    raise InputError(f"{where}: strand (column 6) must be +, - or ., found {fields[5]!r}")
                fields[1], fields[2] = start, end  # type: ignore[call-overload]
                rows.append(fields)
                lines.append(lineno)
    except UnicodeDecodeError:
        raise InputError(not_utf8_message(path, "BED")) from None
    except (EOFError, OSError) as err:  # OSError includes gzip.BadGzipFile
        raise InputError(
            f"cannot read BED {path}: {type(err).__name__}: {err}; is it a (gzipped) text BED file?"
        ) from None
    if not rows:
        raise InputError(f"BED {path} has no intervals (it is empty or holds only header lines): nothing to do")
    width = max(len(r) for r in rows)
    columns: dict[str, list[Any]] = {
        _column_name(i): [r[i] if i < len(r) else None for r in rows] for i in range(width)
    }
    return Bed(path=path, columns=columns, lines=lines)
