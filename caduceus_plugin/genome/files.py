"""Compression sniffing and text opening shared by the FASTA, BED and VCF readers."""

from __future__ import annotations

import gzip
import io
import os
from pathlib import Path

from caduceus_plugin.errors import InputError


def _magic(path: Path, n: int = 18) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(n)


def is_gzip(path: Path) -> bool:
    return _magic(path, 2) == b"\x1f\x8b"


def is_bgzf(path: Path) -> bool:
    """BGZF = gzip with the FEXTRA flag and a ``BC`` extra subfield in the first block header."""
    head = _magic(path)
    return len(head) >= 14 and head[:4] == b"\x1f\x8b\x08\x04" and head[12:14] == b"BC"


UTF8_BOM = b"\xef\xbb\xbf"


def has_utf8_bom(path: Path) -> bool:
    """Whether an uncompressed file starts with a UTF-8 byte-order mark."""
    return _magic(path, 3) == UTF8_BOM


#: Leading bytes of files that users hand in for a FASTA, BED or VCF and that no reader here opens: what the file is
#: and the command that makes a readable one (``{name}``: the file's name). gzip and bgzip are read.
FOREIGN_FORMATS: tuple[tuple[bytes, str, str], ...] = (
    (b"BZh", "bzip2-compressed", "bunzip2 -k {name}"),
    (b"\xfd7zXZ\x00", "xz-compressed", "unxz -k {name}"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed", "unzstd {name}"),
    (b"PK\x03\x04", "a zip archive", "unzip {name}"),
    (b"\x43\x27\x41\x1a", "a UCSC .2bit genome", "twoBitToFa {name} genome.fa"),
)


def require_file(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` as a Path, or :class:`InputError` saying it does not exist, is a directory, or is a compressed or
    binary format that is not read here (:data:`FOREIGN_FORMATS`, with the command that converts it; ``what``:
    "FASTA", "BED", "VCF", ... for the message)."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{what} path {path} is a directory, not a file: give the {what} file itself")
    if not path.is_file():
        raise InputError(f"{what} file {path} does not exist")
    head = _magic(path, 6)
    for magic, kind, fix in FOREIGN_FORMATS:
        if head.startswith(magic):
            how = ("decompress it" if "compressed" in kind else "convert it") + f" with `{fix.format(name=path.name)}`"
            keep = " (bgzip that to keep it compressed)" if "compressed" in kind else ""
            raise InputError(f"{what} {path} is {kind}, which is not read here: {how} and give that file{keep}")
    return path


def open_text(path: str | os.PathLike[str], what: str) -> io.TextIOBase:
    """Open a plain or gzip-compressed text file, or raise :class:`InputError` saying why it cannot be read.

    UTF-8, with a leading byte-order mark dropped (Windows editors and spreadsheets write one; kept, it would be part
    of the first chromosome name).
    """
    path = require_file(path, what)
    if is_gzip(path):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig")  # type: ignore[arg-type]
    return open(path, encoding="utf-8-sig")


def not_utf8_message(path: str | os.PathLike[str], what: str) -> str:
    """Where a text file that failed to decode stops being UTF-8, as one error line with the fix.

    A text stream decodes in chunks, so the :class:`UnicodeDecodeError` it raises cannot say which line is at fault;
    this reads the (plain or gzip) file again line by line to find it. Typical cause: a BED saved by a spreadsheet in
    a Windows code page (``é`` as byte 0xe9).
    """
    path = Path(path)
    opener = gzip.open if is_gzip(path) else open
    with opener(path, "rb") as fh:  # type: ignore[operator]
        for lineno, raw in enumerate(fh, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as err:
                fixed = f"fixed.{what.lower()}"
                return (
                    f"{what} {path} line {lineno} is not UTF-8 text (byte 0x{raw[err.start]:02x} at column "
                    f"{err.start + 1}): save it as UTF-8, e.g. iconv -f cp1252 -t utf-8 {path.name} > {fixed}"
                )
    return f"{what} {path} is not UTF-8 text: save it as UTF-8"  # not reached for a file that failed to decode
