"""kipoi entry point of this Caduceus model (model.yaml: ``defined_as: model.CaduceusKipoiModel``).

The class lives in the caduceus-plugin package (``pip install caduceus-plugin``); see its docstring for inputs
(one-hot (N, 4, L), ACGT) and outputs (RC-invariant pooled embeddings (N, d_model), float32).
"""

from __future__ import annotations

from caduceus_plugin.kipoi_model import CaduceusKipoiModel

__all__ = ["CaduceusKipoiModel"]
