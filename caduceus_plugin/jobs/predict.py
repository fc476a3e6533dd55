"""``caduceus predict``: run a model on the intervals of a BED file and write one row per BED line.

Each interval is resized around its centre to the model's input length, extracted from the FASTA (reverse
complement for ``-`` strand rows; ``N`` beyond a chromosome end, flagged in ``off_chrom_end``/``padded_bp``),
one-hot encoded, batched through a DataLoader and run in inference mode.

Output columns: the BED's own columns (``chrom``, ``start``, ``end`` and whichever of ``name``, ``score``,
``strand``, ``col7``, ... it has), ``window_start``/``window_end`` (the genomic window the model saw), ``padded_bp``
and ``off_chrom_end``, then

* ``emb_0`` ... ``emb_{D-1}``: RC-invariant mean-pooled embeddings (bare Caduceus backbone);
* ``pred_<task>``: one prediction per task (a gReLU checkpoint with one output per sequence);
* ``pred_<task>``: a list of per-bin values (parquet; ``pred_<task>_bin<j>`` columns in TSV) for a track model,
  in genome (``+`` strand) orientation; ``--format bigwig`` writes ``<out>.<task>.bw`` per task instead (bins in
  genome coordinates; where windows overlap, the mean of the covering bins).

Formats: parquet and TSV (polars), HDF5 (h5py: ``/intervals/<column>``, ``/preds``, attributes), bigWig
(pyBigWig). Every file is written under a temporary name in the target folder and renamed when complete.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from caduceus_plugin.errors import InputError
from caduceus_plugin.fileio import atomic_paths
from caduceus_plugin.genome import Genome, read_bed, resize
from caduceus_plugin.jobs.outputs import (
    FORMATS,
    bigwig_paths,
    check_output_path,
    output_format,
    write_bigwig_tracks,
    write_table,
)
from caduceus_plugin.jobs.predictor import Predictor, auto_batch_size, check_memory, load_predictor
from caduceus_plugin.jobs.runner import Devices, job_devices, job_signature, run_job, shard_folder
from caduceus_plugin.sequence import onehot

# ---------------------------------------------------------------------------------------------------------------
# data


class WindowDataset(torch.utils.data.Dataset):
    """One-hot ``(4, L)`` windows of a FASTA, ``-`` strand ones reverse-complemented (N-padded off the ends)."""

    def __init__(self, genome: Genome, chroms: list[str], starts: list[int], ends: list[int], strands: list[str]):
        self.genome, self.chroms, self.starts, self.ends, self.strands = genome, chroms, starts, ends, strands

    def __len__(self) -> int:
        return len(self.chroms)

    def __getitem__(self, i: int) -> dict[str, Any]:
        seq, _ = self.genome.extract(self.chroms[i], self.starts[i], self.ends[i], self.strands[i])
        return {"index": i, "x": torch.from_numpy(onehot([seq])[0])}


# ---------------------------------------------------------------------------------------------------------------
# predict


@dataclass
class Predictions:
    """Result of :func:`predict`: ``intervals`` (BED columns + window columns, polars), ``values`` (``(N, D)``,
    ``(N, T)`` or ``(N, T, L_out)``; tracks in genome orientation), the predictor used and the output paths."""

    intervals: Any
    values: np.ndarray
    predictor: Predictor
    paths: list[Path]

    def table(self, fmt: str = "parquet") -> Any:
        return prediction_table(self.intervals, self.values, self.predictor, wide_tracks=fmt == "tsv")


def prediction_table(intervals: Any, values: np.ndarray, predictor: Predictor, wide_tracks: bool = False) -> Any:
    import polars as pl

    kind = predictor.output_kind
    if kind == "embedding":
        cols = pl.from_numpy(values.astype(np.float32), schema=predictor.names, orient="row")
    elif kind == "tasks":
        cols = pl.from_numpy(values.astype(np.float32), schema=[f"pred_{n}" for n in predictor.names], orient="row")
    elif wide_tracks:
        n, t, l = values.shape
        names = [f"pred_{name}_bin{j}" for name in predictor.names for j in range(l)]
        cols = pl.from_numpy(values.reshape(n, t * l).astype(np.float32), schema=names, orient="row")
    else:
        cols = pl.DataFrame(
            [pl.Series(f"pred_{name}", values[:, k, :].astype(np.float32)) for k, name in enumerate(predictor.names)]
        )
    clash = set(intervals.columns) & set(cols.columns)
    if clash:
        cols = cols.rename({c: f"{c}_pred" for c in clash})
    return pl.concat([intervals, cols], how="horizontal")


def predict(
    fasta: str | os.PathLike[str],
    bed: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    model: str | None = None,
    weights: str | os.PathLike[str] | None = None,
    seq_len: int | None = None,
    batch_size: int | None = None,
    device: str | None = None,
    fmt: str | None = None,
    strict: bool = False,
    progress: bool = False,
    num_workers: int = 0,
    predictor: Predictor | None = None,
    devices: Devices | None = None,
    resume: bool = False,
    log_every: float = 30.0,
) -> Predictions:
    """Predict on every interval of ``bed``; write ``out`` (format from ``fmt`` or the suffix) unless it is None.

    Batches run (:func:`caduceus_plugin.jobs.runner.run_job`) on ``devices`` (default: one process on ``device``,
    no Lightning; several: DDP through Lightning) and stream into ``OUT.parts/``; ``resume`` continues a killed run
    from it. On a DDP rank other than 0 the result has no values (``values`` is None) and nothing is written.

    Raises:
        InputError: bad BED/FASTA/arguments (nothing is written).
        CheckpointError: missing or corrupt weights.
    """
    devices = job_devices(devices, device)
    if out is not None:
        fmt = output_format(out, fmt)
        check_output_path(out, inputs=[weights], files={"FASTA": fasta, "BED": bed})
    intervals_bed = read_bed(bed)
    genome = Genome(fasta)
    genome.check_bed(intervals_bed)
    if predictor is None:
        predictor = load_predictor(model, weights, device="cpu", seq_len=seq_len)  # the runner moves it
    batch_size = auto_batch_size(predictor, batch_size)
    check_memory(predictor, batch_size)
    if fmt == "bigwig" and predictor.output_kind != "tracks":
        raise InputError(
            f"--format bigwig needs a model with per-bin track outputs; {predictor.source} gives "
            f"{predictor.output_kind}: write parquet, tsv or h5 instead"
        )

    width = predictor.seq_len
    windows = [resize(c, s, e, width) for c, s, e in zip(intervals_bed.chrom, intervals_bed.start, intervals_bed.end)]
    wstart = [w[0] for w in windows]
    wend = [w[1] for w in windows]
    padded = [genome.padding(c, s, e) for c, s, e in zip(intervals_bed.chrom, wstart, wend)]
    if strict and any(padded):
        i = next(k for k, p in enumerate(padded) if p)
        c = intervals_bed.chrom[i]
        raise InputError(
            f"{intervals_bed.path.name} line {intervals_bed.lines[i]}: the {width}-bp window {c}:{wstart[i]}-{wend[i]} "
            f"runs off chromosome {c} ({genome.lengths[c]} bp); without --strict it is padded with N and flagged"
        )
    strands = intervals_bed.strand
    dataset = WindowDataset(genome, intervals_bed.chrom, wstart, wend, strands)
    signature = job_signature("predict", {"fasta": fasta, "bed": bed, "weights": weights},
                              model=model, source=predictor.source, seq_len=width, fmt=fmt, strict=strict)
    with shard_folder(out, signature) as shards:
        arrays = run_job(
            dataset, lambda b: {"values": predictor.fn(b["x"]).float()}, {"model": predictor.module}, shards,
            batch_size=batch_size, devices=devices, resume=resume, num_workers=num_workers, progress=progress,
            unit="window", desc="predict", log_every=log_every,
        )
        if arrays is None:  # a DDP rank other than 0: rank 0 writes the output
            return Predictions(intervals=None, values=None, predictor=predictor, paths=[])  # type: ignore[arg-type]
        values = arrays["values"]
        if predictor.output_kind == "tracks":  # to genome orientation
            minus = np.array([s == "-" for s in strands])
            values[minus] = values[minus][..., ::-1]
        result = _result(intervals_bed, wstart, wend, padded, values, predictor)
        if out is not None:
            result.paths = write_predictions(result, Path(out), fmt or "parquet", genome)
        shards.remove()
    return result


def _result(intervals_bed: Any, wstart: list[int], wend: list[int], padded: list[int], values: np.ndarray,
            predictor: Predictor) -> Predictions:
    import polars as pl

    intervals = intervals_bed.to_polars().with_columns(
        pl.Series("window_start", wstart, dtype=pl.Int64),
        pl.Series("window_end", wend, dtype=pl.Int64),
        pl.Series("padded_bp", padded, dtype=pl.Int64),
        pl.Series("off_chrom_end", [p > 0 for p in padded], dtype=pl.Boolean),
    )
    return Predictions(intervals=intervals, values=values, predictor=predictor, paths=[])


# ---------------------------------------------------------------------------------------------------------------
# writers


def write_predictions(result: Predictions, out: Path, fmt: str, genome: Genome | None = None) -> list[Path]:
    if fmt in ("parquet", "tsv"):
        write_table(result.table(fmt), out, fmt)
        return [out]
    if fmt == "h5":
        write_h5(result, out)
        return [out]
    if fmt == "bigwig":
        if genome is None:
            raise InputError("bigWig output needs the FASTA (chromosome sizes)")
        return write_bigwigs(result, out, genome)
    raise InputError(f"unknown output format {fmt!r}: choose one of {', '.join(FORMATS)}")


def write_h5(result: Predictions, out: Path) -> None:
    import h5py
    import polars as pl

    p = result.predictor
    with atomic_paths([out]) as (tmp,), h5py.File(tmp, "w") as f:
        group = f.create_group("intervals")
        for name in result.intervals.columns:
            col = result.intervals[name]
            if col.dtype == pl.Utf8:
                group.create_dataset(name, data=col.fill_null("").to_list(), dtype=h5py.string_dtype())
            else:
                group.create_dataset(name, data=col.to_numpy())
        f.create_dataset("preds", data=result.values.astype(np.float32), compression="gzip")
        f.attrs["output_kind"] = p.output_kind
        f.attrs["names"] = np.array(p.names, dtype=h5py.string_dtype())
        f.attrs["seq_len"] = p.seq_len
        f.attrs["source"] = p.source
        if p.output_kind == "tracks":
            f.attrs["bin_size"] = p.bin_size or 0
            f.attrs["crop_len"] = p.crop_len


def track_bins(result: Predictions) -> tuple[np.ndarray, np.ndarray]:
    """Genome-orientation bin starts and ends ``(N, L_out)`` of a track prediction."""
    p = result.predictor
    assert p.bin_size is not None
    n_bins = result.values.shape[-1]
    j = np.arange(n_bins)
    ws = result.intervals["window_start"].to_numpy()[:, None]
    we = result.intervals["window_end"].to_numpy()[:, None]
    cols = result.intervals.columns
    minus = (result.intervals["strand"].fill_null(".") == "-").to_numpy() if "strand" in cols else None
    starts = ws + (p.crop_len + j) * p.bin_size
    if minus is not None and minus.any():
        # the model saw the reverse complement: its bin j counts from the window end; values were flipped
        starts_minus = we - (p.crop_len + n_bins - j) * p.bin_size
        starts = np.where(minus[:, None], starts_minus, starts)
    return starts, starts + p.bin_size


def write_bigwigs(result: Predictions, out: Path, genome: Genome) -> list[Path]:
    p = result.predictor
    targets = bigwig_paths(out, p.names)
    starts, ends = track_bins(result)
    n, t, n_bins = result.values.shape
    chroms = np.repeat(result.intervals["chrom"].to_numpy(), n_bins)
    values = result.values.transpose(0, 2, 1).reshape(n * n_bins, t)
    write_bigwig_tracks(targets, [(c, genome.lengths[c]) for c in genome.names], chroms, starts.ravel(), ends.ravel(),
                        values)
    return targets
