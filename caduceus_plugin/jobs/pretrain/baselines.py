"""Count baselines for masked-token prediction: *unigram* (the most frequent training base; cross-entropy from base
frequencies) and *k-mer* (the base given ``k`` true bases on each side, counted on the training sequence with
add-one smoothing). The k-mer baseline sees the true neighbouring bases even where the model's input is masked, so
it is, if anything, favoured.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from caduceus_plugin.errors import InputError
from caduceus_plugin.jobs.pretrain.corpus import IGNORE_INDEX, MaskedSet
from caduceus_plugin.sequence import A_ID, MASK_ID, T_ID


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
