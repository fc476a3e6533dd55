"""``caduceus`` command line.

    caduceus demo [--weights DIR] [--sequence ACGT...]   embed a DNA sequence with a (shipped) checkpoint
    caduceus info [NAME]                                   version, scan backends, models; or one component's spec
    caduceus list                                          registered components (all plugins), released checkpoints

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


def _cmd_demo(args: argparse.Namespace) -> int:
    import torch

    from caduceus_plugin.checkpoint import from_pretrained
    from caduceus_plugin.features import embed, mean_pool
    from caduceus_plugin.ops.scan import describe_backends
    from caduceus_plugin.tokenizer import MASK_ID, decode, reverse_complement, tokenize

    seq = args.sequence.upper()
    if not seq or set(seq) - set("ACGTN"):
        raise _UsageError("--sequence must be a non-empty string of A, C, G, T, N")
    weights = Path(args.weights) if args.weights else shipped_weights()
    model = from_pretrained(weights)
    cfg = model.config
    print(
        f"model: {weights} ({'Caduceus-PS' if cfg.rcps else 'Caduceus-Ph'}, d_model={cfg.d_model}, "
        f"n_layer={cfg.n_layer}, {model.num_parameters():,} parameters)"
    )
    print(describe_backends())
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
    from caduceus_plugin.ops.scan import describe_backends
    from caduceus_plugin.specs import load_specs

    print(
        f"caduceus-plugin {caduceus_plugin.__version__} (torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, cuda={'yes' if torch.cuda.is_available() else 'no'})"
    )
    print(describe_backends())
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
    demo = sub.add_parser("demo", help="embed a DNA sequence with a checkpoint (default: the shipped tiny one)")
    demo.add_argument("--weights", help="checkpoint directory (config.json + model.safetensors); default: shipped")
    demo.add_argument("--sequence", default=DEMO_SEQUENCE, help="DNA sequence (default: a built-in 200 bp)")
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
