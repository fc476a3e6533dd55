"""``caduceus pretrain``: masked-LM pre-training on a FASTA file; ``caduceus pretrain-eval``: a checkpoint vs
count baselines on a held-out region. See :mod:`caduceus_plugin.jobs.pretrain.run`.

    caduceus pretrain --fasta genome.fa --out run/ --val-region 20:1-4000000 --steps 2000
    caduceus pretrain-eval --weights run/ --fasta genome.fa --region 20:1-4000000
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from caduceus_plugin.cli.args import positive_float
from caduceus_plugin.cli.args import positive_int as _positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "pretrain",
        help="pre-train a Caduceus masked LM on a FASTA file",
        description="Masked-LM pre-training (15% masking, 80/10/10; N -> [PAD], not in the loss). PS trains "
        "without RC augmentation, Ph with it. Writes OUT/config.json, OUT/model.safetensors, OUT/training.json "
        "and the full training state OUT/resume.pt at every validation; --resume continues a stopped run.",
    )
    p.add_argument("--fasta", required=True, help="FASTA file (plain, or bgzip-compressed with .fai/.gzi)")
    p.add_argument("--out", required=True, help="output checkpoint directory")
    p.add_argument("--rcps", action=argparse.BooleanOptionalAction, default=True, help="Caduceus-PS (default) or Ph")
    p.add_argument("--d-model", type=_positive_int, default=96)
    p.add_argument("--n-layer", type=_positive_int, default=4)
    p.add_argument("--seq-len", type=_positive_int, default=1024)
    p.add_argument("--batch-size", type=_positive_int, default=4)
    p.add_argument("--steps", type=_positive_int, default=2000)
    p.add_argument("--lr", type=positive_float, default=2e-3, help="peak learning rate (default 2e-3)")
    p.add_argument(
        "--val-region",
        help="held-out region CHR:START-END (1-based, inclusive); default: the last 5%% of the longest contig",
    )
    p.add_argument("--val-windows", type=_positive_int, default=64, help="validation windows (default 64)")
    p.add_argument("--val-every", type=_positive_int, default=250, help="validate + checkpoint every N steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=_positive_int, default=1, help="CPU threads (default 1)")
    a = p.add_argument_group("ablations (the paper's Fig. 3)")
    a.add_argument("--arch", choices=("caduceus", "hyenadna"), default="caduceus", help="model family")
    a.add_argument(
        "--objective",
        choices=("mlm", "ntp"),
        default="mlm",
        help="masked LM (default) or next-token prediction (causal models only)",
    )
    a.add_argument(
        "--bidirectional",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="BiMamba (default) or uni-directional Mamba",
    )
    a.add_argument(
        "--weight-tie",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="share BiMamba's in/out projections between directions (default)",
    )
    a.add_argument(
        "--rc-augment",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="reverse-complement half the training windows (default: only models that are not PS)",
    )
    s_ = p.add_argument_group("sittings (one schedule over several runs)")
    s_.add_argument("--resume", action="store_true",
                    help="continue the run in OUT from its last checkpoint (afresh if it has none)")
    s_.add_argument("--stop-at-step", type=_positive_int, help="stop (with a checkpoint) after this step")
    s_.add_argument("--max-minutes", type=positive_float, help="stop (with a checkpoint) after this wall time")
    p.set_defaults(func=_run_pretrain)

    e = subparsers.add_parser(
        "pretrain-eval",
        help="masked-token accuracy of a checkpoint on a region vs unigram and k-mer baselines",
        description="Evaluates MLM loss and masked-token accuracy on non-overlapping windows of REGION, and the "
        "unigram and k-mer (k bases each side) baselines on the same masked positions, counted on the rest of "
        "the FASTA.",
    )
    e.add_argument("--weights", help="checkpoint directory (default: the built-in model)")
    e.add_argument("--fasta", required=True)
    e.add_argument("--region", required=True, help="evaluation region CHR:START-END (1-based, inclusive)")
    e.add_argument(
        "--exclude", action="append", default=[], help="another region kept out of the baseline counts (repeatable)"
    )
    e.add_argument("--seq-len", type=_positive_int, help="window length (default: the checkpoint's seq_len)")
    e.add_argument("--windows", type=_positive_int, default=256, help="at most this many windows (default 256)")
    e.add_argument("--k", type=_positive_int, action="append", help="k-mer baseline context per side (default 1 2 3)")
    e.add_argument("--seed", type=int, default=12345, help="masking seed")
    e.add_argument("--threads", type=_positive_int, default=1)
    e.add_argument(
        "--against",
        action="append",
        default=[],
        metavar="WEIGHTS",
        help="another checkpoint directory scored on the same windows and masked positions: the difference in loss "
        "and accuracy with a 95%% bootstrap interval over windows and a verdict (repeatable)",
    )
    e.add_argument("--json", help="also write the result to this JSON file")
    e.set_defaults(func=_run_eval)


def _run_pretrain(args: argparse.Namespace) -> int:
    from caduceus_plugin.jobs.pretrain.run import PretrainConfig, pretrain

    cfg = PretrainConfig(
        fasta=args.fasta,
        out=args.out,
        rcps=args.rcps,
        d_model=args.d_model,
        n_layer=args.n_layer,
        seq_len=args.seq_len,
        batch_size=args.batch_size,
        steps=args.steps,
        lr=args.lr,
        val_region=args.val_region,
        val_windows=args.val_windows,
        val_every=args.val_every,
        seed=args.seed,
        threads=args.threads,
        arch=args.arch,
        objective=args.objective,
        bidirectional=args.bidirectional,
        weight_tie=args.weight_tie,
        rc_augment=args.rc_augment,
        resume=args.resume,
        stop_at_step=args.stop_at_step,
        max_minutes=args.max_minutes,
    )
    tty = sys.stderr.isatty()
    info = pretrain(cfg, log=lambda s: print(s, file=sys.stderr, flush=True), progress=tty)
    final = info["final"]
    print(
        f"wrote {Path(args.out)} ({info['model']['variant']}, {info['model']['parameters']:,} parameters): "
        f"{final['step']} steps, {final['tokens_seen']:,} tokens, val loss {final['val_loss']:.4f}, "
        f"val accuracy {final['val_accuracy']:.4f} (unigram {info['val_unigram']['accuracy']:.4f}), "
        f"{info['wall_time_s']:.0f} s"
    )
    if not info["complete"]:
        print(f"stopped at step {final['step']} of {cfg.steps}: continue with the same command and --resume")
    return 0


def _run_eval(args: argparse.Namespace) -> int:
    from caduceus_plugin.fileio import atomic_write_json as write_json_atomic
    from caduceus_plugin.jobs.pretrain.run import evaluate_checkpoint
    from caduceus_plugin.registry.pretrained import builtin_weights

    res = evaluate_checkpoint(
        args.weights or builtin_weights(),
        args.fasta,
        args.region,
        seq_len=args.seq_len,
        n_windows=args.windows,
        ks=tuple(args.k or (1, 2, 3)),
        seed=args.seed,
        threads=args.threads,
        exclude=args.exclude,
        against=args.against,
    )
    m = res["model"]
    print(
        f"region {res['region']}: {res['n_windows']} windows of {res['seq_len']} bp, {res['n_masked']:,} masked "
        f"positions ({m['n_mask_token']:,} shown as [MASK])"
    )
    print(f"  {'':<10} {'accuracy':>9} {'loss':>7}   {'[MASK] only:':<12} {'accuracy':>9} {'loss':>7}")
    print(
        f"  {'model':<10} {m['accuracy']:>9.4f} {m['nuc_loss']:>7.4f}   {'':<12} "
        f"{m['accuracy_mask_only']:>9.4f} {m['nuc_loss_mask_only']:>7.4f}   (MLM loss {m['loss']:.4f})"
    )
    for name, b in res["baselines"].items():
        print(
            f"  {name:<10} {b['accuracy']:>9.4f} {b['loss']:>7.4f}   {'':<12} "
            f"{b['accuracy_mask_only']:>9.4f} {b['loss_mask_only']:>7.4f}"
        )
    line = (
        f"  margin vs unigram {res['margin_vs_unigram']:+.4f} ([MASK] only {res['margin_vs_unigram_mask_only']:+.4f})"
    )
    if "margin_vs_best_kmer" in res:
        line += (
            f", vs best k-mer {res['margin_vs_best_kmer']:+.4f} "
            f"([MASK] only {res['margin_vs_best_kmer_mask_only']:+.4f})"
        )
    print(line)
    for name, cmp in res.get("against", {}).items():
        o = cmp["model"]
        print(f"  against {name}: accuracy {o['accuracy']:.4f}, loss {o['nuc_loss']:.4f}")
        for key, label in (("nuc_loss_diff", "loss"), ("accuracy_diff", "accuracy")):
            c = cmp[key]
            print(
                f"    {label} difference (this model minus that one) {c['diff']:+.4f}, 95% CI "
                f"[{c['ci_low']:+.4f}, {c['ci_high']:+.4f}] over {res['n_windows']} windows: {c['verdict']}"
            )
    print("  (accuracy: argmax over A/C/G/T; loss: cross-entropy over A/C/G/T, nats)")
    if args.json:
        write_json_atomic(Path(args.json), res)
    return 0
