"""``caduceus export-kipoi NAME OUTDIR [--weights DIR] [--seq-len N] [--force]``: write a kipoi model directory."""

from __future__ import annotations

import argparse

#: Equal to caduceus_plugin.hosts.kipoi.export.DEFAULT_SEQ_LEN (not imported: command modules stay stdlib-only).
DEFAULT_SEQ_LEN = 1024


def _run(args: argparse.Namespace) -> int:
    from caduceus_plugin.hosts.kipoi.export import export_kipoi

    out = export_kipoi(args.name, args.outdir, seq_len=args.seq_len, weights=args.weights, force=args.force)
    print(f"wrote kipoi model {out}")
    print(f"  test:    kipoi test {out} --source dir")
    print(
        f"  predict: kipoi predict {out} --source dir -o out.tsv "
        """--dataloader_args='{"intervals_file": "regions.bed", "fasta_file": "genome.fa"}'"""
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export-kipoi",
        help="write a kipoi model directory (model.yaml, weights, example files) for a model or checkpoint",
        description="Write a self-contained kipoi model directory: kipoiseq SeqIntervalDl (one-hot, float32) in, "
        "RC-invariant pooled embeddings out. Run it with `kipoi predict OUTDIR --source dir ...`.",
    )
    p.add_argument("name", metavar="NAME", help="registered model (caduceus_ps, caduceus_ph) or a checkpoint directory")
    p.add_argument("outdir", metavar="OUTDIR", help="directory to create (must not exist or be empty)")
    p.add_argument("--weights", metavar="DIR", help="checkpoint directory for NAME (default for caduceus_ps: built-in)")
    p.add_argument(
        "--seq-len",
        type=int,
        default=DEFAULT_SEQ_LEN,
        metavar="N",
        help=f"window length cut around each interval's centre (default {DEFAULT_SEQ_LEN})",
    )
    p.add_argument("--force", action="store_true", help="replace OUTDIR if it exists and is not empty")
    p.set_defaults(func=_run)
