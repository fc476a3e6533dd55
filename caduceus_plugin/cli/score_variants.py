"""``caduceus score-variants``: masked-LM log-likelihood ratios and embedding distances for VCF variants.

caduceus score-variants --fasta genome.fa --vcf variants.vcf.gz --out scores.parquet [--window 1536]
"""

from __future__ import annotations

import argparse

from caduceus_plugin.cli.args import add_inference_arguments, matmul_precision, run_options
from caduceus_plugin.cli.args import positive_int as _positive_int


def _run(args: argparse.Namespace) -> int:
    from caduceus_plugin.jobs.variants import score_variants

    with matmul_precision(args):
        table = score_variants(
            args.fasta,
            args.vcf,
            args.out,
            window=args.window,
            **run_options(args),
        )
    if table is None:  # a DDP rank other than 0: rank 0 reports
        return 0
    counts = dict(table["status"].value_counts().iter_rows())
    parts = [f"{counts.get('ok', 0)} scored"]
    if counts.get("ref_mismatch"):
        parts.append(f"{counts['ref_mismatch']} REF mismatches (not scored)")
    if counts.get("skipped"):
        parts.append(f"{counts['skipped']} skipped")
    print(f"wrote {len(table)} alleles to {args.out}: {', '.join(parts)} (see columns status and reason)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "score-variants",
        help="zero-shot variant scores: masked-LM log-likelihood ratio and embedding distance",
        description="For each VCF allele (multi-allelic records split): llr = log p(alt) - log p(ref) at the "
        "masked variant position, averaged over both strands (SNVs), and emb_l2 / emb_cosine = distance between "
        "the ref and alt windows' RC-invariant features averaged over --window bp around the variant (SNVs and "
        "indels). REF is checked against the FASTA; mismatches are reported, not scored.",
    )
    add_inference_arguments(p, "Caduceus checkpoint directory (default: the built-in model)", unit="variants")
    p.add_argument("--vcf", required=True, help="variants (VCF, plain or bgzip)")
    p.add_argument("--out", required=True, help="output: a table (.parquet, .tsv) or the input VCF annotated with "
                   "CADUCEUS_* INFO fields (.vcf.gz: bgzipped and tabix-indexed)")
    p.add_argument(
        "--window", type=_positive_int, metavar="N", help="feature-averaging window in bp (default min(1536, seq-len))"
    )
    p.add_argument("--format", choices=("parquet", "tsv", "vcf"), help="default: from the --out suffix")
    p.set_defaults(func=_run)
