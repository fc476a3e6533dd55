"""``caduceus score-variants``: zero-shot variant-effect scores from a Caduceus masked LM.

For every VCF allele (multi-allelic records are split), a ``seq_len`` window is cut with the variant's first base
at index ``c = seq_len // 2`` (``N`` beyond chromosome ends). Two scores:

* ``llr`` (SNVs only): ``log p(alt) - log p(ref)`` at the variant position with that position replaced by
  ``[MASK]``. It is computed on the window and on its reverse complement (mask at ``seq_len - 1 - c``, complemented
  alleles) and the two are averaged, for PS and Ph alike.
* ``emb_l2`` (and ``emb_cosine``): the Euclidean (and cosine, ``1 - cos``) distance between the ref and alt
  windows' RC-invariant per-position features (:func:`caduceus_plugin.models.caduceus.features.embed`: PS strand
  average, Ph post-hoc conjoining) averaged over the positions within ``window // 2`` of the variant, as in the
  authors' VEP
  setup (spec §5.2: mean over a 1536-bp window centred on the SNP). For an indel the alt window is rebuilt (left
  flank, ALT, right flank) to the same length, so indels get this score too.

The REF allele is checked against the FASTA; a mismatch is reported in ``status``/``reason`` and not scored.
Scores do not depend on the strand the window is given on: scoring the reverse-complemented window with
complemented alleles (:func:`score_sequences`) gives the same numbers (exactly for Ph and for ``llr``; up to float
rounding for PS embeddings, whose strand symmetry comes from the weights).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from caduceus_plugin.errors import InputError
from caduceus_plugin.genome import Genome, VariantRow, read_vcf
from caduceus_plugin.jobs.outputs import check_output_path, output_format, write_table
from caduceus_plugin.jobs.predictor import Predictor, load_predictor
from caduceus_plugin.sequence import MASK_ID, reverse_complement_ids, token_ids

#: averaging window of the authors' VEP embeddings (bp)
DEFAULT_WINDOW = 1536


def seq_ids(seqs: Sequence[str], n_to_pad: bool = True) -> torch.Tensor:
    """ACGTN strings of equal length -> ``(b, l)`` token ids (N -> [PAD] with ``n_to_pad``)."""
    return torch.from_numpy(token_ids(seqs, n_to_pad=n_to_pad))


def _window_mean(features: torch.Tensor, centers: Sequence[int], half: int) -> torch.Tensor:
    """Mean of ``features[i, c-half : c+half+1]`` (clipped to the sequence) per row -> ``(b, d)``, in float64."""
    length = features.shape[1]
    rows = []
    for i, c in enumerate(centers):
        lo, hi = max(0, c - half), min(length, c + half + 1)
        rows.append(features[i, lo:hi].double().mean(dim=0))
    return torch.stack(rows)


@torch.inference_mode()
def score_sequences(
    mlm: Any,
    ref_seqs: Sequence[str],
    alt_seqs: Sequence[str],
    centers: Sequence[int],
    alleles: Sequence[tuple[str, str] | None],
    window: int,
    n_to_pad: bool = True,
) -> dict[str, np.ndarray]:
    """Scores of ref/alt window pairs (cleaned ACGTN strings of equal length).

    Args:
        mlm: a ``CaduceusForMaskedLM`` (eval mode).
        ref_seqs, alt_seqs: the windows.
        centers: index of the variant in each window (the features are averaged around it).
        alleles: ``(ref_base, alt_base)`` for an SNV (its LLR is computed at ``centers[i]``), None otherwise.
        window: averaging window width; positions within ``window // 2`` of the centre are averaged.
        n_to_pad: map N to [PAD].

    Returns:
        ``llr`` (NaN where ``alleles`` is None), ``emb_l2``, ``emb_cosine`` (float64 arrays).
    """
    from caduceus_plugin.models.caduceus.features import embed

    device = next(mlm.parameters()).device
    b = len(ref_seqs)
    ids = seq_ids([*ref_seqs, *alt_seqs], n_to_pad).to(device)
    feats = embed(mlm, ids)
    pooled = _window_mean(feats, [*centers, *centers], window // 2)
    ref_e, alt_e = pooled[:b], pooled[b:]
    l2 = (alt_e - ref_e).norm(dim=-1)
    cos = 1 - torch.nn.functional.cosine_similarity(alt_e, ref_e, dim=-1)

    llr = np.full(b, np.nan)
    snv = [i for i, a in enumerate(alleles) if a is not None]
    if snv:
        length = ids.shape[1]
        masked = ids[snv].clone()
        pos = torch.tensor([centers[i] for i in snv], device=device)
        masked[torch.arange(len(snv), device=device), pos] = MASK_ID
        cmap = torch.tensor(mlm.config.full_complement_map(), device=device)
        logits = mlm(torch.cat([masked, reverse_complement_ids(masked, cmap)])).logits.double().log_softmax(-1)
        k = torch.arange(len(snv), device=device)
        ref_t = torch.from_numpy(token_ids("".join(alleles[i][0] for i in snv), n_to_pad=False)).to(device)  # type: ignore[index]
        alt_t = torch.from_numpy(token_ids("".join(alleles[i][1] for i in snv), n_to_pad=False)).to(device)  # type: ignore[index]
        fwd = logits[k, pos]
        rev = logits[len(snv) + k, length - 1 - pos]
        llr_fwd = fwd[k, alt_t] - fwd[k, ref_t]
        llr_rev = rev[k, cmap[alt_t]] - rev[k, cmap[ref_t]]
        llr[snv] = ((llr_fwd + llr_rev) / 2).cpu().numpy()
    return {"llr": llr, "emb_l2": l2.cpu().numpy(), "emb_cosine": cos.cpu().numpy()}


# ---------------------------------------------------------------------------------------------------------------
# VCF -> table


def _classify(row: VariantRow, genome: Genome) -> tuple[str, str, str, str]:
    """(variant_type, status, reason, fasta_ref) of one allele, before scoring."""
    ref, alt = row.ref, row.alt
    if alt in (None, ".", ""):
        return "none", "skipped", "no ALT allele", ""
    if alt == "*" or alt.startswith("<") or "[" in alt or "]" in alt:
        return "symbolic", "skipped", f"symbolic ALT allele {alt} is not scored", ""
    if set(ref) - set("ACGTN") or set(alt) - set("ACGTN"):
        return "other", "skipped", "REF/ALT must consist of A, C, G, T, N", ""
    kind = "snv" if len(ref) == len(alt) == 1 else ("mnp" if len(ref) == len(alt) else "indel")
    if row.chrom not in genome:
        return kind, "skipped", f"chromosome {row.chrom} is not in the FASTA", ""
    start = row.pos - 1
    if start + len(ref) > genome.lengths[row.chrom]:
        return kind, "skipped", f"REF runs past the end of chromosome {row.chrom}", ""
    fasta_ref, _ = genome.fetch(row.chrom, start, start + len(ref))
    if fasta_ref != ref:
        return (
            kind,
            "ref_mismatch",
            f"REF {ref} does not match the FASTA ({fasta_ref}) at {row.chrom}:{row.pos}",
            fasta_ref,
        )
    if ref == alt:
        return kind, "skipped", "ALT equals REF", fasta_ref
    if kind != "snv":
        return kind, "ok", "llr is computed for SNVs only", fasta_ref
    return kind, "ok", "", fasta_ref


def variant_windows(row: VariantRow, genome: Genome, seq_len: int) -> tuple[str, str, int, int]:
    """Ref and alt windows (length ``seq_len``, variant start at ``seq_len // 2``), the centre and N padding."""
    c = seq_len // 2
    p = row.pos - 1
    ref_seq, padded = genome.fetch(row.chrom, p - c, p - c + seq_len)
    if len(row.ref) == len(row.alt) == 1:
        alt_seq = ref_seq[:c] + row.alt + ref_seq[c + 1 :]
    else:
        tail = seq_len - c - len(row.alt)
        right, _ = genome.fetch(row.chrom, p + len(row.ref), p + len(row.ref) + max(tail, 0))
        alt_seq = (ref_seq[:c] + row.alt + right)[:seq_len]
    return ref_seq, alt_seq, c, padded


def score_variants(
    fasta: str | os.PathLike[str],
    vcf: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    model: str | None = None,
    weights: str | os.PathLike[str] | None = None,
    seq_len: int | None = None,
    window: int | None = None,
    batch_size: int = 8,
    device: str | None = None,
    fmt: str | None = None,
    progress: bool = False,
    predictor: Predictor | None = None,
) -> Any:
    """Score every allele of ``vcf``; returns a polars DataFrame (one row per split allele, in VCF order) and
    writes it to ``out`` (parquet or TSV) when given.

    Raises:
        InputError: bad VCF/FASTA/arguments, a model without a masked-LM head (nothing is written).
        CheckpointError: missing or corrupt weights.
    """
    import polars as pl


    if batch_size < 1:
        raise InputError(f"--batch-size must be a positive integer, got {batch_size}")
    if window is not None and window < 1:
        raise InputError(f"--window must be a positive integer, got {window}")
    if out is not None:
        fmt = output_format(out, fmt, allowed=("parquet", "tsv"))
        check_output_path(out)
    rows = read_vcf(vcf)
    genome = Genome(fasta)
    genome.check_chroms([r.chrom for r in rows], source=Path(vcf).name, allow_partial=True)
    if predictor is None:
        predictor = load_predictor(model, weights, device=device, seq_len=seq_len)
    if predictor.mlm is None:
        raise InputError(
            f"score-variants needs a Caduceus masked-LM checkpoint (a directory with config.json + "
            f"model.safetensors); {predictor.source} has no masked-LM head"
        )
    length = predictor.seq_len
    if window is None:
        window = min(DEFAULT_WINDOW, length)

    info = [_classify(r, genome) for r in rows]
    n = len(rows)
    llr, l2, cos = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    padded = np.zeros(n, dtype=np.int64)
    todo = [i for i, (_, status, _, _) in enumerate(info) if status == "ok"]
    from tqdm import tqdm

    with tqdm(total=len(todo), unit="variant", disable=not progress, file=sys.stderr) as bar:
        for k in range(0, len(todo), batch_size):
            chunk = todo[k : k + batch_size]
            wins = [variant_windows(rows[i], genome, length) for i in chunk]
            for i, w in zip(chunk, wins):
                padded[i] = w[3]
            alleles = [(rows[i].ref, rows[i].alt) if info[i][0] == "snv" else None for i in chunk]
            scores = score_sequences(
                predictor.mlm,
                [w[0] for w in wins],
                [w[1] for w in wins],
                [w[2] for w in wins],
                alleles,
                window,
                predictor.n_to_pad,
            )
            llr[chunk], l2[chunk], cos[chunk] = scores["llr"], scores["emb_l2"], scores["emb_cosine"]
            bar.update(len(chunk))

    def nullable(a: np.ndarray) -> list[float | None]:
        return [None if np.isnan(v) else float(v) for v in a]

    table = pl.DataFrame(
        {
            "chrom": [r.chrom for r in rows],
            "pos": [r.pos for r in rows],
            "id": [r.id for r in rows],
            "ref": [r.ref for r in rows],
            "alt": [r.alt for r in rows],
            "allele": [r.allele for r in rows],
            "variant_type": [x[0] for x in info],
            "status": [x[1] for x in info],
            "reason": [x[2] or None for x in info],
            "fasta_ref": [x[3] for x in info],
            "llr": nullable(llr),
            "emb_l2": nullable(l2),
            "emb_cosine": nullable(cos),
            "padded_bp": padded,
        },
        schema_overrides={
            "pos": pl.Int64,
            "allele": pl.Int64,
            "reason": pl.Utf8,
            "llr": pl.Float64,
            "emb_l2": pl.Float64,
            "emb_cosine": pl.Float64,
        },
    )
    if out is not None:
        write_table(table, Path(out), fmt)
    return table
