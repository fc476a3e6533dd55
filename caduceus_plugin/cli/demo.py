"""``caduceus demo``: the main job on the shipped real demo input (predict + score-variants), or one sequence.

    caduceus demo [--out DIR] [--weights DIR]       predict on the demo TSS and score the demo 1000 Genomes SNVs
    caduceus demo --sequence ACGT...                  embed one sequence
"""

from __future__ import annotations

import argparse
from pathlib import Path

from caduceus_plugin.cli.args import print_compute_paths
from caduceus_plugin.errors import InputError

#: A 200-bp stretch used when no --sequence is given.
DEMO_SEQUENCE = (
    "GGGCGGCGCGGGCGGGCGCGGCGCTATAAAAGGCGCCGCGCCCTTCCGCCGCCCGCCGGCGCAGCGCCATGGCGGAGGAGGCGGAGGCG"
    "GCGGAGCGGGAGCCGAGCGCCGGCAGCGGCAGCTGCGCCCCGACCTCCAGCCCGCGCCGCGCCTCCTGCTGCTGCTCCTGCTCCTGCGC"
    "GCGCTGCTGCGCGGGGCTCTAA"
)


def _cmd_demo(args: argparse.Namespace) -> int:
    if args.sequence is not None:
        return _demo_sequence(args)
    import numpy as np
    import polars as pl

    from caduceus_plugin.demo_data import REAL_REGION, paths
    from caduceus_plugin.genome import read_bed
    from caduceus_plugin.jobs.predict import predict
    from caduceus_plugin.jobs.predictor import load_predictor
    from caduceus_plugin.jobs.variants import score_variants
    from caduceus_plugin.registry.pretrained import builtin_weights

    demo = paths()
    out_dir = Path(args.out)
    if not out_dir.parent.is_dir():
        parent = out_dir.parent
        raise InputError(f"output directory {parent} does not exist: create it first (mkdir -p {parent})")
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--out {out_dir} is a file: give a directory")
    weights = Path(args.weights) if args.weights else builtin_weights()
    predictor = load_predictor(None, weights)
    out_dir.mkdir(exist_ok=True)
    print(f"model: {predictor.source} (RC-invariant pooled embeddings, window {predictor.seq_len} bp)")
    print_compute_paths()
    print(f"input: {demo['fasta'].name} (real GRCh37 sequence at {REAL_REGION}), {demo['tss'].name}, "
          f"{demo['variants'].name}")
    emb_path = out_dir / "tss_embeddings.parquet"
    result = predict(demo["fasta"], demo["tss"], emb_path, predictor=predictor)
    table = pl.read_parquet(emb_path)
    emb = table.select(pl.col("^emb_.*$")).to_numpy()
    print(f"predict: {table.height} BED rows -> {emb_path} ({emb.shape[1]} embedding columns; all finite: "
          f"{bool(np.isfinite(emb).all())})")
    strands = table["strand"].to_list() if "strand" in table.columns else []
    minus = [i for i, s in enumerate(strands) if s == "-"]
    if minus:  # the same windows read from the + strand: identical embeddings for an RC-invariant model
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            plus_bed = Path(tmp) / "plus.bed"
            plus = read_bed(demo["tss"]).to_polars().with_columns(strand=pl.lit("+"))
            plus.write_csv(plus_bed, separator="\t", include_header=False)
            plus = predict(demo["fasta"], plus_bed, None, predictor=predictor).values
        gap = float(np.abs(result.values[minus] - plus[minus]).max())
        print(f"strand invariance: {len(minus)} minus-strand TSS, max |embedding(-) - embedding(+)| = {gap:.2e}")
    scores_path = out_dir / "variant_scores.parquet"
    scores = score_variants(demo["fasta"], demo["variants"], scores_path, weights=weights)
    ok = scores.filter(pl.col("status") == "ok")
    print(f"score-variants: {scores.height} real 1000 Genomes SNVs -> {scores_path}; mean LLR {ok['llr'].mean():+.3f}, "
          f"mean embedding distance {ok['emb_l2'].mean():.4f}")
    return 0


def _demo_sequence(args: argparse.Namespace) -> int:
    import torch

    from caduceus_plugin.models.caduceus.checkpoint import from_pretrained
    from caduceus_plugin.models.caduceus.features import embed, mean_pool
    from caduceus_plugin.registry.pretrained import builtin_weights
    from caduceus_plugin.sequence import MASK_ID, decode, reverse_complement, tokenize

    seq = args.sequence.upper()
    if not seq or set(seq) - set("ACGTN"):
        raise InputError("--sequence must be a non-empty string of A, C, G, T, N")
    weights = Path(args.weights) if args.weights else builtin_weights()
    model = from_pretrained(weights)
    cfg = model.config
    print(
        f"model: {weights} ({'Caduceus-PS' if cfg.rcps else 'Caduceus-Ph'}, d_model={cfg.d_model}, "
        f"n_layer={cfg.n_layer}, {model.num_parameters():,} parameters)"
    )
    print_compute_paths()
    ids = tokenize([seq, reverse_complement(seq)])
    with torch.inference_mode():
        out = model(ids)
        feats = embed(model, ids)
        pooled = mean_pool(feats)
        masked = ids[:1].clone()
        pos = list(range(5, ids.shape[1], 10))
        masked[0, pos] = MASK_ID
        pred = model(masked).logits[0, pos].argmax(-1)
    print(
        f"sequence: {len(seq)} bp; hidden_states {tuple(out.hidden_states.shape[1:])}, logits "
        f"{tuple(out.logits.shape[1:])}, RC-invariant features {tuple(feats.shape[1:])}"
    )
    print(
        "pooled embedding (first 8 of", pooled.shape[1], "dims):", " ".join(f"{v:+.4f}" for v in pooled[0, :8].tolist())
    )
    gap = (pooled[0] - pooled[1]).abs().max().item()
    print(f"RC invariance: max |embedding(seq) - embedding(revcomp(seq))| = {gap:.2e}")
    acc = (pred == ids[0, pos]).float().mean().item()
    print(f"masked-LM: {len(pos)} positions masked, predicted {decode(pred.tolist())[:40]}, accuracy {acc:.2f}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser(
        "demo",
        help="the main job on the shipped real demo input: predict on TSS (BED + FASTA) and score 1000G variants",
        description="Runs `predict` on the shipped GRCh37 chr20 slice and its TSS BED, and `score-variants` on its "
        "1000 Genomes VCF, with the built-in model pretrained on chr20 (no downloads). Writes OUT/tss_embeddings."
        "parquet and OUT/variant_scores.parquet. With --sequence: embed one sequence instead.",
    )
    demo.add_argument("--weights", help="Caduceus checkpoint directory (default: the built-in model)")
    demo.add_argument("--out", default="caduceus_demo", help="output directory (default: ./caduceus_demo)")
    demo.add_argument("--sequence", help="embed this DNA sequence instead (e.g. the built-in DEMO_SEQUENCE)")
    demo.set_defaults(func=_cmd_demo)
