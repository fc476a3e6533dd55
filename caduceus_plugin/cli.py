"""``caduceus`` command line.

    caduceus demo [--out DIR] [--weights DIR]           predict + score variants on the shipped real demo input
    caduceus demo --sequence ACGT...                      embed one sequence
    caduceus info [NAME]                                   version, scan backends, models; or one component's spec
    caduceus list                                          registered components (all plugins), released checkpoints

and the sub-commands in :mod:`caduceus_plugin.commands` (``predict``, ``score-variants``, ``export-kipoi``,
``train``, ``bench``, ``pretrain``, ``pretrain-eval``; see ``caduceus COMMAND --help``).

Errors print one line (``error: ...``) and exit with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

#: A 200-bp stretch used when no --sequence is given.
DEMO_SEQUENCE = (
    "GGGCGGCGCGGGCGGGCGCGGCGCTATAAAAGGCGCCGCGCCCTTCCGCCGCCCGCCGGCGCAGCGCCATGGCGGAGGAGGCGGAGGCG"
    "GCGGAGCGGGAGCCGAGCGCCGGCAGCGGCAGCTGCGCCCCGACCTCCAGCCCGCGCCGCGCCTCCTGCTGCTGCTCCTGCTCCTGCGC"
    "GCGCTGCTGCGCGGGGCTCTAA"
)


def shipped_weights(name: str = "tiny_ps") -> Path:
    """Directory of a checkpoint shipped inside the package."""
    return Path(str(resources.files("caduceus_plugin") / "weights" / name))


def _print_compute_paths() -> None:
    """The scan backend and the float32 CPU projections' library, as two lines (demo, embed, info)."""
    from caduceus_plugin.models.streaming import describe_cpu_gemm
    from caduceus_plugin.ops.scan import describe_backends

    print(describe_backends())
    print(describe_cpu_gemm())


def _cmd_demo(args: argparse.Namespace) -> int:
    if args.sequence is not None:
        return _demo_sequence(args)
    import numpy as np
    import polars as pl

    from caduceus_plugin.demo_data import REAL_REGION, paths
    from caduceus_plugin.inference import builtin_weights, load_predictor
    from caduceus_plugin.predict import predict
    from caduceus_plugin.variants import score_variants

    demo = paths()
    out_dir = Path(args.out)
    if not out_dir.parent.is_dir():
        parent = out_dir.parent
        raise _UsageError(f"output directory {parent} does not exist: create it first (mkdir -p {parent})")
    if out_dir.exists() and not out_dir.is_dir():
        raise _UsageError(f"--out {out_dir} is a file: give a directory")
    weights = Path(args.weights) if args.weights else builtin_weights()
    predictor = load_predictor(None, weights)
    out_dir.mkdir(exist_ok=True)
    print(f"model: {predictor.source} (RC-invariant pooled embeddings, window {predictor.seq_len} bp)")
    _print_compute_paths()
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
            lines = [ln.split("\t") for ln in demo["tss"].read_text().splitlines() if ln.strip()]
            plus_bed.write_text("".join("\t".join([*f[:5], "+", *f[6:]]) + "\n" for f in lines))
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

    from caduceus_plugin.checkpoint import from_pretrained
    from caduceus_plugin.features import embed, mean_pool
    from caduceus_plugin.inference import builtin_weights
    from caduceus_plugin.tokenizer import MASK_ID, decode, reverse_complement, tokenize

    seq = args.sequence.upper()
    if not seq or set(seq) - set("ACGTN"):
        raise _UsageError("--sequence must be a non-empty string of A, C, G, T, N")
    weights = Path(args.weights) if args.weights else builtin_weights()
    model = from_pretrained(weights)
    cfg = model.config
    print(
        f"model: {weights} ({'Caduceus-PS' if cfg.rcps else 'Caduceus-Ph'}, d_model={cfg.d_model}, "
        f"n_layer={cfg.n_layer}, {model.num_parameters():,} parameters)"
    )
    _print_compute_paths()
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


def _component_spec(comp) -> dict | None:  # type: ignore[no-untyped-def]
    from caduceus_plugin.specs import load_specs

    return comp.spec or load_specs().get(comp.name)


def _cmd_info(args: argparse.Namespace) -> int:
    if args.name:
        import json

        from caduceus_plugin.plugins import get_registry

        registry = get_registry()
        kind = "head" if args.name in registry.names("head") and args.name not in registry.names() else "backbone"
        comp = registry.get(args.name, kind)
        spec = _component_spec(comp) or {}
        print(f"{comp.kind} {comp.name} (from {comp.distribution}, plugin {comp.plugin}; factory {comp.factory})")
        for key in ("description", "family"):
            if key in spec:
                print(f"{key}: {spec[key]}")
        for key in ("config", "input", "output"):
            if key in spec:
                print(f"{key}: {json.dumps(spec[key])}")
        for c in spec.get("checkpoints", []):
            print(f"checkpoint {comp.name}.{c['tag']}: {c['hf_repo']} ({c['params']:,} parameters; "
                  f"files {', '.join(c.get('files', []))})")
        return 0
    import torch

    import caduceus_plugin
    from caduceus_plugin.specs import load_specs

    print(
        f"caduceus-plugin {caduceus_plugin.__version__} (torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, cuda={'yes' if torch.cuda.is_available() else 'no'})"
    )
    _print_compute_paths()
    print("models:", ", ".join(sorted(load_specs())))
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from caduceus_plugin.plugins import get_registry
    from caduceus_plugin.specs import load_specs

    load_specs()  # validates the shipped specs
    for comp in get_registry().components():
        spec = _component_spec(comp)
        about = f": {spec['description']}" if spec else ""
        print(f"{comp.kind} {comp.name} (from {comp.distribution}){about}")
        for c in spec.get("checkpoints", []) if spec else []:
            print(f"  {comp.name}.{c['tag']}: {c['hf_repo']} ({c['params']:,} parameters)")
    return 0


from caduceus_plugin.errors import InputError as _UsageError  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="caduceus", description="Caduceus DNA language models in plain PyTorch.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="the main job on the shipped real demo input: predict on TSS (BED + FASTA) and score 1000G variants",
        description="Runs `predict` on the shipped GRCh37 chr20 slice and its TSS BED, and `score-variants` on its "
        "1000 Genomes VCF, with the built-in model pretrained on chr20 (no downloads). Writes OUT/tss_embeddings."
        "parquet and OUT/variant_scores.parquet. With --sequence: embed one sequence instead.",
    )
    demo.add_argument("--weights", help="Caduceus checkpoint directory (default: the built-in grch37_chr20_ps)")
    demo.add_argument("--out", default="caduceus_demo", help="output directory (default: ./caduceus_demo)")
    demo.add_argument("--sequence", help="embed this DNA sequence instead (e.g. the built-in DEMO_SEQUENCE)")
    demo.set_defaults(func=_cmd_demo)
    info = sub.add_parser("info", help="version, scan backends, registered models; or one component's spec")
    info.add_argument("name", nargs="?", help="a registered component: print its spec and where it comes from")
    info.set_defaults(func=_cmd_info)
    sub.add_parser("list", help="registered components (all plugins) and released checkpoints").set_defaults(
        func=_cmd_list
    )
    import pkgutil

    from caduceus_plugin import commands

    for mod in sorted(m.name for m in pkgutil.iter_modules(commands.__path__)):
        importlib.import_module(f"caduceus_plugin.commands.{mod}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from caduceus_plugin.errors import CaduceusError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except CaduceusError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into e.g. `head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
