"""Sub-commands of the ``caduceus`` CLI, one module each.

Every module here defines ``register(subparsers)``, which adds its parser and sets ``func`` (called with the
parsed ``argparse.Namespace``; returns the exit status). Modules import only the standard library at top level so
that ``caduceus --help`` stays fast; heavy imports go inside the command function. User errors are raised as
:class:`caduceus_plugin.errors.CaduceusError` (printed as one line, exit status 2).
"""

from __future__ import annotations

import argparse
import math
import sys
from contextlib import AbstractContextManager
from typing import Any


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _finite_float(text: str, allow_zero: bool) -> float:
    kind = "a non-negative" if allow_zero else "a positive"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {kind} number, got {text!r}") from None
    if not ((value >= 0) if allow_zero else (value > 0)) or value == math.inf:  # NaN fails both comparisons
        raise argparse.ArgumentTypeError(f"expected {kind} number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    return _finite_float(text, allow_zero=False)


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    return _finite_float(text, allow_zero=True)


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value


def add_bf16_argument(parser: argparse.ArgumentParser) -> None:
    """``--bf16``: Caduceus projections in bf16 for an inference command (see :func:`matmul_precision`)."""
    parser.add_argument(
        "--bf16",
        action="store_true",
        help="run the Caduceus projections in bf16 (scan, conv, norms and residuals stay float32): faster on CPUs "
        "with AVX512-BF16 or AMX, outputs within about 1e-2 relative of float32",
    )


def matmul_precision(args: argparse.Namespace) -> AbstractContextManager[None]:
    """The block in which an inference command runs: bf16 projections with ``--bf16``, else no change. ``--bf16`` on
    a CPU job where the CPU has no bf16 matrix instructions (:func:`caduceus_plugin.ops.gemm.cpu_info`) prints one
    ``warning:`` line: there oneDNN emulates bf16 and the projections run several times slower than float32."""
    from caduceus_plugin.models.caduceus.streaming import matmul_dtype
    from caduceus_plugin.ops.gemm import cpu_info

    if args.bf16 and accelerator_of(args) == "cpu" and cpu_info().bf16_matmul is False:
        print("warning: --bf16: this CPU has no AVX512-BF16 or AMX instructions, so bf16 projections run several "
              "times slower than float32 here (about 5x measured on AVX2 cores); leave out --bf16",
              file=sys.stderr, flush=True)
    return matmul_dtype("bf16" if args.bf16 else None)


def print_compute_paths() -> None:
    """The scan backend and the float32 CPU projections' library, as two lines (demo, embed, info)."""
    from caduceus_plugin.models.caduceus.streaming import describe_cpu_gemm
    from caduceus_plugin.ops.scan import describe_backends

    print(describe_backends())
    print(describe_cpu_gemm())


def add_inference_arguments(parser: argparse.ArgumentParser, weights_help: str, unit: str) -> None:
    """The argument group every inference command shares: model, weights, FASTA, length, batch, device, bf16."""
    g = parser.add_argument_group("model and genome")
    g.add_argument("--model", metavar="NAME", help="registered model (e.g. caduceus_ps); alone: its built-in weights")
    g.add_argument("--weights", metavar="PATH", help=weights_help)
    g.add_argument("--fasta", required=True, help="genome FASTA (plain or bgzip; the .fai index is built if missing)")
    g.add_argument("--seq-len", type=positive_int, metavar="N", help="input length (default: the model's own)")
    g.add_argument("--batch-size", type=positive_int, metavar="N",
                   help=f"{unit} per batch (default: about 8k tokens per batch, e.g. 8 windows of 1 kbp)")
    g.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available, else cpu")
    add_bf16_argument(g)  # type: ignore[arg-type]
    r = parser.add_argument_group("where and how it runs (more than one process: DDP through Lightning)")
    r.add_argument("--accelerator", choices=("cpu", "gpu", "auto"),
                   help="accelerator, as Lightning names it (default: from --device; gpu when CUDA is available)")
    r.add_argument("--devices", type=positive_int, default=1, metavar="N",
                   help="processes (CPU) or GPUs per node; more than one runs DDP (default 1)")
    r.add_argument("--num-nodes", type=positive_int, default=1, metavar="M", help="nodes (default 1)")
    r.add_argument("--num-workers", type=non_negative_int, default=0, metavar="N",
                   help="DataLoader worker processes reading the FASTA alongside the model (default 0)")
    r.add_argument("--resume", action="store_true",
                   help="continue a killed run from the finished batches in OUT.parts/ (same inputs and options)")
    r.add_argument("--log-every", type=non_negative_float, default=30.0, metavar="S",
                   help="seconds between progress lines when stderr is not a terminal (default 30; 0: every batch)")


def accelerator_of(args: argparse.Namespace) -> str:
    """``cpu`` or ``gpu``: ``--accelerator``, else from ``--device``, else gpu where CUDA is available."""
    accelerator = args.accelerator or ("gpu" if args.device == "cuda" else "cpu" if args.device == "cpu" else "auto")
    if accelerator == "auto":
        import torch

        accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    return str(accelerator)


def run_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments every inference job takes from :func:`add_inference_arguments` (model, length, batch,
    output format, and where and how it runs)."""
    from caduceus_plugin.jobs.runner import Devices

    accelerator = accelerator_of(args)
    return {
        "model": args.model,
        "weights": args.weights,
        "seq_len": args.seq_len,
        "batch_size": args.batch_size,
        "fmt": args.format,
        "devices": Devices(accelerator=accelerator, devices=args.devices, num_nodes=args.num_nodes),
        "num_workers": args.num_workers,
        "resume": args.resume,
        "log_every": args.log_every,
        "progress": True,
    }
