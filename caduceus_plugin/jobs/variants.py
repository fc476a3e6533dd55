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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from caduceus_plugin.errors import InputError
from caduceus_plugin.genome import Genome, VariantRow, read_vcf
from caduceus_plugin.genome.vcf import write_annotated_vcf
from caduceus_plugin.jobs.outputs import check_output_path, output_format, write_table
from caduceus_plugin.jobs.predictor import Predictor, auto_batch_size, check_memory, load_predictor
from caduceus_plugin.jobs.runner import Devices, job_devices, job_signature, run_job, shard_folder
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
    """Scores of ref/alt window pairs (cleaned ACGTN strings of equal length); see :func:`score_ids`.

    Args:
        alleles: ``(ref_base, alt_base)`` for an SNV (its LLR is computed at ``centers[i]``), None otherwise.
    """
    device = next(mlm.parameters()).device
    ref_tok = [token_ids(a[0], n_to_pad=False)[0] if a is not None else -1 for a in alleles]
    alt_tok = [token_ids(a[1], n_to_pad=False)[0] if a is not None else -1 for a in alleles]
    out = score_ids(
        mlm, seq_ids(ref_seqs, n_to_pad).to(device), seq_ids(alt_seqs, n_to_pad).to(device),
        torch.tensor(list(centers), device=device), torch.tensor(ref_tok, device=device),
        torch.tensor(alt_tok, device=device), window,
    )
    return {k: v.cpu().numpy() for k, v in out.items()}


@torch.inference_mode()
def score_ids(
    mlm: Any,
    ref_ids: torch.Tensor,
    alt_ids: torch.Tensor,
    centers: torch.Tensor,
    ref_tok: torch.Tensor,
    alt_tok: torch.Tensor,
    window: int,
) -> dict[str, torch.Tensor]:
    """Scores of a batch of ref/alt windows.

    Args:
        mlm: a ``CaduceusForMaskedLM`` (eval mode).
        ref_ids, alt_ids: ``(b, l)`` token ids of the windows.
        centers: ``(b,)`` index of the variant in each window (the features are averaged around it).
        ref_tok, alt_tok: ``(b,)`` token ids of an SNV's REF and ALT base (A..T: 7..10), or -1 where no LLR is
            computed (indels, MNPs, alleles with N).
        window: averaging window width; positions within ``window // 2`` of the centre are averaged.

    Returns:
        float64 ``(b,)`` tensors: ``llr`` (NaN where no LLR), ``emb_l2``, ``emb_cosine`` (``1 - cos``), ``emb_dot``
        (inner product of the ref and alt window embeddings), ``emb_ref_norm`` and ``emb_alt_norm``.
    """
    from caduceus_plugin.models.caduceus.features import embed

    device = ref_ids.device
    b, length = ref_ids.shape
    feats = embed(mlm, torch.cat([ref_ids, alt_ids]))
    pooled = _window_mean(feats, [*centers.tolist(), *centers.tolist()], window // 2)
    ref_e, alt_e = pooled[:b], pooled[b:]
    out = {
        "llr": torch.full((b,), float("nan"), dtype=torch.float64, device=device),
        "emb_l2": (alt_e - ref_e).norm(dim=-1),
        "emb_cosine": 1 - torch.nn.functional.cosine_similarity(alt_e, ref_e, dim=-1),
        "emb_dot": (alt_e * ref_e).sum(dim=-1),
        "emb_ref_norm": ref_e.norm(dim=-1),
        "emb_alt_norm": alt_e.norm(dim=-1),
    }
    snv = torch.nonzero((ref_tok >= 0) & (alt_tok >= 0)).flatten()
    if len(snv):
        masked = ref_ids[snv].clone()
        pos = centers[snv]
        k = torch.arange(len(snv), device=device)
        masked[k, pos] = MASK_ID
        cmap = torch.tensor(mlm.config.full_complement_map(), device=device)
        logits = mlm(torch.cat([masked, reverse_complement_ids(masked, cmap)])).logits.double().log_softmax(-1)
        ref_t, alt_t = ref_tok[snv].long(), alt_tok[snv].long()
        fwd = logits[k, pos]
        rev = logits[len(snv) + k, length - 1 - pos]
        llr_fwd = fwd[k, alt_t] - fwd[k, ref_t]
        llr_rev = rev[k, cmap[alt_t]] - rev[k, cmap[ref_t]]
        out["llr"][snv] = (llr_fwd + llr_rev) / 2
    return out


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
    if start < 0:  # POS 0 (a telomere in the VCF spec) or a negative POS: no base of the FASTA to score
        return kind, "skipped", f"POS {row.pos} is before the first base of {row.chrom} (VCF positions are 1-based)", ""
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
    if "N" in ref + alt:
        return kind, "ok", "llr needs REF and ALT in A/C/G/T (N is not a base to score)", fasta_ref
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


class VariantDataset(torch.utils.data.Dataset):
    """Item ``k``: the ref/alt windows (token ids) of the ``k``-th scorable allele, its centre and SNV base ids."""

    def __init__(self, rows: list[VariantRow], snv: list[bool], genome: Genome, seq_len: int, n_to_pad: bool):
        self.rows, self.snv, self.genome, self.seq_len, self.n_to_pad = rows, snv, genome, seq_len, n_to_pad

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, k: int) -> dict[str, Any]:
        row = self.rows[k]
        ref_seq, alt_seq, center, padded = variant_windows(row, self.genome, self.seq_len)
        ids = token_ids([ref_seq, alt_seq], n_to_pad=self.n_to_pad)
        ref_tok = int(token_ids(row.ref, n_to_pad=False)[0]) if self.snv[k] else -1
        alt_tok = int(token_ids(row.alt, n_to_pad=False)[0]) if self.snv[k] else -1
        return {"index": k, "ref": torch.from_numpy(ids[0]), "alt": torch.from_numpy(ids[1]), "center": center,
                "ref_tok": ref_tok, "alt_tok": alt_tok, "padded": padded}


#: Score columns, in table order (float64; null where not computed).
SCORE_COLUMNS = ("llr", "abs_llr", "emb_l2", "emb_cosine", "emb_dot", "emb_ref_norm", "emb_alt_norm")


def score_variants(
    fasta: str | os.PathLike[str],
    vcf: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    model: str | None = None,
    weights: str | os.PathLike[str] | None = None,
    seq_len: int | None = None,
    window: int | None = None,
    batch_size: int | None = None,
    device: str | None = None,
    fmt: str | None = None,
    progress: bool = False,
    predictor: Predictor | None = None,
    devices: Devices | None = None,
    resume: bool = False,
    num_workers: int = 0,
    log_every: float = 30.0,
) -> Any:
    """Score every allele of ``vcf``; returns a polars DataFrame (one row per split allele, in VCF order) and
    writes it to ``out`` when given: Parquet or TSV, or (``.vcf.gz``) the input VCF, every record in order, with
    ``CADUCEUS_*`` INFO fields added, bgzipped and tabix-indexed.

    Batches run on ``devices`` (:func:`caduceus_plugin.jobs.runner.run_job`) and stream into ``OUT.parts/``
    (``resume`` continues a killed run); on a DDP rank other than 0 nothing is written and None is returned.

    Raises:
        InputError: bad VCF/FASTA/arguments, a model without a masked-LM head (nothing is written).
        CheckpointError: missing or corrupt weights.
    """
    import polars as pl

    if window is not None and window < 1:
        raise InputError(f"--window must be a positive integer, got {window}")
    devices = job_devices(devices, device)
    if out is not None:
        fmt = output_format(out, fmt, allowed=("parquet", "tsv", "vcf"))
        check_output_path(out, inputs=[weights], files={"FASTA": fasta, "VCF": vcf})
    rows = read_vcf(vcf)
    genome = Genome(fasta)
    genome.check_chroms([r.chrom for r in rows], source=Path(vcf).name, allow_partial=True)
    if predictor is None:
        predictor = load_predictor(model, weights, device="cpu", seq_len=seq_len)  # the runner moves it
    if predictor.mlm is None:
        raise InputError(
            f"score-variants needs a Caduceus masked-LM checkpoint (a directory with config.json + "
            f"model.safetensors); {predictor.source} has no masked-LM head"
        )
    batch_size = auto_batch_size(predictor, batch_size, windows_per_item=2)
    check_memory(predictor, batch_size, windows_per_item=4)  # ref + alt, and the two masked-LM passes
    length = predictor.seq_len
    if window is None:
        window = min(DEFAULT_WINDOW, length)
    elif window > length:  # the average is taken inside the model's window: a longer one would silently shrink
        raise InputError(
            f"--window {window} is longer than the model's input of {length} bp, inside which the features are "
            f"averaged: use --window {length} or less, or a longer --seq-len"
        )

    info = [_classify(r, genome) for r in rows]
    todo = [i for i, (_, status, _, _) in enumerate(info) if status == "ok"]
    snv = [info[i][0] == "snv" and not info[i][2] for i in todo]
    dataset = VariantDataset([rows[i] for i in todo], snv, genome, length, predictor.n_to_pad)
    mlm = predictor.mlm

    def step(b: dict[str, Any]) -> dict[str, torch.Tensor]:
        scores = score_ids(mlm, b["ref"], b["alt"], b["center"], b["ref_tok"], b["alt_tok"], window)
        return {**scores, "padded": b["padded"]}

    signature = job_signature("score-variants", {"fasta": fasta, "vcf": vcf, "weights": weights}, model=model,
                              source=predictor.source, seq_len=length, window=window, fmt=fmt)
    n = len(rows)
    cols = {k: np.full(n, np.nan) for k in SCORE_COLUMNS}
    padded = np.zeros(n, dtype=np.int64)
    with shard_folder(out, signature) as shards:
        if todo:
            arrays = run_job(dataset, step, {"mlm": mlm}, shards, batch_size=batch_size, devices=devices,
                             resume=resume, num_workers=num_workers, progress=progress, unit="variant",
                             desc="score-variants", log_every=log_every)
            if arrays is None:  # a DDP rank other than 0: rank 0 writes the output
                return None
            for k in SCORE_COLUMNS:
                if k in arrays:
                    cols[k][todo] = arrays[k]
            cols["abs_llr"][todo] = np.abs(arrays["llr"])
            padded[todo] = arrays["padded"]

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
                **{k: nullable(cols[k]) for k in SCORE_COLUMNS},
                "padded_bp": padded,
            },
            schema_overrides={"pos": pl.Int64, "allele": pl.Int64, "reason": pl.Utf8,
                              **{k: pl.Float64 for k in SCORE_COLUMNS}},
        )
        if out is not None:
            if fmt == "vcf":
                write_annotated_vcf(vcf, table, Path(out))
            else:
                write_table(table, Path(out), fmt)
        shards.remove()
    return table
