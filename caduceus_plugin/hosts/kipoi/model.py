"""A kipoi model class for Caduceus: one-hot DNA in, RC-invariant pooled embeddings out.

``kipoi.get_model(dir, source="dir")`` builds it from the ``args`` of an exported ``model.yaml`` (see
:mod:`caduceus_plugin.hosts.kipoi.export`). Inputs are kipoiseq ``SeqIntervalDl`` batches: float one-hot
``(N, 4, L)`` in A, C, G, T order (``alphabet_axis: 0``; ``(N, L, 4)`` is accepted too), N as a column of 0.25s
(kipoiseq) or zeros. Outputs are ``(N, d_model)`` float32: the mean over length of the RC-invariant per-position
features of :func:`caduceus_plugin.models.caduceus.features.embed` (PS: strand average; Ph: post-hoc
conjoining), so an interval and its reverse complement give the same row.

Unlike ``kipoi.model.PyTorchModel``, prediction runs under ``torch.no_grad()`` (no autograd graph is kept).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

try:
    from kipoi.model import BaseModel
except ImportError as err:  # the [kipoi] extra is not installed
    raise ImportError(
        "caduceus_plugin.hosts.kipoi.model needs kipoi: pip install 'caduceus-plugin[kipoi]'"
    ) from err

from caduceus_plugin.errors import InputError
from caduceus_plugin.models.caduceus.checkpoint import from_pretrained
from caduceus_plugin.models.caduceus.features import embed, mean_pool
from caduceus_plugin.sequence import onehot_to_ids, tokenize


def _pick_device(device: str | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class CaduceusKipoiModel(BaseModel):
    """Caduceus (PS or Ph) as a kipoi model.

    Args:
        weights: checkpoint directory (``config.json`` + ``model.safetensors``); a relative path is taken from the
            current directory, which kipoi sets to the model directory while it builds the model.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
        n_to_pad: map N to the [PAD] token, as in the authors' pre-training data (use with the released weights).
    """

    MODEL_PACKAGE = "caduceus-plugin"  # kipoi warns unless model.yaml's dependencies list it

    def __init__(self, weights: str | os.PathLike[str], device: str | None = "auto", n_to_pad: bool = False):
        self.weights = Path(weights).resolve()
        self.device = _pick_device(device)
        self.n_to_pad = bool(n_to_pad)
        self.model = from_pretrained(self.weights, device=self.device)
        self.rcps = bool(self.model.config.rcps)
        self.embedding_dim = self.model.config.d_model

    def _pooled(self, ids: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            feats = embed(self.model, ids.to(self.device))
            return mean_pool(feats).float().cpu().numpy().astype(np.float32, copy=False)

    def predict_on_batch(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        """One-hot ``(N, 4, L)`` (or ``(N, L, 4)``) -> pooled RC-invariant embeddings ``(N, d_model)`` float32."""
        t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
        if t.dim() != 3 or 4 not in (t.shape[1], t.shape[2]):
            raise InputError(
                f"expected one-hot DNA of shape (batch, 4, length) or (batch, length, 4), got {tuple(t.shape)}; "
                "use kipoiseq.dataloaders.SeqIntervalDl (alphabet_axis 0)"
            )
        if t.shape[1] != 4:  # channels last (SeqIntervalDl's default alphabet_axis=1)
            t = t.transpose(1, 2)
        if t.shape[0] == 0:
            return np.zeros((0, self.embedding_dim), dtype=np.float32)
        return self._pooled(onehot_to_ids(t.float(), n_to_pad=self.n_to_pad))

    def predict_on_seqs(self, seqs: str | Sequence[str]) -> np.ndarray:
        """Pooled embeddings ``(N, d_model)`` of DNA strings (kipoi#443); sequences of equal length share a batch."""
        if isinstance(seqs, str):
            seqs = [seqs]
        out = np.zeros((len(seqs), self.embedding_dim), dtype=np.float32)
        by_len: dict[int, list[int]] = {}
        for i, s in enumerate(seqs):
            if not s:
                raise InputError(f"sequence {i} is empty")
            by_len.setdefault(len(s), []).append(i)
        for idx in by_len.values():
            out[idx] = self._pooled(tokenize([seqs[i] for i in idx], n_to_pad=self.n_to_pad))
        return out
