"""``caduceus predict``: predictions (or RC-invariant embeddings) for the intervals of a BED file.

caduceus predict --fasta genome.fa --bed regions.bed --out preds.parquet [--model caduceus_ps] [--weights DIR]
"""

from __future__ import annotations

import argparse

from caduceus_plugin.cli.args import add_inference_arguments, matmul_precision, run_options


def _run(args: argparse.Namespace) -> int:
    from caduceus_plugin.jobs.predict import predict

    with matmul_precision(args):
        result = predict(
            args.fasta,
            args.bed,
            args.out,
            strict=args.strict,
            **run_options(args),
        )
    if result.values is None:  # a DDP rank other than 0: rank 0 reports
        return 0
    p = result.predictor
    n = len(result.intervals)
    off = int(result.intervals["off_chrom_end"].sum())
    what = {"embedding": f"{len(p.names)}-dim embeddings", "tasks": f"{len(p.names)} task predictions"}.get(
        p.output_kind, f"{len(p.names)} tracks of {p.out_len} bins x {p.bin_size} bp"
    )
    print(f"model: {p.describe()}")
    print(f"wrote {n} rows ({what}) to {', '.join(str(x) for x in result.paths)}")
    if off:
        print(f"{off} window(s) ran off a chromosome end: padded with N (column off_chrom_end)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "predict",
        help="predict on the intervals of a BED file (embeddings, task predictions or bigWig tracks)",
        description="Resize each BED interval around its centre to the model's input length, extract it from the "
        "FASTA (reverse complement on the - strand, N beyond chromosome ends), run the model and write one row per "
        "BED line, in order, with the BED's own columns. A Caduceus checkpoint gives RC-invariant mean-pooled "
        "embeddings; a gReLU checkpoint (.ckpt, e.g. from `caduceus train`) gives its task predictions or per-bin "
        "tracks. gReLU .ckpt files are pickles: load only files you trust.",
    )
    add_inference_arguments(
        p,
        "Caduceus checkpoint directory (config.json + model.safetensors) or gReLU .ckpt file (default: the built-in "
        "model)",
        unit="windows",
    )
    p.add_argument("--bed", required=True, help="intervals (BED3+, plain or gzip; strand from column 6)")
    p.add_argument("--out", required=True, help="output file (.parquet, .tsv, .h5; .bw = prefix of per-task bigWigs)")
    p.add_argument("--format", choices=("parquet", "tsv", "h5", "bigwig"), help="default: from the --out suffix")
    p.add_argument("--strict", action="store_true", help="error on windows running off a chromosome (no N padding)")
    p.set_defaults(func=_run)
