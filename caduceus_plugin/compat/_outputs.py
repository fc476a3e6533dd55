"""Model outputs in the Hugging Face style: attributes, ``out["logits"]``, and ``out[0]`` = the first field that is
set (``to_tuple()`` skips the unset ones), so code that indexes the authors' outputs reads the same values."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, ClassVar

import torch

__all__ = ["BaseModelOutputWithNoAttention", "MaskedLMOutput", "ModelOutput", "SequenceClassifierOutput"]


class ModelOutput(OrderedDict):
    """An ordered mapping of the fields that are not None; fields also read as attributes (None when unset)."""

    _fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **values: Any):
        unknown = set(values) - set(self._fields)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field(s) {sorted(unknown)}; fields: {self._fields}")
        super().__init__((k, values[k]) for k in self._fields if values.get(k) is not None)

    def __getattr__(self, name: str) -> Any:
        if name in type(self)._fields:
            return self.get(name)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in type(self)._fields:
            raise AttributeError(f"{type(self).__name__} has no field {name!r}")
        if value is None:
            self.pop(name, None)
        else:
            self[name] = value
            self.move_to_end(name)
            for later in self._fields[self._fields.index(name) + 1 :]:
                if later in self:
                    self.move_to_end(later)

    def __getitem__(self, key: str | int | slice) -> Any:
        if isinstance(key, str):
            return super().__getitem__(key)
        return self.to_tuple()[key]

    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(self.values())

    def __reduce__(self):  # picklable despite the keyword-only constructor
        return (_rebuild, (type(self), dict(self)))


def _rebuild(cls: type[ModelOutput], values: dict[str, Any]) -> ModelOutput:
    return cls(**values)


class BaseModelOutputWithNoAttention(ModelOutput):
    """``last_hidden_state`` (b, l, c); ``hidden_states``: a tuple of (b, l, c), the input of every layer, then the
    final output (with ``output_hidden_states``)."""

    _fields = ("last_hidden_state", "hidden_states")
    last_hidden_state: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...] | None


class MaskedLMOutput(ModelOutput):
    """``loss`` (with labels); ``logits`` (b, l, vocab) float32; ``hidden_states`` as above."""

    _fields = ("loss", "logits", "hidden_states", "attentions")
    loss: torch.Tensor | None
    logits: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...] | None
    attentions: None


class SequenceClassifierOutput(ModelOutput):
    """``loss`` (with labels); ``logits`` (b, num_labels); ``hidden_states`` as above."""

    _fields = ("loss", "logits", "hidden_states", "attentions")
    loss: torch.Tensor | None
    logits: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...] | None
    attentions: None
