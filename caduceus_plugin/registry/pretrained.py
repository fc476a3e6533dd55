"""The built-in weights, named once: used by the CLI, the jobs and the kipoi export.

The first shipped of ``weights/grch37_chr20_ps_2m`` (a 1.9M-parameter Caduceus-PS pre-trained on GRCh37 chr20 for
81.9M tokens by ``benchmarks/train_builtin.py``), ``weights/grch37_chr20_ps`` (326k parameters, 4.1M tokens, the
built-in model before it) and ``weights/tiny_ps`` (a small random-init checkpoint used by tests); each pre-trained
one has a MODEL_CARD.md.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from caduceus_plugin.errors import CheckpointError

#: Built-in checkpoint directories, best first.
BUILTIN_WEIGHTS = ("grch37_chr20_ps_2m", "grch37_chr20_ps", "tiny_ps")
#: Registered models that have built-in weights (name -> candidate directories, first existing wins).
BUILTIN_FOR = {"caduceus_ps": BUILTIN_WEIGHTS}


def shipped_weights(name: str = "tiny_ps") -> Path:
    """Directory of a checkpoint shipped inside the package (it may not exist: see :func:`builtin_weights`)."""
    return Path(str(resources.files("caduceus_plugin") / "weights" / name))


def builtin_weights(names: tuple[str, ...] = BUILTIN_WEIGHTS) -> Path:
    """The first of ``names`` shipped with a ``config.json``.

    Raises:
        CheckpointError: none of them is installed.
    """
    for name in names:
        path = shipped_weights(name)
        if (path / "config.json").is_file():
            return path
    raise CheckpointError(f"no built-in weights found (looked for {', '.join(names)}); pass --weights DIR")


def builtin_weights_for(model: str) -> Path | None:
    """The built-in checkpoint of a registered model, or None when it has none."""
    names = BUILTIN_FOR.get(model)
    return None if names is None else builtin_weights(names)
