"""``caduceus bench``: train and test every model on the real-data tasks (see caduceus_plugin.jobs.bench.run)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path


def _run(args: argparse.Namespace) -> int:
    from caduceus_plugin.errors import InputError
    from caduceus_plugin.jobs.bench.extras import extras
    from caduceus_plugin.jobs.bench.run import run_bench

    command = "caduceus " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["bench"] else (
        "caduceus bench")
    out = Path(args.out)
    report = Path(args.report) if args.report else out / "REPORT.md"
    quick = args.quick or args.budget == "quick"
    if args.report_only:
        from caduceus_plugin.jobs.bench.run import report_only

        rows = report_only(out, report, quick, command, lambda: extras(out, quick=quick, skip_vep=args.no_vep),
                           budget_name=args.budget)
        print(f"bench: report rebuilt from {len(rows)} runs; {report}")
        return 0
    weights = {}
    for item in args.weights:
        name, sep, path = item.partition("=")
        if not sep or not path:
            raise InputError(f"--weights expects MODEL=DIR, got {item!r}")
        weights[name] = path
    rows = run_bench(args.models, args.tasks, args.seeds or [0, 1, 2], out, report, quick=quick, extra=args.override,
                     command=command, extras_fn=lambda: extras(out, quick=quick, skip_vep=args.no_vep),
                     weights=weights, budget_name=args.budget, seeds_given=args.seeds is not None)
    print(f"bench: {len(rows)} runs; report {report}; tables in {out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from caduceus_plugin.jobs.bench.run import DEFAULT_MODELS, FULL_BUDGET

    p = sub.add_parser("bench", help="models side by side on real genomic tasks (same head, budget and seeds)",
                       description="Train and test each model on each task (a Hydra multirun of `caduceus train` "
                       "over the seeds per task and model), then write tables, plots and a Markdown report.")
    p.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), help="registered backbones")
    p.add_argument("--tasks", nargs="+", help=f"default: all ({', '.join(FULL_BUDGET)}); --quick: oct4_mafk splice")
    p.add_argument("--seeds", nargs="+", type=int,
                   help="default 0 1 2 (--budget paper: the protocol's 5 or 10 seeds per task)")
    p.add_argument("--budget", choices=("quick", "default", "paper"), default="default",
                   help="quick: minutes (CI); default: the CPU budget; paper: the authors' fine-tuning protocol "
                   "(epochs, batch, lr, seeds, full data) on a GPU (trainer=gpu)")
    p.add_argument("--quick", action="store_true", help="the same as --budget quick")
    p.add_argument("--out", default="benchmarks/results/bench", help="tables, plots, per-run logs")
    p.add_argument("--report", help="Markdown report path (default OUT/REPORT.md)")
    p.add_argument("--no-vep", action="store_true",
                   help="do not compute the zero-shot variant-effect section (minutes); one saved in "
                        "OUT/extras.json by an earlier run is kept")
    p.add_argument("--report-only", action="store_true",
                   help="rebuild tables, plot and report from the runs already in --out (no training)")
    p.add_argument("--weights", nargs="*", default=[], metavar="MODEL=DIR",
                   help="start MODEL's backbone from a local checkpoint (e.g. released Caduceus/HyenaDNA weights)")
    p.add_argument("--override", nargs="*", default=[], metavar="KEY=VALUE",
                   help="extra Hydra overrides for every run, e.g. model.params.head=pooled")
    p.set_defaults(func=_run)
