"""The pre-training corpus: a FASTA as token ids, the held-out validation region, training windows, and masking.

Data. Every contig of the FASTA is read once into memory as token ids (one byte per base; N and any other
non-ACGT letter become ``[PAD]`` (id 4), as in the authors' hg38 data). One contiguous *validation region*
(``CHR:START-END``, 1-based inclusive; :func:`caduceus_plugin.genome.parse_region`) is held out: training windows
are drawn uniformly at random from the rest and never overlap it. Windows with more than ``max_n_frac`` N/[PAD]
are skipped.

Masking (BERT recipe, spec §5.1): 15 % of the A/C/G/T positions are selected ([PAD] is never selected); of those
80 % become ``[MASK]``, 10 % a random nucleotide (A/C/G/T; the authors draw from the whole 12-token vocabulary) and
10 % stay unchanged. The loss is the cross-entropy over the selected positions only.

Next-token prediction (the causal models of the ablations): the input is the window itself and position ``i`` is
scored on the base at ``i + 1`` (:func:`next_token_labels`); [PAD] targets and the last position do not count.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from caduceus_plugin.errors import InputError
from caduceus_plugin.genome import Region, fasta_records
from caduceus_plugin.sequence import A_ID, MASK_ID, PAD_ID, T_ID, reverse_complement_ids, token_ids

#: Label value for positions that do not count in the loss.
IGNORE_INDEX = -100


# ---------------------------------------------------------------------------------------------------------------
# sequence data


def seq_to_ids(seq: str | bytes) -> np.ndarray:
    """DNA text -> uint8 token ids; A/C/G/T (any case) -> 7..10, everything else (N, IUPAC) -> [PAD] (4)."""
    return token_ids(seq, n_to_pad=True, dtype=np.uint8)


def load_fasta(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """All contigs of a FASTA (plain or bgzip-compressed) as uint8 token ids, read one at a time through
    :func:`caduceus_plugin.genome.fasta_records` (the index is built when missing).

    Raises:
        InputError: missing, unreadable or empty FASTA.
    """
    return {name: seq_to_ids(seq) for name, seq in fasta_records(path)}


@dataclass
class GenomeSplit:
    """Training segments (contig, start, end) and the held-out validation region of a genome."""

    genome: dict[str, np.ndarray]
    val_region: Region
    train_segments: list[tuple[str, int, int]]

    @property
    def train_bases(self) -> int:
        return sum(e - s for _, s, e in self.train_segments)

    def train_ids(self) -> Iterator[np.ndarray]:
        for c, s, e in self.train_segments:
            yield self.genome[c][s:e]

    def val_ids(self) -> np.ndarray:
        r = self.val_region
        return self.genome[r.chrom][r.start : r.end]


def split_genome(genome: dict[str, np.ndarray], val_region: Region | None, seq_len: int) -> GenomeSplit:
    """Hold out ``val_region`` (default: the last 5 % of the longest contig); the rest is for training."""
    if not genome:
        raise InputError("the FASTA file holds no sequences")
    if val_region is None:
        chrom = max(genome, key=lambda c: len(genome[c]))
        n = len(genome[chrom])
        val_region = Region(chrom, n - max(seq_len, n // 20), n)
    if val_region.chrom not in genome:
        raise InputError(
            f"validation region {val_region}: contig {val_region.chrom!r} is not in the FASTA "
            f"(contigs: {', '.join(list(genome)[:5])})"
        )
    n = len(genome[val_region.chrom])
    if val_region.end > n:
        raise InputError(f"validation region {val_region} runs past the end of contig {val_region.chrom} ({n:,} bp)")
    if len(val_region) < seq_len:
        raise InputError(f"validation region {val_region} is shorter than one window ({seq_len} bp)")
    segments = []
    for chrom, ids in genome.items():
        pieces = [(0, len(ids))]
        if chrom == val_region.chrom:
            pieces = [(0, val_region.start), (val_region.end, len(ids))]
        segments += [(chrom, s, e) for s, e in pieces if e - s >= seq_len]
    if not segments:
        raise InputError(f"no training sequence of at least {seq_len} bp is left outside the validation region")
    return GenomeSplit(genome, val_region, segments)


class WindowSampler:
    """Random training windows ``(batch, seq_len)`` of token ids from the training segments."""

    def __init__(self, split: GenomeSplit, seq_len: int, rng: np.random.Generator, max_n_frac: float = 0.5):
        self.split, self.seq_len, self.rng, self.max_n_frac = split, seq_len, rng, max_n_frac
        starts = np.array([e - s - seq_len + 1 for _, s, e in split.train_segments], dtype=np.float64)
        self.weights = starts / starts.sum()

    def window(self) -> np.ndarray:
        for _ in range(10_000):
            k = self.rng.choice(len(self.weights), p=self.weights)
            chrom, s, e = self.split.train_segments[k]
            start = s + int(self.rng.integers(0, e - s - self.seq_len + 1))
            win = self.split.genome[chrom][start : start + self.seq_len]
            if np.count_nonzero(win == PAD_ID) <= self.max_n_frac * self.seq_len:
                return win
        raise InputError(f"could not find training windows with at most {self.max_n_frac:.0%} N; is the FASTA all N?")

    def batch(self, batch_size: int, rc_augment: bool = False) -> np.ndarray:
        rows = []
        for _ in range(batch_size):
            win = self.window()
            if rc_augment and self.rng.random() < 0.5:
                win = reverse_complement_ids(win)
            rows.append(win)
        return np.stack(rows)


def tile_windows(ids: np.ndarray, seq_len: int, n_windows: int | None = None, max_n_frac: float = 0.1) -> np.ndarray:
    """Non-overlapping windows over ``ids`` with at most ``max_n_frac`` [PAD]; ``n_windows`` evenly spaced ones.

    Returns ``(n, seq_len)`` uint8 ids (n may be 0).
    """
    n = len(ids) // seq_len
    wins = ids[: n * seq_len].reshape(n, seq_len)
    wins = wins[(wins == PAD_ID).sum(axis=1) <= max_n_frac * seq_len]
    if n_windows is not None and len(wins) > n_windows:
        wins = wins[np.linspace(0, len(wins) - 1, n_windows).round().astype(int)]
    return np.ascontiguousarray(wins)


# ---------------------------------------------------------------------------------------------------------------
# masking


def mask_tokens(
    ids: torch.Tensor,
    generator: torch.Generator | None = None,
    mask_prob: float = 0.15,
    mask_frac: float = 0.8,
    random_frac: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT-style MLM corruption of ``ids`` (b, l) long.

    Returns ``(inputs, labels)``: ``labels`` holds the original id at the selected positions and
    :data:`IGNORE_INDEX` elsewhere. Only A/C/G/T positions can be selected ([PAD], i.e. N, never is).
    """
    eligible = (ids >= A_ID) & (ids <= T_ID)
    selected = (torch.rand(ids.shape, generator=generator) < mask_prob) & eligible
    action = torch.rand(ids.shape, generator=generator)
    random_ids = torch.randint(A_ID, T_ID + 1, ids.shape, generator=generator)
    inputs = ids.clone()
    inputs = torch.where(selected & (action < mask_frac), torch.full_like(ids, MASK_ID), inputs)
    use_random = selected & (action >= mask_frac) & (action < mask_frac + random_frac)
    inputs = torch.where(use_random, random_ids, inputs)
    labels = torch.where(selected, ids, torch.full_like(ids, IGNORE_INDEX))
    return inputs, labels


def next_token_labels(ids: torch.Tensor) -> torch.Tensor:
    """Next-token targets of ``ids`` (b, l) long: ``labels[:, i] = ids[:, i + 1]`` where that is A/C/G/T, else
    :data:`IGNORE_INDEX` (and always at the last position)."""
    labels = torch.full_like(ids, IGNORE_INDEX)
    nxt = ids[:, 1:]
    labels[:, :-1] = torch.where((nxt >= A_ID) & (nxt <= T_ID), nxt, torch.full_like(nxt, IGNORE_INDEX))
    return labels


@dataclass
class MaskedSet:
    """Fixed validation windows with their corruption: ``ids`` original, ``inputs`` corrupted, ``labels``."""

    ids: torch.Tensor
    inputs: torch.Tensor
    labels: torch.Tensor

    @classmethod
    def build(cls, windows: np.ndarray, seed: int, mask_prob: float = 0.15) -> MaskedSet:
        ids = torch.from_numpy(np.asarray(windows, dtype=np.int64))
        gen = torch.Generator().manual_seed(seed)
        inputs, labels = mask_tokens(ids, gen, mask_prob=mask_prob)
        return cls(ids, inputs, labels)

    @classmethod
    def next_token(cls, windows: np.ndarray) -> MaskedSet:
        """The same windows for next-token prediction: inputs uncorrupted, labels from :func:`next_token_labels`."""
        ids = torch.from_numpy(np.asarray(windows, dtype=np.int64))
        return cls(ids, ids.clone(), next_token_labels(ids))

    @property
    def n_masked(self) -> int:
        return int((self.labels != IGNORE_INDEX).sum())
