"""The report sections of ``caduceus bench`` that are not trained classifiers: zero-shot variant effects and compute.

* **Zero-shot variant effect** on real 1000 Genomes SNVs (chr20:1–4 Mb, shapeit4-example): the masked-LM log
  likelihood ratio and the embedding distance of :func:`caduceus_plugin.variants.score_variants`, with the built-in
  pretrained model. No pathogenicity or eQTL labels exist offline, so the section reports score distributions by
  allele-frequency bin and the runtime, and says so.
* **Compute**: throughput and memory against length, from ``benchmarks/compute.py``'s table.
"""

from __future__ import annotations

import gzip
import time
from pathlib import Path

AF_BINS = ((0.0, 0.01), (0.01, 0.05), (0.05, 0.2), (0.2, 0.5), (0.5, 1.01))
COMPUTE_CSV = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "compute.csv"


def _subset_vcf(src: Path, dest: Path, n: int, contig: str) -> int:
    """Every k-th SNV record of ``src`` (bi-allelic, single-base alleles) renamed to ``contig``; returns the count."""
    opener = gzip.open if src.suffix == ".gz" else open
    with opener(src, "rt") as fh:
        lines = fh.read().splitlines()
    header = [ln for ln in lines if ln.startswith("#") and not ln.startswith("##contig")]
    records = [ln.split("\t") for ln in lines if not ln.startswith("#")]
    snvs = [r[:8] for r in records if len(r[3]) == 1 and len(r[4]) == 1]
    step = max(1, len(snvs) // n)
    chosen = snvs[::step][:n]
    header = [h if not h.startswith("#CHROM") else "\t".join(h.split("\t")[:8]) for h in header]
    header.insert(1, f"##contig=<ID={contig}>")
    dest.write_text("\n".join(header + ["\t".join([contig, *r[1:]]) for r in chosen]) + "\n")
    return len(chosen)


def vep_section(out: Path, n_variants: int) -> str:
    from caduceus_plugin import datasets
    from caduceus_plugin.inference import builtin_weights
    from caduceus_plugin.variants import score_variants

    data = datasets.variants_1kg_chr20(snv_only=True)
    vcf = out / "vep_variants.vcf"
    n = _subset_vcf(Path(data.vcf), vcf, n_variants, contig="chr20")
    t0 = time.perf_counter()
    scores = score_variants(data.genome, vcf, out / "vep_scores.parquet")
    seconds = time.perf_counter() - t0
    import polars as pl

    v = data.variants
    af = pl.DataFrame({"pos": v["pos"].tolist(), "ref": v["ref"].tolist(), "alt": v["alt"].tolist(),
                       "af": v["af"].tolist()})
    ok = scores.filter(pl.col("status") == "ok").join(af, on=["pos", "ref", "alt"], how="left")
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
    return "\n".join(lines)


def compute_section() -> str:
    import polars as pl

    if not COMPUTE_CSV.exists():
        return "No `benchmarks/results/compute.csv` yet: run `.venv/bin/python benchmarks/compute.py`."
    df = pl.read_csv(COMPUTE_CSV, infer_schema_length=None)
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


def extras(out: Path, quick: bool = False, skip_vep: bool = False) -> dict[str, str]:
    from caduceus_plugin.errors import CaduceusError

    sections = {}
    if not skip_vep:
        try:
            sections["Zero-shot variant effect (1000 Genomes, chr20)"] = vep_section(out, 40 if quick else 400)
        except (CaduceusError, ImportError, OSError) as err:
            sections["Zero-shot variant effect (1000 Genomes, chr20)"] = f"Not run: {type(err).__name__}: {err}"
    sections["Compute: throughput and memory against length"] = compute_section()
    return sections
