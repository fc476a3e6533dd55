"""``caduceus logits``: per-position masked-LM log-probabilities of A, C, G and T over the intervals of a BED file.

For every position ``p`` of every interval, the model sees a window of its full input length with ``p`` replaced
by ``[MASK]`` and gives ``log p(A|C|G|T)`` there (normalised over the four bases). Windows are tiled: the
positions of an interval are taken ``stride`` at a time, and the positions of one tile share a window centred on
the tile's centre, so every position lies within ``stride / 2`` of its window's centre and has at least
``seq_len / 2 - stride / 2`` bases of context on each side. Near a chromosome end the window runs past it and
that part is ``N`` (padding; ``padded_bp`` counts it). Each position still costs one forward pass: the
throughput is the model's windows per second.

Strands: ``+``/``.`` intervals run on the forward strand, ``-`` intervals on the reverse complement (the window
reverse-complemented, the masked position mirrored), and every row is reported in genome orientation (``logp_A``
is the log-probability of A on the forward strand). Caduceus-PS is RC-equivariant, so both strands give the same
numbers up to float rounding; Caduceus-Ph is conjoined (its forward and reverse-complement logits averaged).

Columns: ``interval`` (BED row), ``chrom``, ``pos`` (0-based), ``ref`` (the genome base, N included),
``logp_A``, ``logp_C``, ``logp_G``, ``logp_T``, ``logp_ref`` (null for N), ``entropy`` (nats), ``padded_bp``.
An ``OUT`` ending in ``.bw`` writes one bigWig per derived track (``OUT.logp_ref.bw``, ``OUT.entropy.bw``),
overlapping intervals averaged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from caduceus_plugin.errors import InputError
from caduceus_plugin.genome import Genome, read_bed
from caduceus_plugin.jobs.outputs import (
    bigwig_paths,
    check_output_path,
    output_format,
    write_bigwig_tracks,
    write_table,
)
from caduceus_plugin.jobs.predictor import auto_batch_size, check_memory, load_predictor
from caduceus_plugin.jobs.runner import Devices, job_devices, job_signature, run_job, shard_folder
from caduceus_plugin.sequence import A_ID, MASK_ID, T_ID, reverse_complement, token_ids

BASES = "ACGT"
DERIVED = ("logp_ref", "entropy")
DEFAULT_STRIDE = 128
#: intervals longer than this are refused (one forward pass per position): split them, or raise ``max_positions``
DEFAULT_MAX_POSITIONS = 1_000_000


@dataclass
class _Tile:
    chrom: str
    wstart: int  # window start (genome coordinates; may be < 0 or past the end: N-padded)
    minus: bool


class PositionDataset(torch.utils.data.Dataset):
    """Item ``k``: the window of the ``k``-th position (token ids, in the strand the model reads) and the index of
    the masked position in it. Consecutive items share a tile, whose window is fetched once per worker."""

    def __init__(self, genome: Genome, tiles: list[_Tile], tile_of: np.ndarray, offset: np.ndarray, seq_len: int,
                 n_to_pad: bool):
        self.genome, self.tiles, self.tile_of, self.offset = genome, tiles, tile_of, offset
        self.seq_len, self.n_to_pad = seq_len, n_to_pad
        self._cached: tuple[int, np.ndarray, int] | None = None

    def __len__(self) -> int:
        return len(self.tile_of)

    def _window(self, t: int) -> tuple[np.ndarray, int]:
        if self._cached is None or self._cached[0] != t:
            tile = self.tiles[t]
            seq, padded = self.genome.fetch(tile.chrom, tile.wstart, tile.wstart + self.seq_len)
            if tile.minus:
                seq = reverse_complement(seq)
            self._cached = (t, token_ids(seq, n_to_pad=self.n_to_pad), padded)
        return self._cached[1], self._cached[2]

    def __getitem__(self, k: int) -> dict[str, Any]:
        t = int(self.tile_of[k])
        ids, padded = self._window(t)
        pos = int(self.offset[k])  # in genome orientation within the window
        if self.tiles[t].minus:
            pos = self.seq_len - 1 - pos
        masked = ids.copy()
        masked[pos] = MASK_ID
        return {"index": k, "ids": torch.from_numpy(masked), "pos": pos, "minus": self.tiles[t].minus,
                "padded": padded}


def base_logprobs(mlm: Any, ids: torch.Tensor, pos: torch.Tensor, minus: torch.Tensor) -> torch.Tensor:
    """``(b, 4)`` float64 log-probabilities of A, C, G, T (genome orientation) at the masked ``pos`` of each row.

    Args:
        mlm: a ``CaduceusForMaskedLM``.
        ids: ``(b, l)`` token ids as the model reads them (reverse-complemented rows where ``minus``).
        pos: ``(b,)`` index of the masked position in ``ids``.
        minus: ``(b,)`` bool: the row is a reverse-complemented window (its bases are complemented back).
    """
    k = torch.arange(len(ids), device=ids.device)
    logits = mlm(ids).logits[k, pos].double()
    nuc = slice(A_ID, T_ID + 1)
    if not mlm.config.rcps:  # Ph: conjoin with the reverse-complement pass (PS is RC-equivariant already)
        from caduceus_plugin.sequence import reverse_complement_ids

        rc = reverse_complement_ids(ids, mlm.config.full_complement_map())
        rc_logits = mlm(rc).logits[k, ids.shape[1] - 1 - pos].double()
        logits = (logits[:, nuc] + rc_logits[:, nuc].flip(-1)) / 2  # A C G T <- complement T G C A
    else:
        logits = logits[:, nuc]
    logp = logits.log_softmax(-1)
    return torch.where(minus[:, None], logp.flip(-1), logp)  # a minus-strand row's A is the genome's T


def logits(
    fasta: str | os.PathLike[str],
    bed: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    model: str | None = None,
    weights: str | os.PathLike[str] | None = None,
    seq_len: int | None = None,
    stride: int = DEFAULT_STRIDE,
    batch_size: int | None = None,
    device: str | None = None,
    fmt: str | None = None,
    progress: bool = False,
    devices: Devices | None = None,
    resume: bool = False,
    num_workers: int = 0,
    log_every: float = 30.0,
    max_positions: int = DEFAULT_MAX_POSITIONS,
) -> Any:
    """Per-position log-probabilities for every position of every BED interval; see the module docstring.

    Returns a polars DataFrame (None on a DDP rank other than 0) and writes ``out`` (parquet, tsv, or bigWigs).

    Raises:
        InputError: bad inputs, a model without a masked-LM head, more than ``max_positions`` positions.
    """
    import polars as pl

    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise InputError(f"--stride must be a positive integer, got {stride!r}")
    devices = job_devices(devices, device)
    if out is not None:
        fmt = output_format(out, fmt, allowed=("parquet", "tsv", "bigwig"))
        check_output_path(out, inputs=[weights], files={"FASTA": fasta, "BED": bed})
    intervals = read_bed(bed)
    genome = Genome(fasta)
    genome.check_bed(intervals)
    total = sum(e - s for s, e in zip(intervals.start, intervals.end))
    if total == 0:
        raise InputError(f"the intervals of {Path(bed).name} cover no position (all have start == end)")
    if total > max_positions:
        raise InputError(
            f"{Path(bed).name} covers {total:,} positions and each costs one forward pass: split the job (at most "
            f"{max_positions:,} positions per run) or pass a larger max_positions"
        )
    predictor = load_predictor(model, weights, device="cpu", seq_len=seq_len)
    if predictor.mlm is None:
        raise InputError(f"logits needs a Caduceus masked-LM checkpoint; {predictor.source} has no masked-LM head")
    batch_size = auto_batch_size(predictor, batch_size)
    check_memory(predictor, batch_size, windows_per_item=1 if predictor.mlm.config.rcps else 2)
    length = predictor.seq_len
    if stride > length:
        raise InputError(f"--stride {stride} is longer than the model's window ({length}): use at most {length}")

    tiles: list[_Tile] = []
    tile_of, offset, row_interval, row_chrom, row_pos = [], [], [], [], []
    for i, (c, s, e, strand) in enumerate(zip(intervals.chrom, intervals.start, intervals.end, intervals.strand)):
        for t0 in range(s, e, stride):
            t1 = min(t0 + stride, e)
            wstart = (t0 + t1) // 2 - length // 2
            tiles.append(_Tile(c, wstart, strand == "-"))
            positions = np.arange(t0, t1)
            tile_of.append(np.full(len(positions), len(tiles) - 1))
            offset.append(positions - wstart)
            row_interval.append(np.full(len(positions), i))
            row_chrom.extend([c] * len(positions))
            row_pos.append(positions)
    dataset = PositionDataset(genome, tiles, np.concatenate(tile_of), np.concatenate(offset), length,
                              predictor.n_to_pad)
    mlm = predictor.mlm

    def step(b: dict[str, Any]) -> dict[str, torch.Tensor]:
        return {"logp": base_logprobs(mlm, b["ids"], b["pos"], b["minus"]), "padded": b["padded"]}

    signature = job_signature("logits", {"fasta": fasta, "bed": bed, "weights": weights}, model=model,
                              source=predictor.source, seq_len=length, stride=stride, fmt=fmt)
    with shard_folder(out, signature) as shards:
        arrays = run_job(dataset, step, {"mlm": mlm}, shards, batch_size=batch_size, devices=devices, resume=resume,
                         num_workers=num_workers, progress=progress, unit="position", desc="logits",
                         log_every=log_every)
        if arrays is None:
            return None
        logp = arrays["logp"]
        pos = np.concatenate(row_pos)
        chrom = np.array(row_chrom)
        ref = _genome_bases(genome, chrom, pos)
        ref_idx = np.array([BASES.find(b) for b in ref])
        logp_ref = np.where(ref_idx >= 0, logp[np.arange(len(pos)), np.maximum(ref_idx, 0)], np.nan)
        entropy = -(np.exp(logp) * logp).sum(axis=1)
        table = pl.DataFrame(
            {
                "interval": np.concatenate(row_interval).astype(np.int64),
                "chrom": chrom.tolist(),
                "pos": pos.astype(np.int64),
                "ref": list(ref),
                **{f"logp_{b}": logp[:, j] for j, b in enumerate(BASES)},
                "logp_ref": [None if np.isnan(v) else float(v) for v in logp_ref],
                "entropy": entropy,
                "padded_bp": arrays["padded"].astype(np.int64),
            },
            schema_overrides={"logp_ref": pl.Float64},
        )
        if out is not None:
            if fmt == "bigwig":
                write_bigwig_tracks(
                    logits_bigwig_paths(out), [(c, genome.lengths[c]) for c in genome.names], chrom, pos, pos + 1,
                    np.stack([logp_ref, entropy], axis=1),
                )
            else:
                write_table(table, Path(out), fmt or "parquet")
        shards.remove()
    return table


def logits_bigwig_paths(out: str | os.PathLike[str]) -> list[Path]:
    """``OUT.logp_ref.bw`` and ``OUT.entropy.bw`` (a ``.bw`` suffix of ``OUT`` dropped first)."""
    return bigwig_paths(out, list(DERIVED))


def _genome_bases(genome: Genome, chrom: np.ndarray, pos: np.ndarray) -> str:
    """The genome's (cleaned) base at every ``(chrom, pos)``, read once per run of consecutive positions."""
    out: list[str] = []
    start = 0
    for i in range(1, len(pos) + 1):
        if i == len(pos) or chrom[i] != chrom[start] or pos[i] != pos[i - 1] + 1:
            seq, _ = genome.fetch(str(chrom[start]), int(pos[start]), int(pos[i - 1]) + 1)
            out.append(seq)
            start = i
    return "".join(out)
