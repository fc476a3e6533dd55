"""Reading a state dict from a weights file, shared by every model family (Caduceus, HyenaDNA, the peers).

One reader for the formats the released checkpoints come in: safetensors, and ``torch.save`` files (``.bin``,
Lightning ``.ckpt``, gReLU's ``.h5`` state dicts). Pickles are read with ``torch.load(weights_only=True)`` unless
the caller trusts the file; every failure is a one-line :class:`CheckpointError` naming the file.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Container, Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from caduceus_plugin.errors import CheckpointError

__all__ = ["UntrustedPickleError", "check_state_dict", "read_state_dict"]


class UntrustedPickleError(CheckpointError):
    """A pickled checkpoint holds objects besides tensors, which ``weights_only`` loading refuses.

    Its own class so that a loader without a ``trust_pickle`` option can word the error for its callers.
    """


def read_state_dict(path: str | Path, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Read tensors from a safetensors, ``.bin`` or ``.ckpt`` file; pickles only through ``weights_only=True``.

    Args:
        path: a ``.safetensors`` file (by suffix), else a ``torch.save`` file (zip or legacy pickle) holding a state
            dict or a Lightning checkpoint (``{"state_dict": {...}, ...}``, unwrapped).
        trust_pickle: allow arbitrary unpickling (Lightning hyper-parameters and the like).

    Returns:
        ``{name: tensor}`` on the CPU, keys as stored.

    Raises:
        UntrustedPickleError: the pickle needs arbitrary unpickling and ``trust_pickle`` is false.
        CheckpointError: unreadable, truncated or not a state dict of named tensors.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(
                f"{path} is not a readable safetensors file ({err}); re-download or re-save it"
            ) from None
    with open(path, "rb") as fh:
        head = fh.read(2)
    if not zipfile.is_zipfile(path) and head[:1] != b"\x80":  # neither torch's zip format nor a legacy pickle
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint (truncated or not a torch.save file)")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as err:
        if trust_pickle or "weights only load failed" not in str(err).lower():
            raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({str(err).splitlines()[0]})") from None
        raise UntrustedPickleError(
            f"{path} needs arbitrary unpickling to load (it stores more than tensors); "
            "pass trust_pickle=True (CLI: --trust-pickle) only if you trust where the file came from"
        ) from None
    except Exception as err:  # truncated zip, wrong format, ...
        first = str(err).splitlines()[0] if str(err) else ""
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({type(err).__name__}: {first})") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    return obj


def check_state_dict(
    state: Mapping[str, torch.Tensor],
    expected: Mapping[str, torch.Tensor],
    source: str = "checkpoint",
    optional: Container[str] = (),
) -> None:
    """Check that ``state`` fits a model whose own tensors are ``expected``, before loading it.

    Every key of ``expected`` must be in ``state`` unless it is in ``optional`` (tensors the loader derives), no
    other key may be, each tensor must have the model's shape, and floating-point tensors must be finite: a loaded
    NaN would only show as NaN outputs much later.

    Raises:
        CheckpointError: one line naming ``source``, the first offending key and what is wrong with it.
    """
    missing = [k for k in expected if k not in state and k not in optional]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise CheckpointError(f"{source}: missing tensor {missing[0]}{more}; the file does not match config.json")
    unexpected = sorted(set(state) - set(expected))
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        raise CheckpointError(f"{source}: unexpected tensor {unexpected[0]}{more}; the file does not match config.json")
    for key, value in state.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise CheckpointError(
                f"{source}: tensor {key} has shape {tuple(value.shape)}, "
                f"config.json implies {tuple(expected[key].shape)}"
            )
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise CheckpointError(f"{source}: tensor {key} contains NaN or inf values")
