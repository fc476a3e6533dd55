"""Load a model for inference on one-hot windows: :func:`load_predictor`.

Three kinds of weights are accepted:

(a) a Caduceus checkpoint directory (``config.json`` + ``model.safetensors``, the released HF layout): the output is
    the RC-invariant mean-pooled embedding (:mod:`caduceus_plugin.models.caduceus.features`; PS strand-averaged,
    Ph conjoined);
(b) a gReLU Lightning checkpoint file (``*.ckpt``, e.g. written by ``caduceus train``): the output is the model's
    prediction after its activation; ``L_out == 1`` gives one value per task (``'tasks'``), longer outputs are
    per-bin tracks (``'tracks'``, ``bin_size`` from ``data_params['train']`` and ``crop_len`` from
    ``model_params``);
(c) nothing: the built-in pre-trained model (:func:`caduceus_plugin.registry.pretrained.builtin_weights`: the first
    shipped of ``weights/grch37_chr20_ps_2m``, ``weights/grch37_chr20_ps``, ``weights/tiny_ps``).

The input length (``seq_len``) defaults to the checkpoint's own (``seq_len`` in config.json or the model card's
front matter; ``data_params['train']['seq_len']`` for gReLU), else :data:`DEFAULT_SEQ_LEN`.

N bases go to Caduceus as ``[PAD]`` (id 4), as in the authors' pre-training and ``caduceus pretrain``, unless the
checkpoint's config.json says ``"n_to_pad": false``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from caduceus_plugin.errors import CheckpointError, InputError
from caduceus_plugin.registry.pretrained import BUILTIN_FOR, BUILTIN_WEIGHTS, builtin_weights

DEFAULT_SEQ_LEN = 1024


@dataclass
class Predictor:
    """A model ready for inference on ``(N, 4, seq_len)`` float32 one-hot windows (A, C, G, T; N all-zero).

    ``output_kind``: ``'embedding'`` (``(N, D)``), ``'tasks'`` (``(N, T)``) or ``'tracks'`` (``(N, T, L_out)``,
    bin ``j`` covering ``[window_start + (crop_len + j) * bin_size, ... + bin_size)`` in the orientation fed to the
    model). ``names`` names the ``D`` embedding dimensions or the ``T`` tasks.
    """

    seq_len: int
    output_kind: str
    names: list[str]
    device: torch.device
    source: str
    fn: Callable[[torch.Tensor], torch.Tensor] = field(repr=False)
    bin_size: int | None = None
    crop_len: int = 0
    out_len: int = 1
    mlm: Any = field(default=None, repr=False)  # CaduceusForMaskedLM for Caduceus weights (variant scoring)
    n_to_pad: bool = True
    module: Any = field(default=None, repr=False)  # the nn.Module ``fn`` runs (a job's runner moves it to a device)

    def __call__(self, onehot: np.ndarray | torch.Tensor) -> np.ndarray:
        x = torch.as_tensor(onehot, dtype=torch.float32).to(self.device, non_blocking=True)
        with torch.inference_mode():
            out = self.fn(x)
        return out.float().cpu().numpy()

    def describe(self) -> str:
        extra = f", bin_size {self.bin_size}, crop_len {self.crop_len}" if self.output_kind == "tracks" else ""
        return f"{self.source}: {self.output_kind} ({len(self.names)}), seq_len {self.seq_len}{extra}"


#: Peak inference memory of a Caduceus forward per token and inner channel (bytes), measured with ``ru_maxrss`` for
#: the built-in model (d_inner 192) at 8-131 kbp: 7.5-11.6 KB per token, i.e. at most ~60 bytes per channel.
BYTES_PER_TOKEN_CHANNEL = 64


def available_memory() -> int | None:
    """Bytes the kernel says a new allocation can get (``MemAvailable``), or None where it does not say."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


#: Tokens per batch when the batch size is left to the job: 8 windows of 1 kbp, the 0.1 default. Measured on 2
#: quiet cores with the built-in model (benchmarks/predict_throughput.py, 600 x 1 kbp, alternating cells), batches
#: of 64 windows ran at ~0.8x the speed of batches of 8, so larger batches are not the default.
AUTO_BATCH_TOKENS = 8192


def auto_batch_size(predictor: Predictor, batch_size: int | None, windows_per_item: int = 1) -> int:
    """``batch_size`` when given (checked), else about :data:`AUTO_BATCH_TOKENS` tokens per batch (1 to 256 items).

    Raises:
        InputError: a batch size that is not a positive integer.
    """
    if batch_size is None:
        return max(1, min(256, AUTO_BATCH_TOKENS // (predictor.seq_len * windows_per_item)))
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"--batch-size must be a positive integer, got {batch_size!r}")
    return batch_size


def check_memory(predictor: Predictor, batch_size: int, windows_per_item: int = 1) -> None:
    """Refuse, before any work, a batch whose forward pass would not fit in the memory this machine has.

    Raises:
        InputError: the estimate (:data:`BYTES_PER_TOKEN_CHANNEL` x d_inner x tokens) exceeds 90% of
            ``MemAvailable`` (CPU) or of the free GPU memory.
    """
    if predictor.mlm is None:
        return  # gReLU models: no estimate
    tokens = batch_size * windows_per_item * predictor.seq_len
    need = BYTES_PER_TOKEN_CHANNEL * predictor.mlm.config.d_inner * tokens
    have = available_memory() if predictor.device.type == "cpu" else torch.cuda.mem_get_info(predictor.device)[0]
    if have is not None and need > 0.9 * have:
        raise InputError(
            f"--seq-len {predictor.seq_len} x --batch-size {batch_size} needs about {need / 2**30:.1f} GiB for one "
            f"batch and this machine has {have / 2**30:.1f} GiB available: lower --batch-size or --seq-len"
        )


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
    if dev.type not in ("cpu", "cuda"):
        raise InputError(f"--device {device}: expected cpu or cuda")
    return dev


def _card_seq_len(folder: Path) -> int | None:
    """``seq_len: N`` in the YAML front matter of a model card (README.md or MODEL_CARD.md), if any."""
    for name in ("README.md", "MODEL_CARD.md"):
        card = folder / name
        text = card.read_text(encoding="utf-8", errors="replace") if card.is_file() else ""
        if text.startswith("---") and text.count("---") >= 2:
            match = re.search(r"^\s*seq_len\s*:\s*(\d+)\s*$", text.split("---", 2)[1], flags=re.MULTILINE)
            if match:
                return int(match.group(1))
    return None


def load_predictor(
    model: str | None = None,
    weights: str | os.PathLike[str] | None = None,
    device: str | torch.device | None = None,
    seq_len: int | None = None,
) -> Predictor:
    """Load weights for inference; see the module docstring for what ``weights`` may be.

    Args:
        model: registered model name (``caduceus_ps``, ``caduceus_ph``, ...). Alone, it selects the model's
            built-in weights (only ``caduceus_ps`` has them); with ``weights`` it is checked against them.
        weights: checkpoint directory (Caduceus) or gReLU ``.ckpt`` file; default: the built-in model.
        device: ``cpu``, ``cuda`` or None (CUDA when available).
        seq_len: input length override.

    Raises:
        InputError: unknown model name, no built-in weights for it, bad device or seq_len.
        CheckpointError: missing or corrupt weights.
    """
    dev = resolve_device(device)
    if seq_len is not None and seq_len < 1:
        raise InputError(f"--seq-len must be a positive integer, got {seq_len}")
    if model is not None:
        _check_model_name(model)
    if weights is None:
        if model is not None and model not in BUILTIN_FOR:
            raise InputError(f"model {model!r} has no built-in weights: pass --weights DIR (a checkpoint directory)")
        path = builtin_weights(BUILTIN_FOR.get(model or "caduceus_ps", BUILTIN_WEIGHTS))
    else:
        path = Path(weights)
        if not path.exists():
            raise CheckpointError(
                f"weights {path} do not exist: pass a Caduceus checkpoint directory (config.json + "
                "model.safetensors) or a gReLU .ckpt file"
            )
    if path.is_file() and path.suffix == ".ckpt" and not (path.parent / "config.json").is_file():
        return _grelu_predictor(path, dev, seq_len, model)
    return _caduceus_predictor(path, dev, seq_len, model)


def _check_model_name(model: str) -> None:
    from caduceus_plugin.registry.components import get_registry

    names = get_registry().names("backbone")
    if model not in names:
        raise InputError(f"unknown model {model!r}: choose one of {', '.join(names)} (`caduceus list`)")


def _caduceus_predictor(path: Path, dev: torch.device, seq_len: int | None, model: str | None) -> Predictor:
    from caduceus_plugin.models.caduceus.checkpoint import from_pretrained
    from caduceus_plugin.models.caduceus.features import embed, mean_pool
    from caduceus_plugin.sequence import onehot_to_ids

    mlm = from_pretrained(path, device=dev)
    cfg = mlm.config
    if model in ("caduceus_ps", "caduceus_ph") and cfg.rcps != (model == "caduceus_ps"):
        kind = "Caduceus-PS (rcps true)" if cfg.rcps else "Caduceus-Ph (rcps false)"
        raise InputError(f"--model {model} does not match the weights in {path}, which are {kind}")
    folder = path if path.is_dir() else path.parent
    if seq_len is None:
        seq_len = cfg.extra.get("seq_len") or _card_seq_len(folder) or DEFAULT_SEQ_LEN
        if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
            raise CheckpointError(f"config field seq_len={seq_len!r} in {path}: expected a positive integer")
    n_to_pad = cfg.extra.get("n_to_pad", True)
    if not isinstance(n_to_pad, bool):
        raise CheckpointError(f"config field n_to_pad={n_to_pad!r} in {path}: expected true or false")

    def fn(x: torch.Tensor) -> torch.Tensor:
        ids = onehot_to_ids(x, n_to_pad=n_to_pad)
        return mean_pool(embed(mlm, ids))

    return Predictor(
        seq_len=int(seq_len),
        output_kind="embedding",
        names=[f"emb_{i}" for i in range(cfg.d_model)],
        device=dev,
        source=f"{'Caduceus-PS' if cfg.rcps else 'Caduceus-Ph'} {path}",
        fn=fn,
        mlm=mlm,
        module=mlm,
        n_to_pad=n_to_pad,
    )


def _grelu_predictor(path: Path, dev: torch.device, seq_len: int | None, model: str | None) -> Predictor:
    import importlib.util

    _check_ckpt_file(path)
    # gReLU first: importing grelu.model.models runs caduceus_plugin's import hook, which registers our models
    import grelu.model.models  # noqa: F401
    from grelu.lightning import LightningModel

    if importlib.util.find_spec("caduceus_plugin.hosts.grelu.models") is not None:
        import caduceus_plugin.hosts.grelu.models  # noqa: F401  (registers our models on grelu.model.models)

    try:
        lm = LightningModel.load_from_checkpoint(str(path), map_location=dev, weights_only=False)
    except Exception as err:
        first = str(err).splitlines()[0] if str(err) else ""
        raise CheckpointError(
            f"cannot load gReLU checkpoint {path} ({type(err).__name__}: {first}); is it a gReLU LightningModel "
            "checkpoint (e.g. from `caduceus train`)?"
        ) from None
    lm = lm.to(dev).eval()
    data = getattr(lm, "data_params", {}) or {}
    train = data.get("train", {}) if isinstance(data, dict) else {}
    mp = dict(lm.model_params)
    if seq_len is None:
        seq_len = int(train.get("seq_len") or mp.get("seq_len") or DEFAULT_SEQ_LEN)
    with torch.inference_mode():
        probe = lm(torch.zeros(1, 4, seq_len, device=dev))
    if probe.dim() != 3:
        raise CheckpointError(f"gReLU model {path} returned shape {tuple(probe.shape)}; expected (N, tasks, L_out)")
    n_tasks, out_len = int(probe.shape[1]), int(probe.shape[2])
    tasks = data.get("tasks", {}) if isinstance(data, dict) else {}
    names = list(tasks.get("name", [])) if isinstance(tasks, dict) else []
    if len(names) != n_tasks:
        names = [f"task_{i}" for i in range(n_tasks)]
    names = [str(n) for n in names]
    crop_len = mp.get("crop_len", 0)
    crop_len = int(crop_len) if isinstance(crop_len, int) else 0
    bin_size = train.get("bin_size") or mp.get("bin_size")
    if out_len > 1 and not bin_size:
        bins = out_len + 2 * crop_len
        bin_size = seq_len // bins if seq_len % bins == 0 else None
        if bin_size is None:
            raise CheckpointError(
                f"gReLU model {path}: cannot tell the bin size of its {out_len}-bin output for seq_len {seq_len}; "
                "the checkpoint should carry data_params['train']['bin_size']"
            )

    def fn(x: torch.Tensor) -> torch.Tensor:
        out = lm(x)
        return out[..., 0] if out_len == 1 else out

    return Predictor(
        seq_len=int(seq_len),
        output_kind="tasks" if out_len == 1 else "tracks",
        names=names,
        device=dev,
        source=f"gReLU {mp.get('model_type', '?')} {path}",
        fn=fn,
        module=lm,
        bin_size=int(bin_size) if bin_size else None,
        crop_len=crop_len,
        out_len=out_len,
    )


def _check_ckpt_file(path: Path) -> None:
    import zipfile

    with open(path, "rb") as fh:
        head = fh.read(2)
    if not zipfile.is_zipfile(path) and head[:1] != b"\x80":
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint (truncated or not a torch.save file)")
