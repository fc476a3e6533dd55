"""Windows on intervals, and regions written ``CHR:START-END`` (:func:`parse_region`)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from caduceus_plugin.errors import InputError


def resize(chrom: str, start: int, end: int, width: int) -> tuple[int, int]:
    """A ``width``-bp window centred on ``[start, end)`` (kipoiseq ``Interval.resize`` on genomic coordinates, so
    both strands get the same bases); may extend past the chromosome ends."""
    from kipoiseq import Interval

    window = Interval(chrom, int(start), int(end)).resize(int(width), use_strand=False)
    return int(window.start), int(window.end)


@dataclass(frozen=True)
class Region:
    """A genomic interval, stored 0-based half-open; written as 1-based inclusive ``CHR:START-END``."""

    chrom: str
    start: int
    end: int

    def __str__(self) -> str:
        return f"{self.chrom}:{self.start + 1}-{self.end}"

    def __len__(self) -> int:
        return self.end - self.start


def parse_region(text: str) -> Region:
    """``CHR:START-END`` (1-based, inclusive, commas allowed) -> :class:`Region`.

    Raises:
        InputError: not of that form, or ``START < 1`` or ``END < START``.
    """
    m = re.fullmatch(r"\s*([^:\s]+):([\d,]+)-([\d,]+)\s*", text)
    if not m:
        raise InputError(f"region {text!r} is not CHR:START-END (1-based, inclusive), e.g. 20:1-4000000")
    start, end = int(m.group(2).replace(",", "")), int(m.group(3).replace(",", ""))
    if start < 1 or end < start:
        raise InputError(f"region {text!r}: need 1 <= START <= END")
    return Region(m.group(1), start - 1, end)
