"""The report sections of ``caduceus bench`` that are not trained classifiers: zero-shot variant effects and compute.

* **Zero-shot variant effect** on real 1000 Genomes SNVs (chr20:1–4 Mb, shapeit4-example): the masked-LM log
  likelihood ratio and the embedding distance of :func:`caduceus_plugin.jobs.variants.score_variants`, with the built-in
  pretrained model. No pathogenicity or eQTL labels exist offline, so the section reports score distributions by
  allele-frequency bin, the runtime, and the AUROC (bootstrap interval) of telling rare (AF < 1 %) from common
  (AF > 5 %) variants by each score (:func:`rare_vs_common`), a weak proxy for deleteriousness (purifying
  selection makes damaging alleles rarer, but most rare variants are harmless), and says so.
* **Compute**: throughput and memory against length, from ``benchmarks/compute.py``'s table: the caller says where
  that table is (``caduceus bench`` looks for ``benchmarks/results/compute.csv`` under the working directory, as a
  checkout of the repository has it; an installed package has no ``benchmarks/`` folder).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from caduceus_plugin.fileio import atomic_write
from caduceus_plugin.genome import read_vcf, write_vcf

AF_BINS = ((0.0, 0.01), (0.01, 0.05), (0.05, 0.2), (0.2, 0.5), (0.5, 1.01))
#: Rare and common, for the AUROC of telling them apart (variants in between are left out).
RARE_MAX_AF, COMMON_MIN_AF = 0.01, 0.05
#: Scores oriented so that higher means "more likely rare": a lower LLR, a larger |LLR| or embedding change.
VEP_SCORES = {"-LLR": lambda df: -df["llr"], "abs(LLR)": lambda df: df["llr"].abs(), "emb_l2": lambda df: df["emb_l2"]}
#: Where ``caduceus bench`` looks for ``benchmarks/compute.py``'s table: relative, so under the working directory.
DEFAULT_COMPUTE_CSV = Path("benchmarks", "results", "compute.csv")


def vep_variants(src: Path, dest: Path, n: int, contig: str = "chr20") -> int:
    """Every k-th SNV record of ``src`` (bi-allelic, single-base alleles) renamed to ``contig``, written as a
    sites-only VCF; returns the count."""
    snvs = [r for r in read_vcf(src) if r.n_alts == 1 and len(r.ref) == 1 and len(r.alt) == 1]
    step = max(1, len(snvs) // n)
    chosen = [dataclasses.replace(r, chrom=contig) for r in snvs[::step][:n]]
    atomic_write(dest, lambda tmp: write_vcf(tmp, chosen))
    return len(chosen)


def rare_vs_common(scored: Any) -> list[dict[str, Any]]:
    """AUROC with its bootstrap interval of each of :data:`VEP_SCORES` for rare (positive) vs common variants.

    ``scored``: polars DataFrame with ``af``, ``llr`` and ``emb_l2`` (scored variants). Chance is 0.5.
    """
    import polars as pl

    from caduceus_plugin.data.stats import bootstrap_auroc

    sub = scored.filter((pl.col("af") < RARE_MAX_AF) | (pl.col("af") > COMMON_MIN_AF))
    labels = (sub["af"] < RARE_MAX_AF).to_numpy()
    rows = []
    for name, fn in VEP_SCORES.items():
        iv = bootstrap_auroc(labels, fn(sub).to_numpy())
        rows.append({"score": name, "auroc": iv.estimate, "ci_low": iv.low, "ci_high": iv.high,
                     "n_rare": int(labels.sum()), "n_common": int((~labels).sum())})
    return rows


def with_af(scores: Any, variants: Any) -> Any:
    """The scored rows of ``scores`` (``status == "ok"``) joined with the panel's allele frequencies."""
    import polars as pl

    af = pl.DataFrame({"pos": variants["pos"].tolist(), "ref": variants["ref"].tolist(),
                       "alt": variants["alt"].tolist(), "af": variants["af"].tolist()})
    return scores.filter(pl.col("status") == "ok").join(af, on=["pos", "ref", "alt"], how="left")


def auroc_lines(rows: list[dict[str, Any]], model: str) -> list[str]:
    return [f"| {model} | {r['score']} | {r['auroc']:.3f} | [{r['ci_low']:.3f}, {r['ci_high']:.3f}] | "
            f"{r['n_rare']} / {r['n_common']} |" for r in rows]


AUROC_HEADER = ["| model | score | AUROC rare vs common | 95 % interval | rare / common |", "|---|---|---|---|---|"]


def vep_section(out: Path, n_variants: int) -> str:
    from caduceus_plugin.data import variants_1kg_chr20
    from caduceus_plugin.jobs.variants import score_variants
    from caduceus_plugin.registry.pretrained import builtin_weights

    data = variants_1kg_chr20(snv_only=True)
    vcf = out / "vep_variants.vcf"
    n = vep_variants(Path(data.vcf), vcf, n_variants)
    t0 = time.perf_counter()
    scores = score_variants(data.genome, vcf, out / "vep_scores.parquet")
    seconds = time.perf_counter() - t0
    import polars as pl

    ok = with_af(scores, data.variants)
    lines = [
        f"Built-in model `{builtin_weights().name}` on {n} real 1000 Genomes SNVs (every k-th SNV of chr20:1–4 Mb, "
        f"GRCh37; AF from the 300-sample panel): {len(ok)} scored in {seconds:.1f} s "
        f"({len(ok) / max(seconds, 1e-9):.1f} variants/s on this CPU). Scores: `llr` = log p(alt) − log p(ref) at "
        "the masked position (both strands), `emb_l2` = distance of window-averaged RC-invariant embeddings. "
        "**No labels exist offline** (no ClinVar/eQTL in the registries), so this is a distribution, not an "
        "accuracy: under purifying selection rarer alleles should look less likely (lower LLR) on average.",
        "",
        "| AF bin | variants | mean LLR | median LLR | mean emb_l2 |",
        "|---|---|---|---|---|",
    ]
    for lo, hi in AF_BINS:
        sub = ok.filter((pl.col("af") >= lo) & (pl.col("af") < hi))
        if len(sub):
            lines.append(f"| [{lo:g}, {min(hi, 1):g}) | {len(sub)} | {sub['llr'].mean():+.3f} | "
                         f"{sub['llr'].median():+.3f} | {sub['emb_l2'].mean():.4f} |")
    lines += ["", f"Telling rare (AF < {RARE_MAX_AF:g}) from common (AF > {COMMON_MIN_AF:g}) variants by each score "
              "(AUROC, chance 0.5; 95 % bootstrap interval within class). A weak proxy: purifying selection makes "
              "damaging alleles rarer, but most rare variants are harmless, so even a good model scores low here.",
              "", *AUROC_HEADER, *auroc_lines(rare_vs_common(ok), builtin_weights().name)]
    return "\n".join(lines)


def compute_section(compute_csv: Path = DEFAULT_COMPUTE_CSV) -> str:
    """The compute table of ``benchmarks/compute.py`` (``compute_csv``; a relative path is under the working
    directory) as Markdown, or a line saying that it was not found and how to produce it."""
    import polars as pl

    if not compute_csv.is_file():
        return (f"Compute table not found: no `{compute_csv}` under `{Path.cwd()}`. Produce it with "
                "`python benchmarks/compute.py` in a checkout of the repository, and run `caduceus bench` from "
                "the folder that holds `benchmarks/`.")
    df = pl.read_csv(compute_csv, infer_schema_length=None)
    if "error" in df.columns:
        df = df.filter(pl.col("error").is_null())
    df = df.filter((pl.col("mode") == "infer") & (pl.col("batch") == 1)).sort(["model", "backend", "length"])
    lines = ["From `benchmarks/compute.py` (its own run; see `benchmarks/results/README.md` for the command and "
             "machine): inference, batch 1, float32; the 7.7M Caduceus configuration, HyenaDNA medium (6.6M), and "
             "the default small Enformer (2.7M) and CNN (0.67M) trunks.",
             "", "| model | backend | length | tokens/s | peak GB |", "|---|---|---|---|---|"]
    for r in df.iter_rows(named=True):
        lines.append(f"| {r['model']} | {r['backend']} | {r['length']:,} | {r['tokens_per_s']:,.0f} | "
                     f"{r['peak_rss_gb']:.2f} |")
    lines += ["", "![compute](../compute.png)"]
    return "\n".join(lines)


def extras(out: Path, quick: bool = False, skip_vep: bool = False,
           compute_csv: Path = DEFAULT_COMPUTE_CSV) -> dict[str, str]:
    """The report sections: zero-shot variant effect (unless ``skip_vep``) and compute (from ``compute_csv``)."""
    from caduceus_plugin.errors import CaduceusError

    sections = {}
    if not skip_vep:
        try:
            sections["Zero-shot variant effect (1000 Genomes, chr20)"] = vep_section(out, 40 if quick else 600)
        except (CaduceusError, ImportError, OSError) as err:
            sections["Zero-shot variant effect (1000 Genomes, chr20)"] = f"Not run: {type(err).__name__}: {err}"
    sections["Compute: throughput and memory against length"] = compute_section(Path(compute_csv))
    return sections
