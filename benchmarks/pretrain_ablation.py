"""The paper's pre-training ablations (Caduceus, Fig. 3) rerun small on real DNA, with intervals that say what holds.

    .venv/bin/python benchmarks/pretrain_ablation.py                         # 2 lengths x 2 seeds: about an hour
    .venv/bin/python benchmarks/pretrain_ablation.py --tokens 4e6 --lengths 1024 8192 32768 --seeds 0 1 2
    .venv/bin/python benchmarks/pretrain_ablation.py --report-only           # tables, plots, report from the runs
    .venv/bin/python benchmarks/pretrain_ablation.py --quick --out /tmp/abl  # minutes: checks the pipeline only
    .venv/bin/python benchmarks/pretrain_ablation.py --report-only --vep     # + zero-shot variant AUROCs (minutes)

**Data.** Real GRCh37 chromosome 20 (:func:`caduceus_plugin.data.sources.chr20_fasta`, fetched once from the
package registries). Held out: chr20:1-4,000,000, the built-in model's validation region (no training window overlaps
it). Every model sees the same number of training tokens (``--tokens``) in windows of the run's length, batch
``BATCH_TOKENS // length`` (8 x 1 kbp, 1 x 8 kbp), the same optimizer and schedule (AdamW, lr 3e-3, 10 % warm-up,
cosine), and the same seeds.

**Models** (:data:`MODELS`, parameter counts printed and in the CSV; within a comparison they differ by at most 2 %):
Caduceus-PS and Caduceus-Ph (d 96, 4 layers, tied BiMamba; Ph with RC augmentation, PS without, as the authors
train them), untied BiMamba (d 104, 2 layers: tying is what lets the tied model be twice as deep), uni-directional
Mamba (d 104, 4 layers) for the MLM objective, and uni-directional Mamba (d 96, 4 layers) against HyenaDNA
(d 80, 3 layers) for next-token prediction. The MLM models are trained and scored with masking (15 %, 80/10/10);
the next-token models on every next base.

**Measure.** Held-out cross-entropy over A/C/G/T (nats; chance ln 4 = 1.386) on fixed windows of the held-out region
(``VAL_TOKENS`` bases at every length; the same windows, masks and targets for both models of a comparison and
seed), evaluated ``CURVE_POINTS`` times per run for the learning curves, the last one for the table. A difference
of two models (first minus second) gets a 95 % interval from :func:`caduceus_plugin.data.stats.paired_bootstrap`
over seeds and held-out windows; the paper's ordering "holds here" only where the interval lies wholly below zero,
is "reversed" where it lies wholly above, and is otherwise "not detectable at this scale".

**Writes** (under ``--out``, default ``benchmarks/results/pretrain``): ``runs/L{length}/{model}/seed{s}/`` (each a
``caduceus pretrain`` output, resumable: an interrupted sweep continues where it stopped), ``ablation.csv``
(``comparison, length, seed, model, params, tokens, heldout_ce``), ``ablation_compare.csv`` (``comparison, length,
first, second, diff, ci_low, ci_high, n_seeds, n_windows, verdict, paper``), ``curves.png`` and ``REPORT.md``.

**Zero-shot variant effect** (``--vep``): the masked-LM models of seed 0 at the shortest length, and the built-in
model, score the same 1000 Genomes SNVs of the held-out region (every k-th SNV of chr20:1-4 Mb,
:func:`caduceus_plugin.jobs.bench.extras.vep_variants`); ``vep_auroc.csv`` holds the AUROC, with a bootstrap
interval, of telling rare (AF < 1 %) from common (AF > 5 %) variants by each score
(:func:`caduceus_plugin.jobs.bench.extras.rare_vs_common`): a weak proxy for deleteriousness, said as such.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "pretrain"
VAL_REGION = "chr20:1-4000000"  # hg19 chr20 = GRCh37 20: the same sequence
#: Training tokens per optimizer step at every length.
BATCH_TOKENS = 8192
#: Held-out bases scored at every length (128 windows of 1 kbp, 16 of 8 kbp).
VAL_TOKENS = 131_072
#: Held-out evaluations per run (the learning curve's points after step 0).
CURVE_POINTS = 4
LR = 3e-3


@dataclass(frozen=True)
class Model:
    """One ablation model: ``caduceus pretrain`` settings (:class:`PretrainConfig` fields)."""

    name: str
    label: str
    settings: dict[str, Any] = field(default_factory=dict)


MODELS = {
    m.name: m
    for m in (
        Model("caduceus_ps", "Caduceus-PS (tied BiMamba, RC-equivariant)", {"rcps": True}),
        Model("caduceus_ph_rc", "Caduceus-Ph + RC augmentation (tied BiMamba)", {"rcps": False}),
        Model("bimamba_untied", "untied BiMamba, half depth (Ph + RC aug.)",
              {"rcps": False, "weight_tie": False, "n_layer": 2, "d_model": 104}),
        Model("mamba_uni_mlm", "uni-directional Mamba, MLM (+ RC aug.)",
              {"rcps": False, "bidirectional": False, "d_model": 104}),
        Model("mamba_ntp", "uni-directional Mamba, next-token (+ RC aug.)",
              {"rcps": False, "bidirectional": False, "objective": "ntp"}),
        Model("hyenadna_ntp", "HyenaDNA, next-token (+ RC aug.)",
              {"arch": "hyenadna", "objective": "ntp", "d_model": 80, "n_layer": 3}),
    )
}  # fmt: skip


@dataclass(frozen=True)
class Comparison:
    """``first`` vs ``second``; the paper says ``first`` reaches the lower held-out loss."""

    name: str
    first: str
    second: str
    paper: str


COMPARISONS = (
    Comparison("PS vs Ph + RC aug", "caduceus_ps", "caduceus_ph_rc",
               "RC-equivariant (PS) below non-equivariant MLM loss at all lengths (Fig. 3)"),
    Comparison("tied vs untied BiMamba", "caduceus_ph_rc", "bimamba_untied",
               "weight-tied (deeper) BiMamba below untied MLM loss (Fig. 3, Table 3)"),
    Comparison("bi- vs uni-directional", "caduceus_ph_rc", "mamba_uni_mlm",
               "bi-directionality is the paper's premise for MLM (no pre-training figure)"),
    Comparison("Mamba vs HyenaDNA (next-token)", "mamba_ntp", "hyenadna_ntp",
               "Mamba below HyenaDNA next-token loss at 1k/32k/131k (Fig. 3)"),
)  # fmt: skip


def run_config(model: Model, length: int, seed: int, tokens: float, out: Path, threads: int, fasta: str) -> Any:
    """The :class:`PretrainConfig` of one run (equal tokens: ``steps = tokens / BATCH_TOKENS``)."""
    from caduceus_plugin.jobs.pretrain.run import PretrainConfig

    steps = max(6, round(tokens / BATCH_TOKENS))
    kw: dict[str, Any] = {"d_model": 96, "n_layer": 4, **model.settings}
    return PretrainConfig(
        fasta=fasta,
        out=str(out / "runs" / f"L{length}" / model.name / f"seed{seed}"),
        seq_len=length,
        batch_size=max(1, BATCH_TOKENS // length),
        steps=steps,
        lr=LR,
        val_region=VAL_REGION,
        val_windows=max(2, VAL_TOKENS // length),
        val_every=max(1, steps // CURVE_POINTS),
        seed=seed,
        threads=threads,
        resume=True,
        **kw,
    )


def run_all(args: argparse.Namespace) -> None:
    import json

    from caduceus_plugin.data.sources import chr20_fasta
    from caduceus_plugin.jobs.pretrain.corpus import load_fasta
    from caduceus_plugin.jobs.pretrain.run import pretrain

    fasta = str(chr20_fasta())
    genome = load_fasta(fasta)
    models = [MODELS[m] for m in args.models]
    todo = [(length, seed, m) for length in args.lengths for seed in args.seeds for m in models]
    print(f"load average before: {os.getloadavg()}", flush=True)
    for i, (length, seed, m) in enumerate(todo, 1):
        cfg = run_config(m, length, seed, args.tokens, args.out, args.threads, fasta)
        done = Path(cfg.out) / "training.json"
        if done.exists() and json.loads(done.read_text()).get("complete"):
            print(f"[{i}/{len(todo)}] L{length} {m.name} seed{seed}: done before", flush=True)
            continue
        t = time.time()
        info = pretrain(cfg, genome=genome)
        f = info["final"]
        print(f"[{i}/{len(todo)}] L{length} {m.name} seed{seed}: {info['model']['parameters']:,} params, "
              f"{f['tokens_seen']:,} tokens, held-out CE {f['val_nuc_loss']:.4f} ({time.time() - t:.0f} s)",
              flush=True)  # fmt: skip
    print(f"load average after: {os.getloadavg()}", flush=True)


def collect(out: Path) -> list[dict[str, Any]]:
    """One record per finished run: settings, parameters, curve, final per-window held-out losses."""
    import json

    recs = []
    for path in sorted(out.glob("runs/L*/*/seed*/training.json")):
        info = json.loads(path.read_text())
        if not info.get("complete"):
            continue
        recs.append({
            "length": int(path.parts[-4][1:]),
            "model": path.parts[-3],
            "seed": int(path.parts[-2][4:]),
            "params": info["model"]["parameters"],
            "tokens": info["final"]["tokens_seen"],
            "heldout_ce": info["final"]["val_nuc_loss"],
            "windows": np.asarray(info["final_window_nuc_loss"], dtype=np.float64),
            "curve": [(0, info["initial"]["val_nuc_loss"])] + [(h["tokens_seen"], h["val_nuc_loss"])
                                                                for h in info["history"]],
            "seconds": info["wall_time_s"],
        })  # fmt: skip
    return recs


def compare(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every comparison at every length where both models have runs with the same seeds."""
    from caduceus_plugin.data.stats import paired_bootstrap, verdict

    by = {(r["length"], r["model"], r["seed"]): r for r in recs}
    rows = []
    for length in sorted({r["length"] for r in recs}):
        for c in COMPARISONS:
            seeds = sorted(s for (L, m, s) in by if L == length and m == c.first and (L, c.second, s) in by)
            if not seeds:
                continue
            a = np.stack([by[(length, c.first, s)]["windows"] for s in seeds])
            b = np.stack([by[(length, c.second, s)]["windows"] for s in seeds])
            iv = paired_bootstrap(a, b, seed=length)
            v = verdict(iv, higher_is_better=False)
            holds = {"better": "holds here", "worse": "reversed here"}.get(v, "not detectable at this scale")
            rows.append({
                "comparison": c.name, "length": length, "first": c.first, "second": c.second,
                "diff": iv.estimate, "ci_low": iv.low, "ci_high": iv.high, "n_seeds": len(seeds),
                "n_windows": a.shape[1], "verdict": holds, "paper": c.paper,
                "params_first": by[(length, c.first, seeds[0])]["params"],
                "params_second": by[(length, c.second, seeds[0])]["params"],
            })  # fmt: skip
    return rows


def _csv(rows: list[dict[str, Any]]) -> str:
    """CSV text (header from the first row; floats with 4 decimals; fields quoted where needed)."""
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows)
    return buf.getvalue()


def write_outputs(out: Path, recs: list[dict[str, Any]], rows: list[dict[str, Any]], command: str) -> str:
    from caduceus_plugin.fileio import atomic_write, atomic_write_text

    table = []
    for c in COMPARISONS:
        for r in recs:
            if r["model"] in (c.first, c.second):
                table.append({"comparison": c.name, "length": r["length"], "seed": r["seed"], "model": r["model"],
                              "params": r["params"], "tokens": r["tokens"], "heldout_ce": f"{r['heldout_ce']:.5f}"})
    table.sort(key=lambda t: (t["comparison"], t["length"], t["seed"], t["model"]))

    out.mkdir(parents=True, exist_ok=True)
    if table:
        atomic_write_text(out / "ablation.csv", _csv(table))
    if rows:
        atomic_write_text(out / "ablation_compare.csv", _csv(rows))
        _plot(recs, out / "curves.png", atomic_write)
    report = _report(recs, rows, command, out)
    atomic_write_text(out / "REPORT.md", report)
    return report


def _plot(recs: list[dict[str, Any]], path: Path, atomic_write: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lengths = sorted({r["length"] for r in recs})
    fig, axes = plt.subplots(len(lengths), len(COMPARISONS), figsize=(4.2 * len(COMPARISONS), 3.3 * len(lengths)),
                             squeeze=False)  # fmt: skip
    for i, length in enumerate(lengths):
        for j, c in enumerate(COMPARISONS):
            ax = axes[i][j]
            for name, colour in ((c.first, "#c44e52"), (c.second, "#4c72b0")):
                for r in (r for r in recs if r["length"] == length and r["model"] == name):
                    x, y = zip(*r["curve"][1:])
                    ax.plot(np.asarray(x) / 1e6, y, color=colour, alpha=0.8, marker=".",
                            label=name if r["seed"] == min(q["seed"] for q in recs if q["model"] == name) else None)
            ax.axhline(math.log(4), color="grey", lw=0.8, ls=":", label="chance (ln 4)")
            ax.set(title=f"{c.name}, {length:,} bp", xlabel="training tokens (M)", ylabel="held-out CE (nats)")
            ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, dpi=100, format="png"))
    plt.close(fig)


def _report(recs: list[dict[str, Any]], rows: list[dict[str, Any]], command: str, out: Path) -> str:
    import torch

    lines = ["# Pre-training ablations (the paper's Fig. 3) on real GRCh37 chr20", "",
             f"Command: `{command}`  ",
             f"Machine: {platform.machine()}, {os.cpu_count()} CPUs; torch {torch.__version__}; python "
             f"{platform.python_version()}; {time.strftime('%Y-%m-%d')}.", "",
             "Protocol: see the docstring of `benchmarks/pretrain_ablation.py`. Held-out cross-entropy over A/C/G/T "
             f"(nats; chance ln 4 = {math.log(4):.4f}) on {VAL_TOKENS:,} bases of {VAL_REGION} (never trained on). "
             "Difference = first minus second (negative: first is lower, as the paper says it should be); 95 % "
             "interval: bootstrap over seeds and held-out windows, paired.", "",
             "| comparison | length | first | second | params | diff (nats) | 95 % interval | seeds | windows | "
             "the paper's ordering |", "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        lines.append(f"| {r['comparison']} | {r['length']:,} | {r['first']} | {r['second']} | "
                     f"{r['params_first']:,} / {r['params_second']:,} | {r['diff']:+.4f} | "
                     f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}] | {r['n_seeds']} | {r['n_windows']} | "
                     f"**{r['verdict']}** |")  # fmt: skip
    lines += ["", "![learning curves](curves.png)", "", "## Held-out cross-entropy per run", "",
              "| length | model | seed | params | tokens | held-out CE | train s |", "|---|---|---|---|---|---|---|"]
    for r in sorted(recs, key=lambda r: (r["length"], r["model"], r["seed"])):
        lines.append(f"| {r['length']:,} | {r['model']} | {r['seed']} | {r['params']:,} | {r['tokens']:,} | "
                     f"{r['heldout_ce']:.4f} | {r['seconds']:.0f} |")
    lines += ["", "## What the paper says, and what holds here", ""]
    for r in rows:
        lines.append(f"- **{r['comparison']}, {r['length']:,} bp**: the paper: {r['paper']}. Here: "
                     f"{r['first']} − {r['second']} = {r['diff']:+.4f} nats [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]"
                     f": the ordering is **{r['verdict']}**.")  # fmt: skip
    vep_csv = out / "vep_auroc.csv"
    if vep_csv.exists():
        from caduceus_plugin.jobs.bench.extras import AUROC_HEADER, auroc_lines

        vrows = list(csv.DictReader(vep_csv.open()))
        lines += ["## Zero-shot variant effect: rare vs common 1000 Genomes SNVs (held-out chr20:1-4 Mb)", "",
                  "AUROC of telling rare (AF < 1 %) from common (AF > 5 %) SNVs by each score (higher = more likely "
                  "rare), chance 0.5, 95 % bootstrap interval within class. A weak proxy: purifying selection makes "
                  "damaging alleles rarer, but most rare variants are harmless. From `vep_auroc.csv`.", "",
                  *AUROC_HEADER]
        for model in dict.fromkeys(r["model"] for r in vrows):
            conv = [{k: (float(v) if k in ("auroc", "ci_low", "ci_high") else v) for k, v in r.items()}
                    for r in vrows if r["model"] == model]
            lines += auroc_lines(conv, model)
        lines.append("")
    tokens = sorted({r["tokens"] for r in recs})
    n_seeds = sorted({r["n_seeds"] for r in rows})
    if n_seeds and n_seeds[0] < 5:
        lines += ["", f"With {n_seeds[0]} seed(s) the bootstrap's draws of seeds take few distinct values, so the "
                  "interval mostly reflects the finite held-out windows and little of the run-to-run variation: "
                  "read a difference whose interval ends near zero as weak evidence, whichever way it points."]
    lines += ["", f"Scale: {', '.join(f'{t:,}' for t in tokens)} training tokens per run and about 0.3 M parameters, "
              "against the paper's 35 B tokens and 0.5-8 M parameters on GPUs. A difference the interval cannot "
              "separate from zero at this scale may still appear with more training; a reversed one says only what "
              "holds after this many tokens.", ""]  # fmt: skip
    return "\n".join(lines)


#: Variants scored for the zero-shot AUROC (every k-th SNV of the held-out chr20:1-4 Mb).
N_VEP = 600
MLM_MODELS = ("caduceus_ps", "caduceus_ph_rc", "bimamba_untied", "mamba_uni_mlm")


def vep(out: Path, recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rare-vs-common AUROCs of the built-in model and the seed-0 MLM ablation models at the shortest length."""
    from caduceus_plugin.data import variants_1kg_chr20
    from caduceus_plugin.jobs.bench.extras import rare_vs_common, vep_variants, with_af
    from caduceus_plugin.jobs.variants import score_variants
    from caduceus_plugin.registry.pretrained import builtin_weights

    data = variants_1kg_chr20(snv_only=True)
    vcf = out / "vep" / "variants.vcf"
    vcf.parent.mkdir(parents=True, exist_ok=True)
    vep_variants(Path(data.vcf), vcf, N_VEP)
    length = min(r["length"] for r in recs)
    builtin = Path(builtin_weights())
    weights = {f"builtin ({builtin.name})": builtin}
    for m in MLM_MODELS:
        d = out / "runs" / f"L{length}" / m / "seed0"
        if (d / "model.safetensors").exists():
            weights[f"{m} (L{length}, seed 0)"] = d
        else:  # the committed runs keep metrics, not weights: keep that model's rows from an earlier --vep
            print(f"vep: {m} (L{length}, seed 0): no weights in {d}; its earlier rows are kept", flush=True)
    earlier = out / "vep_auroc.csv"
    kept = []
    if earlier.is_file():
        with open(earlier, newline="") as fh:
            kept = [r for r in csv.DictReader(fh)
                    if r["model"] not in weights and not r["model"].startswith("builtin (")]
    rows = []
    for name, w in weights.items():
        t = time.time()
        scores = score_variants(data.genome, vcf, weights=w)
        for r in rare_vs_common(with_af(scores, data.variants)):
            rows.append({"model": name, **r})
        print(f"vep: {name}: {len(scores)} variants in {time.time() - t:.0f} s", flush=True)
    return rows + kept


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--tokens", type=float, default=1e6, help="training tokens per run (default 1e6)")
    p.add_argument("--lengths", type=int, nargs="+", default=[1024, 8192])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--report-only", action="store_true", help="rebuild tables, plot and report from the runs")
    p.add_argument("--quick", action="store_true", help="tiny runs (a pipeline check, not a result)")
    p.add_argument("--vep", action="store_true", help="also the zero-shot rare-vs-common variant AUROCs")
    args = p.parse_args(argv)
    if args.quick:
        args.tokens, args.lengths = 6 * BATCH_TOKENS, [1024]
    command = "python benchmarks/pretrain_ablation.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if not args.report_only:
        run_all(args)
    recs = collect(args.out)
    if not recs:
        print(f"error: no finished runs under {args.out / 'runs'}: run without --report-only first", file=sys.stderr)
        return 2
    rows = compare(recs)
    if args.vep:
        from caduceus_plugin.fileio import atomic_write_text

        atomic_write_text(args.out / "vep_auroc.csv", _csv(vep(args.out, recs)))
    print(write_outputs(args.out, recs, rows, command.strip()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
