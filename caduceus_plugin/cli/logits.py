"""``caduceus logits``: per-position masked-LM log-probabilities (A, C, G, T) over the intervals of a BED file.

caduceus logits --fasta genome.fa --bed regions.bed --out logits.parquet [--stride 128] [--weights DIR]
"""

from __future__ import annotations

import argparse

from caduceus_plugin.cli.args import add_inference_arguments, matmul_precision, positive_int, run_options


def _run(args: argparse.Namespace) -> int:
    from caduceus_plugin.jobs.logits import logits

    with matmul_precision(args):
        table = logits(
            args.fasta,
            args.bed,
            args.out,
            stride=args.stride,
            **run_options(args),
        )
    if table is None:  # a DDP rank other than 0: rank 0 reports
        return 0
    print(f"wrote {table.height} positions of {table['interval'].n_unique()} intervals to {args.out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "logits",
        help="per-position masked-LM log-probabilities of A/C/G/T (and log p(ref), entropy) over BED intervals",
        description="For every position of every BED interval: log p(A), log p(C), log p(G), log p(T) with that "
        "position masked, in a window of the model's full length (positions taken --stride at a time share a "
        "window centred on them), plus log p(reference base) and the entropy. Rows are in genome orientation "
        "(minus-strand intervals run on the reverse complement and are mapped back). One forward pass per position.",
    )
    add_inference_arguments(p, "Caduceus checkpoint directory (default: the built-in model)", unit="positions")
    p.add_argument("--bed", required=True, help="intervals (BED3+, plain or gzip; strand from column 6)")
    p.add_argument("--out", required=True,
                   help="output: .parquet or .tsv (one row per position), or .bw (OUT.logp_ref.bw, OUT.entropy.bw)")
    p.add_argument("--stride", type=positive_int, default=128, metavar="N",
                   help="positions that share one window, centred on them (default 128; at most the window length)")
    p.add_argument("--format", choices=("parquet", "tsv", "bigwig"), help="default: from the --out suffix")
    p.set_defaults(func=_run)
