"""Task heads: ``(N, C, L)`` features -> ``(N, n_tasks, L_out)`` logits, following gReLU's conventions.

Every head has ``n_tasks`` and ``in_channels`` (gReLU reads both) and returns logits: gReLU's ``LightningModel``
applies the activation itself. Weights are initialised explicitly (:meth:`reset_parameters`).

On RC-invariant backbone features (``f(rc x) == flipL(f(x))``, e.g. :class:`~caduceus_plugin.models.caduceus.trunk.
CaduceusTrunk` with ``features="rc_invariant"``):

* :class:`PooledHead` is RC-invariant (mean over valid positions, then a linear map);
* :class:`TrackHead` is RC-equivariant: ``head(f(rc x)) == head(f(x)).flip(-1)``, as long as ``L`` is a multiple
  of ``bin_size``;
* :class:`MLMHead` gives per-position nucleotide logits (A, C, G, T).

Heads that accept a ``mask`` keyword (``takes_mask = True``) get the valid-position mask ``(N, L)`` of the input
from :class:`~caduceus_plugin.hosts.grelu.models.ComponentModel`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from caduceus_plugin.errors import CaduceusError


def _check_positive(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise CaduceusError(f"{name} must be a positive integer, got {value!r}")


class PooledHead(nn.Module):
    """Sequence-level classification/regression: mean over valid positions -> (dropout) -> linear.

    Args:
        n_tasks: outputs per sequence.
        in_channels: feature channels ``C``.
        hidden: optional hidden width of a 2-layer MLP (GELU) instead of a single linear layer.
        dropout: dropout before the last layer.
    """

    takes_mask = True

    def __init__(self, n_tasks: int, in_channels: int, hidden: int | None = None, dropout: float = 0.0):
        super().__init__()
        _check_positive("n_tasks", n_tasks)
        _check_positive("in_channels", in_channels)
        self.n_tasks, self.in_channels = n_tasks, in_channels
        layers: list[nn.Module] = []
        width = in_channels
        if hidden:
            _check_positive("hidden", hidden)
            layers += [nn.Linear(in_channels, hidden), nn.GELU()]
            width = hidden
        layers += [nn.Dropout(dropout), nn.Linear(width, n_tasks)]
        self.mlp = nn.Sequential(*layers)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=1 / math.sqrt(m.in_features))
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is None:
            pooled = x.mean(dim=-1)
        else:
            m = mask.to(x.dtype)[:, None, :]
            pooled = (x * m).sum(dim=-1) / m.sum(dim=-1).clamp(min=1)
        return self.mlp(pooled)[..., None]  # (N, n_tasks, 1)


class TrackHead(nn.Module):
    """Binned tracks/profiles: average ``bin_size`` positions, 1x1 conv to ``n_tasks``, crop ``crop_len`` bins.

    ``L_out = L / bin_size - 2 * crop_len`` (gReLU's convention; ``crop_len`` counts output bins per side).

    Args:
        n_tasks: output tracks.
        in_channels: feature channels ``C``.
        bin_size: positions per output bin (``L`` must be a multiple).
        crop_len: bins removed from each end.
        hidden: optional width of a pointwise hidden layer (GELU) before the output conv.
    """

    def __init__(self, n_tasks: int, in_channels: int, bin_size: int = 1, crop_len: int = 0, hidden: int | None = None):
        super().__init__()
        for name, value in (("n_tasks", n_tasks), ("in_channels", in_channels), ("bin_size", bin_size)):
            _check_positive(name, value)
        if not isinstance(crop_len, int) or crop_len < 0:
            raise CaduceusError(f"crop_len must be a non-negative integer, got {crop_len!r}")
        self.n_tasks, self.in_channels, self.bin_size, self.crop_len = n_tasks, in_channels, bin_size, crop_len
        layers: list[nn.Module] = []
        width = in_channels
        if hidden:
            _check_positive("hidden", hidden)
            layers += [nn.Conv1d(in_channels, hidden, 1), nn.GELU()]
            width = hidden
        layers.append(nn.Conv1d(width, n_tasks, 1))
        self.conv = nn.Sequential(*layers)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.conv:
            if isinstance(m, nn.Conv1d):
                nn.init.normal_(m.weight, std=1 / math.sqrt(m.in_channels))
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, length = x.shape
        if length % self.bin_size:
            raise CaduceusError(f"input length {length} is not a multiple of bin_size {self.bin_size}")
        n_bins = length // self.bin_size
        if n_bins <= 2 * self.crop_len:
            raise CaduceusError(f"{n_bins} bins leave nothing after cropping {self.crop_len} bins from each end")
        if self.bin_size > 1:
            x = x.reshape(n, c, n_bins, self.bin_size).mean(-1)
        if self.crop_len:
            x = x[..., self.crop_len : n_bins - self.crop_len]
        return self.conv(x)


class MLMHead(nn.Module):
    """Per-position nucleotide logits ``(N, 4, L)`` in ACGT order (gReLU ``task="multiclass"`` over 4 classes).

    Args:
        in_channels: feature channels ``C``.
        n_tasks: must be 4 (kept as an argument for gReLU's ``n_tasks`` bookkeeping).
    """

    def __init__(self, in_channels: int, n_tasks: int = 4):
        super().__init__()
        _check_positive("in_channels", in_channels)
        if n_tasks != 4:
            raise CaduceusError(f"the MLM head predicts the 4 nucleotides; n_tasks must be 4, got {n_tasks}")
        self.n_tasks, self.in_channels = n_tasks, in_channels
        self.norm = nn.LayerNorm(in_channels)
        self.proj = nn.Linear(in_channels, n_tasks)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.norm.reset_parameters()
        nn.init.normal_(self.proj.weight, std=1 / math.sqrt(self.in_channels))
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.norm(x.transpose(1, 2))).transpose(1, 2)
