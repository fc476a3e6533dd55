"""Genomic inputs: FASTA through pyfaidx (:mod:`.fasta`), BED (:mod:`.bed`), VCF through pysam (:mod:`.vcf`), and
windows on intervals (:mod:`.regions`). FASTA and VCF files are read only through here."""

from __future__ import annotations

from caduceus_plugin.genome.bed import Bed, read_bed
from caduceus_plugin.genome.fasta import Genome, copy_fasta_renamed, fasta_records, index_fasta, write_fasta
from caduceus_plugin.genome.files import is_bgzf, is_gzip, open_text
from caduceus_plugin.genome.regions import Region, parse_region, resize
from caduceus_plugin.genome.vcf import VariantRow, read_vcf, read_vcf_info, write_vcf

__all__ = [
    "Bed",
    "Genome",
    "Region",
    "VariantRow",
    "copy_fasta_renamed",
    "fasta_records",
    "index_fasta",
    "is_bgzf",
    "is_gzip",
    "open_text",
    "parse_region",
    "read_bed",
    "read_vcf",
    "read_vcf_info",
    "resize",
    "write_fasta",
    "write_vcf",
]
