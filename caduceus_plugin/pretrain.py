"""Masked-language-model pre-training of Caduceus on a FASTA file (spec §5.1), and its evaluation.

Data. Every contig of the FASTA is read once into memory as token ids (one byte per base; N and any other
non-ACGT letter become ``[PAD]`` (id 4), as in the authors' hg38 data). One contiguous *validation region*
(``CHR:START-END``, 1-based inclusive) is held out: training windows are drawn uniformly at random from the rest
and never overlap it. Windows with more than ``max_n_frac`` N/[PAD] are skipped.

Masking (BERT recipe, spec §5.1): 15 % of the A/C/G/T positions are selected ([PAD] is never selected); of those
80 % become ``[MASK]``, 10 % a random nucleotide (A/C/G/T; the authors draw from the whole 12-token vocabulary) and
10 % stay unchanged. The loss is the cross-entropy over the selected positions only.

Caduceus-PS is RC-equivariant and trains without RC augmentation; Caduceus-Ph windows are reverse-complemented
with probability 0.5. AdamW (betas 0.9/0.95, weight decay on matrices only), linear warm-up then cosine decay,
gradient clipping, periodic validation on a fixed set of masked windows, checkpoints written with
:func:`caduceus_plugin.checkpoint.save_pretrained` (atomic). Everything is seeded: the same arguments on the same
machine give the same weights.

Evaluation (:func:`evaluate_windows`) reports, on the same masked positions, the model's MLM loss and masked-token
accuracy and two count baselines: *unigram* (the most frequent training base; cross-entropy from base
frequencies) and *k-mer* (the base given ``k`` true bases on each side, counted on the training sequence with
add-one smoothing). The k-mer baseline sees the true neighbouring bases even where the model's input is masked,
so it is, if anything, favoured.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import platform
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from caduceus_plugin.errors import InputError
from caduceus_plugin.fileio import atomic_write_text
from caduceus_plugin.tokenizer import A_ID, MASK_ID, PAD_ID, T_ID

#: Label value for positions that do not count in the loss.
IGNORE_INDEX = -100
NUC_IDS = (A_ID, A_ID + 1, A_ID + 2, T_ID)  # A C G T

_LUT = np.full(256, PAD_ID, dtype=np.uint8)
for _i, _c in enumerate("ACGT"):
    _LUT[ord(_c)] = _LUT[ord(_c.lower())] = A_ID + _i
_COMP = np.arange(256, dtype=np.uint8)
_COMP[[A_ID, A_ID + 1, A_ID + 2, T_ID]] = [T_ID, T_ID - 1, T_ID - 2, A_ID]


# ---------------------------------------------------------------------------------------------------------------
# sequence data


@dataclass(frozen=True)
class Region:
    """A genomic interval, stored 0-based half-open; written as 1-based inclusive ``CHR:START-END``."""

    chrom: str
    start: int
    end: int

    def __str__(self) -> str:
        return f"{self.chrom}:{self.start + 1}-{self.end}"

    def __len__(self) -> int:
        return self.end - self.start


def parse_region(text: str) -> Region:
    """``CHR:START-END`` (1-based, inclusive, commas allowed) -> :class:`Region`."""
    m = re.fullmatch(r"\s*([^:\s]+):([\d,]+)-([\d,]+)\s*", text)
    if not m:
        raise InputError(f"region {text!r} is not CHR:START-END (1-based, inclusive), e.g. 20:1-4000000")
    start, end = int(m.group(2).replace(",", "")), int(m.group(3).replace(",", ""))
    if start < 1 or end < start:
        raise InputError(f"region {text!r}: need 1 <= START <= END")
    return Region(m.group(1), start - 1, end)


def seq_to_ids(seq: str | bytes) -> np.ndarray:
    """DNA text -> uint8 token ids; A/C/G/T (any case) -> 7..10, everything else (N, IUPAC) -> [PAD] (4)."""
    raw = seq.encode("ascii", "replace") if isinstance(seq, str) else seq
    return _LUT[np.frombuffer(raw, dtype=np.uint8)]


def rc_ids_np(ids: np.ndarray) -> np.ndarray:
    """Reverse complement of token ids along the last axis ([PAD] stays [PAD])."""
    return _COMP[ids[..., ::-1]]


def load_fasta(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """All contigs of a FASTA (plain or bgzip-compressed with its index) as uint8 token ids."""
    import pyfaidx

    path = Path(path)
    if not path.is_file():
        raise InputError(f"FASTA file {path} does not exist")
    try:
        fa = pyfaidx.Fasta(str(path), sequence_always_upper=True, rebuild=False, build_index=True)
    except Exception as err:  # pyfaidx raises many types for malformed input
        raise InputError(f"cannot read FASTA {path}: {err}") from None
    try:
        return {name: seq_to_ids(str(fa[name][:])) for name in fa.keys()}
    finally:
        fa.close()


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
                win = rc_ids_np(win)
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


# ---------------------------------------------------------------------------------------------------------------
# count baselines


def unigram_counts(seqs: Sequence[np.ndarray] | Iterator[np.ndarray]) -> np.ndarray:
    """Counts of A, C, G, T (float64, shape (4,)) over token-id arrays."""
    counts = np.zeros(4)
    for s in seqs:
        counts += np.bincount(s.ravel(), minlength=256)[A_ID : T_ID + 1]
    return counts


def _symbols(ids: np.ndarray) -> np.ndarray:
    """ids -> 0..3 for A/C/G/T and 4 for anything else."""
    sym = ids.astype(np.int64) - A_ID
    return np.where((sym >= 0) & (sym <= 3), sym, 4)


def _context_codes(sym: np.ndarray, k: int) -> np.ndarray:
    """Per position, a code of the ``k`` symbols on each side (outside the array -> symbol 4). Last axis = length."""
    pad = np.full((*sym.shape[:-1], k), 4, dtype=np.int64)
    padded = np.concatenate([pad, sym, pad], axis=-1)
    n = sym.shape[-1]
    code = np.zeros(sym.shape, dtype=np.int64)
    for off in [*range(-k, 0), *range(1, k + 1)]:
        code = code * 5 + padded[..., k + off : k + off + n]
    return code


class KmerModel:
    """Predicts a base from the ``k`` bases on each side (counts with add-one smoothing)."""

    def __init__(self, k: int):
        self.k = k
        self.counts = np.zeros((5 ** (2 * k), 4))

    def fit(self, seqs: Sequence[np.ndarray] | Iterator[np.ndarray], chunk: int = 4_000_000) -> KmerModel:
        for s in seqs:
            # chunks overlap by k on each side so that every position sees its true context
            for a in range(0, len(s), chunk):
                lo, hi = max(0, a - self.k), min(len(s), a + chunk + self.k)
                sym = _symbols(s[lo:hi])
                code = _context_codes(sym, self.k)
                inner = slice(a - lo, a - lo + min(chunk, len(s) - a))
                sym, code = sym[inner], code[inner]
                ok = sym < 4
                self._add(code[ok], sym[ok])
        return self

    def _add(self, code: np.ndarray, sym: np.ndarray) -> None:
        flat = np.bincount(code * 4 + sym, minlength=self.counts.size)
        self.counts += flat.reshape(self.counts.shape)

    def probs(self, windows: np.ndarray) -> np.ndarray:
        """``(b, l, 4)`` smoothed P(base | context) for every position of ``windows`` (b, l) token ids."""
        code = _context_codes(_symbols(windows), self.k)
        c = self.counts[code] + 1.0
        return c / c.sum(-1, keepdims=True)


# ---------------------------------------------------------------------------------------------------------------
# evaluation


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

    @property
    def n_masked(self) -> int:
        return int((self.labels != IGNORE_INDEX).sum())


@torch.no_grad()
def model_metrics(model: torch.nn.Module, data: MaskedSet, batch_size: int = 16) -> dict[str, float]:
    """Metrics of ``model`` on the selected positions of ``data``.

    ``loss``: MLM cross-entropy over the full vocabulary (nats, the training objective); ``nuc_loss``: the same
    renormalised over A/C/G/T (comparable with the baselines); ``accuracy``: argmax over A/C/G/T equals the
    original base; ``accuracy_mask_only`` / ``nuc_loss_mask_only``: the same on the positions whose input was
    ``[MASK]`` (80 %), where the model cannot see the base.
    """
    was_training = model.training
    model.eval()
    sums = dict.fromkeys(("loss", "nuc_loss", "correct", "nuc_loss_m", "correct_m", "n", "n_m"), 0.0)
    nuc = torch.tensor(NUC_IDS)
    try:
        for i in range(0, len(data.inputs), batch_size):
            inputs, labels = data.inputs[i : i + batch_size], data.labels[i : i + batch_size]
            sel = labels != IGNORE_INDEX
            if not sel.any():
                continue
            logits = model(inputs).logits.float()[sel]  # (m, vocab)
            target = labels[sel]
            is_mask = inputs[sel] == MASK_ID
            nuc_logits = logits[:, nuc]
            nuc_ce = F.cross_entropy(nuc_logits, target - A_ID, reduction="none")
            hit = (nuc_logits.argmax(-1) == target - A_ID).double()
            sums["loss"] += F.cross_entropy(logits, target, reduction="sum").item()
            sums["nuc_loss"] += nuc_ce.sum().item()
            sums["correct"] += hit.sum().item()
            sums["nuc_loss_m"] += nuc_ce[is_mask].sum().item()
            sums["correct_m"] += hit[is_mask].sum().item()
            sums["n"] += int(sel.sum())
            sums["n_m"] += int(is_mask.sum())
    finally:
        model.train(was_training)
    n, n_m = sums["n"], max(sums["n_m"], 1.0)
    if n == 0:
        raise InputError("no masked positions to evaluate: the evaluation windows hold no A/C/G/T")
    return {
        "loss": sums["loss"] / n,
        "nuc_loss": sums["nuc_loss"] / n,
        "accuracy": sums["correct"] / n,
        "nuc_loss_mask_only": sums["nuc_loss_m"] / n_m,
        "accuracy_mask_only": sums["correct_m"] / n_m,
        "n_masked": int(n),
        "n_mask_token": int(sums["n_m"]),
    }


def baseline_metrics(
    data: MaskedSet, unigram: np.ndarray, kmer_models: Sequence[KmerModel] = ()
) -> dict[str, dict[str, Any]]:
    """Accuracy and cross-entropy (nats) of the unigram and k-mer baselines on the selected positions of ``data``
    (``*_mask_only``: on those whose input was ``[MASK]``, as in :func:`model_metrics`)."""
    sel = (data.labels != IGNORE_INDEX).numpy()
    target = data.labels.numpy()[sel] - A_ID
    if len(target) == 0:
        raise InputError("no masked positions to evaluate: the evaluation windows hold no A/C/G/T")
    is_mask = data.inputs.numpy()[sel] == MASK_ID

    def summary(pred: np.ndarray, p_true: np.ndarray) -> dict[str, float]:
        hit, ce = pred == target, -np.log(p_true)
        return {
            "accuracy": float(hit.mean()),
            "loss": float(ce.mean()),
            "accuracy_mask_only": float(hit[is_mask].mean()) if is_mask.any() else float("nan"),
            "loss_mask_only": float(ce[is_mask].mean()) if is_mask.any() else float("nan"),
        }

    p = (np.asarray(unigram, dtype=np.float64) + 1.0) / (np.sum(unigram) + 4.0)
    best = int(np.argmax(p))
    out: dict[str, dict[str, Any]] = {
        "unigram": {**summary(np.full(len(target), best), p[target]), "predicts": "ACGT"[best]}
    }
    windows = data.ids.numpy()
    for km in kmer_models:
        probs = km.probs(windows)[sel]
        out[f"kmer_k{km.k}"] = {
            **summary(probs.argmax(-1), probs[np.arange(len(target)), target]),
            "context": f"{km.k} base{'s' if km.k > 1 else ''} each side",
        }
    return out


def evaluate_windows(
    model: torch.nn.Module,
    windows: np.ndarray,
    unigram: np.ndarray,
    kmer_models: Sequence[KmerModel] = (),
    seed: int = 12345,
    batch_size: int = 16,
) -> dict[str, Any]:
    """Model vs baselines on the same masked positions of ``windows`` (n, l) token ids.

    Returns ``{"model": {...}, "baselines": {...}, "margin_vs_unigram": acc_model - acc_unigram,
    "margin_vs_best_kmer": ..., the same ``*_mask_only``, "n_windows", "n_masked"}``.
    """
    data = MaskedSet.build(windows, seed)
    res: dict[str, Any] = {"model": model_metrics(model, data, batch_size)}
    res["baselines"] = baseline_metrics(data, unigram, kmer_models)
    acc = res["model"]["accuracy"]
    acc_m = res["model"]["accuracy_mask_only"]
    res["margin_vs_unigram"] = acc - res["baselines"]["unigram"]["accuracy"]
    res["margin_vs_unigram_mask_only"] = acc_m - res["baselines"]["unigram"]["accuracy_mask_only"]
    kmers = [v for k, v in res["baselines"].items() if k.startswith("kmer")]
    if kmers:
        res["margin_vs_best_kmer"] = acc - max(v["accuracy"] for v in kmers)
        res["margin_vs_best_kmer_mask_only"] = acc_m - max(v["accuracy_mask_only"] for v in kmers)
    res["n_windows"], res["n_masked"], res["mask_seed"] = len(windows), data.n_masked, seed
    return res


# ---------------------------------------------------------------------------------------------------------------
# training


@dataclass
class PretrainConfig:
    """Arguments of :func:`pretrain` (the CLI's flags)."""

    fasta: str
    out: str
    rcps: bool = True
    d_model: int = 96
    n_layer: int = 4
    seq_len: int = 1024
    batch_size: int = 4
    steps: int = 2000
    lr: float = 2e-3
    min_lr_ratio: float = 0.05
    warmup_frac: float = 0.1
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    mask_prob: float = 0.15
    val_region: str | None = None
    val_windows: int = 64
    val_every: int = 250
    max_n_frac: float = 0.5
    seed: int = 0
    threads: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        for name in ("d_model", "n_layer", "seq_len", "batch_size", "steps", "val_windows", "val_every", "threads"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(self, name)}")
        if not self.lr > 0:
            raise InputError(f"--lr must be positive, got {self.lr}")
        if not 0 < self.mask_prob < 1:
            raise InputError(f"mask probability must be in (0, 1), got {self.mask_prob}")


def lr_at(step: int, total: int, lr: float, warmup_frac: float = 0.1, min_lr_ratio: float = 0.05) -> float:
    """Linear warm-up over ``warmup_frac * total`` steps, then cosine decay to ``min_lr_ratio * lr``."""
    warm = max(1, round(warmup_frac * total))
    if step < warm:
        return lr * (step + 1) / warm
    t = min(1.0, (step - warm) / max(1, total - warm))
    return lr * (min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on weight matrices only; none on biases, norms, ``A_log``, ``D`` or the (tied) embedding."""
    decay, no_decay, seen = [], [], set()
    for name, p in model.named_parameters():
        if id(p) in seen or not p.requires_grad:
            continue
        seen.add(id(p))
        if p.ndim < 2 or "A_log" in name or name.endswith(".D") or "embedding" in name:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@contextlib.contextmanager
def limited_threads(threads: int) -> Iterator[None]:
    """Run torch (and numba's scan kernels) on ``threads`` CPU threads; restore the previous counts afterwards."""
    import numba

    old_torch, old_numba = torch.get_num_threads(), numba.get_num_threads()
    torch.set_num_threads(threads)
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        torch.set_num_threads(old_torch)
        numba.set_num_threads(old_numba)


def write_json_atomic(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def pretrain(
    cfg: PretrainConfig,
    genome: dict[str, np.ndarray] | None = None,
    log: Callable[[str], None] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Train a Caduceus MLM from scratch; writes ``cfg.out`` (config.json, model.safetensors, training.json).

    Args:
        cfg: the run's settings.
        genome: already-loaded contigs (token ids); default: read ``cfg.fasta``.
        log: called with one line per validation.
        progress: show a tqdm progress bar.

    Returns:
        the ``training.json`` contents.
    """

    cfg.validate()
    if Path(cfg.out).exists() and not Path(cfg.out).is_dir():
        raise InputError(f"--out {cfg.out} exists and is not a directory; choose a directory path")
    with limited_threads(cfg.threads):
        return _pretrain(cfg, genome, log or (lambda s: None), progress)


def _pretrain(
    cfg: PretrainConfig, genome: dict[str, np.ndarray] | None, log: Callable[[str], None], progress: bool
) -> dict[str, Any]:
    from caduceus_plugin.checkpoint import save_pretrained
    from caduceus_plugin.config import CaduceusConfig
    from caduceus_plugin.models.caduceus import CaduceusForMaskedLM

    t_load = time.time()
    if genome is None:
        genome = load_fasta(cfg.fasta)
    split = split_genome(genome, parse_region(cfg.val_region) if cfg.val_region else None, cfg.seq_len)
    val_windows = tile_windows(split.val_ids(), cfg.seq_len, cfg.val_windows)
    if len(val_windows) == 0:
        raise InputError(f"validation region {split.val_region} has no window of {cfg.seq_len} bp that is mostly ACGT")
    val_set = MaskedSet.build(val_windows, cfg.seed + 1, cfg.mask_prob)
    unigram = unigram_counts(split.train_ids())
    base = baseline_metrics(val_set, unigram)["unigram"]
    log(
        f"data: {sum(map(len, genome.values())):,} bp in {len(genome)} contig(s); train {split.train_bases:,} bp; "
        f"validation {split.val_region} ({len(val_windows)} windows, {val_set.n_masked:,} masked); "
        f"loaded in {time.time() - t_load:.1f} s"
    )

    torch.manual_seed(cfg.seed)
    mcfg = CaduceusConfig(
        d_model=cfg.d_model,
        n_layer=cfg.n_layer,
        rcps=cfg.rcps,
        pad_token_id=PAD_ID,
        extra={"seq_len": cfg.seq_len, **cfg.extra},
    )
    model = CaduceusForMaskedLM(mcfg)
    model.backbone.gradient_checkpointing = False  # small models: memory is not the limit, speed is
    model.train()
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=cfg.betas)
    sampler = WindowSampler(split, cfg.seq_len, np.random.default_rng(cfg.seed), cfg.max_n_frac)
    mask_gen = torch.Generator().manual_seed(cfg.seed + 2)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)

    info: dict[str, Any] = {
        "settings": {k: v for k, v in dataclasses.asdict(cfg).items() if k != "extra"},
        "model": {
            "variant": "Caduceus-PS" if cfg.rcps else "Caduceus-Ph",
            "parameters": model.num_parameters(),
            "rc_augmentation": not cfg.rcps,
        },
        "data": {
            "fasta": str(cfg.fasta),
            "contigs": {c: len(v) for c, v in genome.items()},
            "validation_region": str(split.val_region),
            "train_segments": [str(Region(*s)) for s in split.train_segments],
            "train_bases": split.train_bases,
            "train_acgt_bases": int(unigram.sum()),
            "unigram_counts_ACGT": [int(c) for c in unigram],
            "val_windows": len(val_windows),
            "val_masked_positions": val_set.n_masked,
        },
        "masking": {
            "prob": cfg.mask_prob,
            "mask": 0.8,
            "random_nucleotide": 0.1,
            "unchanged": 0.1,
            "N": "[PAD], never masked",
        },
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "machine": f"{platform.machine()} {platform.processor() or ''} ({os.cpu_count()} cpus)".strip(),
            "threads": cfg.threads,
        },
        "val_unigram": base,
        "history": [],
    }

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, unit="step", file=sys.stderr)
    m0 = model_metrics(model, val_set)
    info["initial"] = {"val_loss": m0["loss"], "val_nuc_loss": m0["nuc_loss"], "val_accuracy": m0["accuracy"]}
    log(f"step 0: val loss {m0['loss']:.4f}, val acc {m0['accuracy']:.4f} (unigram {base['accuracy']:.4f})")
    t0 = time.time()
    running, n_running = 0.0, 0
    tokens = 0
    for step in range(cfg.steps):
        lr = lr_at(step, cfg.steps, cfg.lr, cfg.warmup_frac, cfg.min_lr_ratio)
        for g in opt.param_groups:
            g["lr"] = lr
        batch = torch.from_numpy(sampler.batch(cfg.batch_size, rc_augment=not cfg.rcps).astype(np.int64))
        inputs, labels = mask_tokens(batch, mask_gen, cfg.mask_prob)
        loss = model(inputs, labels=labels, ignore_index=IGNORE_INDEX).loss
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss became {loss.item()} at step {step + 1}; lower --lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        tokens += batch.numel()
        running += loss.item()
        n_running += 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.1e}")
        if (step + 1) % cfg.val_every == 0 or step + 1 == cfg.steps:
            m = model_metrics(model, val_set)
            rec = {
                "step": step + 1,
                "lr": lr,
                "train_loss": running / n_running,
                "grad_norm": float(gnorm),
                "val_loss": m["loss"],
                "val_nuc_loss": m["nuc_loss"],
                "val_accuracy": m["accuracy"],
                "tokens_seen": tokens,
                "elapsed_s": round(time.time() - t0, 1),
            }
            info["history"].append(rec)
            running, n_running = 0.0, 0
            save_pretrained(model, out)
            info["final"] = rec
            info["wall_time_s"] = rec["elapsed_s"]
            write_json_atomic(out / "training.json", info)
            log(
                f"step {step + 1}/{cfg.steps}: train loss {rec['train_loss']:.4f}, val loss {m['loss']:.4f}, "
                f"val acc {m['accuracy']:.4f} (unigram {base['accuracy']:.4f}), {tokens:,} tokens, "
                f"{rec['elapsed_s']:.0f} s"
            )
    if bar is not None:
        bar.close()
    return info


# ---------------------------------------------------------------------------------------------------------------
# evaluating a checkpoint on a region


def evaluate_checkpoint(
    weights: str | os.PathLike[str],
    fasta: str | os.PathLike[str],
    region: str,
    seq_len: int | None = None,
    n_windows: int | None = 256,
    ks: Sequence[int] = (1, 2, 3),
    seed: int = 12345,
    threads: int = 1,
    exclude: Sequence[str] = (),
    batch_size: int = 16,
) -> dict[str, Any]:
    """Masked-token accuracy and MLM loss of a checkpoint on ``region`` vs unigram and k-mer baselines.

    Baselines are counted on every base of the FASTA outside ``region`` and the ``exclude`` regions.
    ``seq_len`` defaults to the checkpoint's ``seq_len`` (config.json), else 1024.
    """

    with limited_threads(threads):
        return _evaluate_checkpoint(weights, fasta, region, seq_len, n_windows, ks, seed, exclude, batch_size)


def _evaluate_checkpoint(
    weights: str | os.PathLike[str],
    fasta: str | os.PathLike[str],
    region: str,
    seq_len: int | None,
    n_windows: int | None,
    ks: Sequence[int],
    seed: int,
    exclude: Sequence[str],
    batch_size: int,
) -> dict[str, Any]:
    from caduceus_plugin.checkpoint import from_pretrained

    model = from_pretrained(weights)
    if seq_len is None:
        seq_len = int(model.config.extra.get("seq_len", 1024))
    genome = load_fasta(fasta)
    reg = parse_region(region)
    split = split_genome(genome, reg, seq_len)
    held = [reg] + [parse_region(r) for r in exclude]
    train = []
    for c, s, e in split.train_segments:
        pieces = [(s, e)]
        for h in held[1:]:
            if h.chrom == c:
                pieces = [(a, b) for a0, b0 in pieces for a, b in ((a0, min(b0, h.start)), (max(a0, h.end), b0))]
        train += [genome[c][a:b] for a, b in pieces if b > a]
    windows = tile_windows(split.val_ids(), seq_len, n_windows)
    if len(windows) == 0:
        raise InputError(f"region {reg} has no {seq_len}-bp window that is mostly A/C/G/T")
    kmers = [KmerModel(k).fit(train) for k in ks]
    res = evaluate_windows(model, windows, unigram_counts(train), kmers, seed=seed, batch_size=batch_size)
    res.update(
        weights=str(weights),
        fasta=str(fasta),
        region=str(reg),
        seq_len=seq_len,
        baseline_training_bases=int(sum(len(t) for t in train)),
    )
    return res
