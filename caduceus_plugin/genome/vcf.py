"""VCF reading through pysam (:func:`read_vcf`): plain or gzip/bgzip; multi-allelic records are split into one row
per ALT allele. :func:`read_vcf_info` gives one INFO field per record; :func:`write_vcf` writes rows back as a
sites-only VCF."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from caduceus_plugin.errors import InputError
from caduceus_plugin.genome.files import UTF8_BOM, has_utf8_bom, is_bgzf, is_gzip, open_text, require_file


@dataclass
class VariantRow:
    """One (split) VCF allele. ``pos`` is 1-based as in the VCF; ``allele`` is the ALT index (1 = first ALT)."""

    chrom: str
    pos: int
    id: str
    ref: str
    alt: str
    allele: int
    n_alts: int


def read_vcf(path: str | os.PathLike[str]) -> list[VariantRow]:
    """All records of a VCF (plain or gzip/bgzip), one row per ALT allele (multi-allelic records split).

    Raises:
        InputError: missing or unreadable file, no records.
    """
    path = require_file(path, "VCF")
    with _variant_file(path) as vcf:
        rows = list(_iter_vcf(vcf, path))
    if not rows:
        raise InputError(f"VCF {path} has no variant records: nothing to score")
    return rows


def _iter_vcf(vcf: Any, path: Path) -> Iterator[VariantRow]:
    n_read = 0
    try:
        for rec in vcf:
            n_read += 1
            alts = rec.alts or (".",)
            for i, alt in enumerate(alts, start=1):
                yield VariantRow(
                    chrom=rec.chrom,
                    pos=int(rec.pos),
                    id=rec.id or ".",
                    ref=(rec.ref or "").upper(),
                    alt=alt.upper() if alt and not alt.startswith("<") else alt,
                    allele=i,
                    n_alts=len(alts),
                )
    except (ValueError, OSError) as err:
        raise InputError(f"cannot read VCF {path}: {_bad_record(path, n_read + 1)} ({err})") from None


@contextlib.contextmanager
def _variant_file(path: Path, mode: str = "r", **kwargs: Any) -> Iterator[Any]:
    """A pysam ``VariantFile`` with htslib's warnings silenced; a file that cannot be opened is an InputError."""
    import pysam

    with contextlib.ExitStack() as stack:
        source = path
        if mode == "r" and path.is_file() and ((is_gzip(path) and not is_bgzf(path)) or has_utf8_bom(path)):
            # plain gzip (not bgzip): htslib cannot seek in it; a byte-order mark (Windows editors) hides the
            # ##fileformat line from it. Read a temporary plain copy instead.
            source = stack.enter_context(_plain_copy(path))
        verbosity = pysam.set_verbosity(0)
        stack.callback(pysam.set_verbosity, verbosity)
        try:
            vcf = pysam.VariantFile(str(source), mode, **kwargs)
        except (ValueError, OSError, NotImplementedError) as err:
            problem = _header_problem(path) if mode == "r" else None
            if problem:
                raise InputError(f"VCF {path} is not a valid VCF: {problem}") from None
            raise InputError(f"cannot read VCF {path} ({err}); is it a (bgzipped) VCF with a #CHROM header?") from None
        with vcf:
            yield vcf


RECORD_COLUMNS = "CHROM POS ID REF ALT QUAL FILTER INFO"


def _bad_record(path: Path, k: int) -> str:
    """Where and why htslib stopped at the ``k``-th record (1-based), found by reading the text again: htslib says
    only "unable to parse next record". A file that cannot be read again (truncated gzip) gets the record number."""
    try:
        with open_text(path, "VCF") as fh:
            seen = 0
            for lineno, line in enumerate(fh, start=1):
                if line.startswith("#"):
                    continue
                seen += 1
                if seen == k:
                    fields = line.rstrip("\r\n").split("\t")
                    if len(fields) < 8:
                        why = f"{len(fields)} tab-separated column(s), a record needs 8 ({RECORD_COLUMNS})"
                    elif not fields[1].isdigit():
                        why = f"POS {fields[1]!r} is not a whole number"
                    else:
                        why = "htslib cannot parse it"
                    return f"line {lineno} (record {k}): {why}"
    except (OSError, EOFError, UnicodeDecodeError):
        pass
    return f"record {k} cannot be parsed"


def _header_problem(path: Path) -> str | None:
    """What is wrong with a VCF's header, for the message when htslib refuses the file; None when it looks fine."""
    try:
        with open_text(path, "VCF") as fh:
            first = fh.readline()
            if not first.startswith("##fileformat=VCF"):
                return (f"its first line is not ##fileformat=VCFv4.x (found {first.strip()[:40]!r}): a VCF needs a "
                        f"header of ## lines and a tab-separated #CHROM line ({RECORD_COLUMNS.replace(' ', ', ')})")
            for line in fh:
                if not line.startswith("##"):
                    if not line.startswith("#CHROM"):
                        return "the ## header lines are not followed by a #CHROM line"
                    if "\t" not in line:
                        return "its #CHROM header line is not tab-separated (spaces?): VCF columns are tab-separated"
                    return None
    except (OSError, EOFError, UnicodeDecodeError):
        return None
    return "it has ## header lines but no #CHROM line"


@contextlib.contextmanager
def _plain_copy(path: Path, header: str | None = None) -> Iterator[Path]:
    """A temporary uncompressed copy of ``path`` (plain or gzip) without a leading UTF-8 byte-order mark; with
    ``header`` (the text of a complete VCF header, ``#CHROM`` line included), that header replaces the file's own
    ``#`` lines and the records are copied as they are."""
    import gzip
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory(prefix="caduceus-vcf-") as tmp:
        plain = Path(tmp) / (path.name[: -len(".gz")] if path.name.endswith(".gz") else path.name + ".vcf")
        try:
            with (gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")) as src, open(plain, "wb") as dst:
                if src.peek(len(UTF8_BOM))[: len(UTF8_BOM)] == UTF8_BOM:
                    src.read(len(UTF8_BOM))
                if header is not None:
                    dst.write(header.encode() if header.endswith("\n") else (header + "\n").encode())
                    for line in src:
                        if not line.startswith(b"#"):
                            dst.write(line)
                            break
                shutil.copyfileobj(src, dst)
        except (OSError, EOFError) as err:
            if isinstance(err, (EOFError, gzip.BadGzipFile)):
                raise InputError(f"cannot decompress VCF {path} ({err}): is the gzip file complete?") from None
            # the input was readable a moment ago: writing the copy failed (a full or read-only temporary folder)
            raise InputError(
                f"cannot copy VCF {path} to a temporary plain file in {tmp} ({err}); "
                "point TMPDIR at a folder with room"
            ) from None
        yield plain


def read_vcf_info(path: str | os.PathLike[str], key: str) -> list[tuple[Any, ...]]:
    """The INFO field ``key`` of every record of a VCF (plain or gzip/bgzip), in file order: one tuple per record
    (not per split row of :func:`read_vcf`; a row's ``allele - 1`` indexes a per-ALT ``Number=A`` field), ``()``
    where the record lacks the field, ``None`` for a missing value (``.``).

    htslib holds ``Float`` fields in 32 bits; they come back as the float64 of their shortest decimal form, which is
    the number written in the file whenever that has at most 6 significant digits.

    Raises:
        InputError: missing or unreadable file, or ``key`` not declared in the header.
    """
    import numpy as np

    path = require_file(path, "VCF")
    out: list[tuple[Any, ...]] = []
    with _variant_file(path) as vcf:
        if key not in vcf.header.info:
            raise InputError(f"VCF {path} declares no INFO field {key!r} in its header")
        is_float = vcf.header.info[key].type == "Float"
        try:
            for rec in vcf:
                value = rec.info.get(key)
                values = () if value is None else value if isinstance(value, tuple) else (value,)
                if is_float:
                    values = tuple(None if v is None else float(str(np.float32(v))) for v in values)
                out.append(values)
        except (ValueError, OSError) as err:
            raise InputError(f"cannot read VCF {path}: {err}") from None
    return out


def write_vcf(path: str | os.PathLike[str], rows: Sequence[VariantRow]) -> int:
    """Write ``rows`` as a sites-only VCF through pysam: one record per row (CHROM, POS, ID, REF, ALT; no QUAL,
    FILTER or INFO), contigs declared in order of first use; bgzip when ``path`` ends with ``.gz``, else plain text.
    Returns the number of records written."""
    import pysam

    header = pysam.VariantHeader()
    for chrom in dict.fromkeys(r.chrom for r in rows):
        header.contigs.add(chrom)
    mode = "wz" if str(path).endswith(".gz") else "w"
    with _variant_file(Path(path), mode, header=header) as vcf:
        for r in rows:
            alleles = (r.ref,) if r.alt in ("", ".") else (r.ref, r.alt)
            rec = vcf.new_record(contig=r.chrom, start=r.pos - 1, alleles=alleles, id=None if r.id == "." else r.id)
            vcf.write(rec)
    return len(rows)


#: INFO fields of an annotated VCF: (table column, INFO id, VCF type, description).
ANNOTATION_FIELDS = (
    ("llr", "CADUCEUS_LLR", "Float", "Caduceus masked-LM log p(ALT) - log p(REF), averaged over strands"),
    ("abs_llr", "CADUCEUS_ABS_LLR", "Float", "Absolute value of CADUCEUS_LLR"),
    ("emb_l2", "CADUCEUS_EMB_L2", "Float", "Euclidean distance of the REF and ALT window embeddings"),
    ("emb_cosine", "CADUCEUS_EMB_COS", "Float", "Cosine distance (1 - cos) of the REF and ALT window embeddings"),
    ("status", "CADUCEUS_STATUS", "String", "scored, or why the allele was not scored"),
)


def _status_code(status: str, reason: str | None) -> str:
    """A VCF-safe status: ``scored`` (possibly ``scored_no_llr``), ``ref_mismatch`` or ``skipped_<reason>``."""
    if status == "ok":
        return "scored" if not reason else "scored_no_llr"
    slug = "".join(c if c.isalnum() else "_" for c in (reason or "")).strip("_").lower()
    slug = "_".join(p for p in slug.split("_") if p)[:48]
    return status if status != "skipped" else f"skipped_{slug or 'unscorable'}"


def write_annotated_vcf(source: str | os.PathLike[str], table: Any, out: Path) -> Path:
    """Copy every record of ``source`` to ``out`` (bgzipped, tabix-indexed), in order, with the INFO fields of
    :data:`ANNOTATION_FIELDS` (``Number=A``: one value per ALT allele, ``.`` where not computed) from ``table``, a
    polars frame with one row per split allele in :func:`read_vcf` order. Both files appear atomically. Records
    with a symbolic ALT get the standard ``END`` field (htslib writes it; it is declared when the input lacks it)."""
    import pysam

    from caduceus_plugin.fileio import atomic_paths

    columns = {col: table[col].to_list() for col, *_ in ANNOTATION_FIELDS if col != "status"}
    status = [_status_code(s, r) for s, r in zip(table["status"].to_list(), table["reason"].to_list())]
    with _variant_file(Path(source)) as vin:
        # A record may use INFO / FORMAT / FILTER keys or a contig the header never declares (hand-made VCFs often
        # do): htslib declares each (as a "Dummy" String) while parsing, but marks such records with an error, and
        # translating one into another header makes htslib end the whole process. So read them all first, and where
        # the header grew, read the records again from a copy whose header declares everything.
        declared = str(vin.header)
        for _ in vin:
            pass
        complete = str(vin.header)
        header = vin.header.copy()
    for _, key, kind, text in ANNOTATION_FIELDS:
        if key in header.info:  # re-annotating an annotated VCF: the new values replace the old ones
            meta = header.info[key]
            if (meta.number, meta.type) != ("A", kind):
                raise InputError(
                    f"VCF {source} already declares INFO {key} as Number={meta.number}, Type={meta.type} (this "
                    f"writes Number=A, Type={kind}): drop it first, e.g. bcftools annotate -x INFO/{key}"
                )
            continue
        header.info.add(key, "A", kind, text)
    if "END" not in header.info:  # htslib writes END for symbolic alleles (<DEL>, ...): it must be declared
        header.info.add("END", 1, "Integer", "End position of the variant (0-based exclusive = 1-based last)")
    with contextlib.ExitStack() as stack:
        fixed = Path(source) if complete == declared else stack.enter_context(_plain_copy(Path(source), complete))
        vin = stack.enter_context(_variant_file(fixed))
        with atomic_paths([out, out.with_name(out.name + ".tbi")], suffix=".tmp.vcf.gz") as (tmp, tmp_tbi):
            row = 0
            with pysam.VariantFile(str(tmp), "wz", header=header) as vout:
                for rec in vin:
                    n = len(rec.alts or ()) or 1
                    rec.translate(header)
                    if rec.alts:
                        for col, key, _, _ in ANNOTATION_FIELDS:
                            values = status[row : row + n] if col == "status" else columns[col][row : row + n]
                            rec.info[key] = tuple(values)
                    vout.write(rec)
                    row += n
            pysam.tabix_index(str(tmp), preset="vcf", force=True, index=str(tmp_tbi))
    return out
