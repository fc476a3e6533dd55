"""Export a Caduceus checkpoint as a self-contained kipoi model directory (``caduceus export-kipoi``).

Layout written to ``OUTDIR``::

    model.yaml              defined_as: model.CaduceusKipoiModel, args, schema, dependencies, default dataloader
    model.py                the kipoi entry point (re-exports caduceus_plugin.hosts.kipoi.model.CaduceusKipoiModel)
    weights/                config.json + model.safetensors (a copy: the directory needs nothing else)
    example_files/          example.fa (+ .fai) and example.bed: a 6 kb slice of GRCh37 chr20, contig "20"
    test_files/expect.h5    inputs + expected predictions (computed here, on the CPU), for
                            ``kipoi test OUTDIR --source dir -e OUTDIR/test_files/expect.h5``
    README.md

The default dataloader is kipoiseq's ``SeqIntervalDl`` with ``auto_resize_len = seq_len``, ``alphabet_axis: 0``
(one-hot ``(4, L)`` per interval, A/C/G/T order) and ``dtype: np.float32``. Its ``default_args`` point at the local
example files, so ``kipoi test OUTDIR --source dir`` runs offline.

The directory is built next to ``OUTDIR`` under a temporary name and renamed into place, so a failed export leaves
nothing behind; an existing non-empty ``OUTDIR`` is replaced only with ``force=True``.
"""

from __future__ import annotations

import os
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from caduceus_plugin.errors import CaduceusError, InputError
from caduceus_plugin.fileio import atomic_directory
from caduceus_plugin.genome import Genome, read_bed, write_fasta
from caduceus_plugin.registry.pretrained import builtin_weights

#: Length of the windows the default dataloader cuts around each interval's centre.
DEFAULT_SEQ_LEN = 1024
EXAMPLE_CONTIG = "20"
#: FASTA header text after the contig name of example_files/example.fa (as in the template's own header).
EXAMPLE_DESCRIPTION = "GRCh37 chr20:1000001-1006000 (6 kb slice; coordinates relative to the slice)"
#: ``kipoi test -e test_files/expect.h5`` compares predictions with it to this many decimals.
PRECISION_DECIMAL = 4

_MODEL_PY = '''"""kipoi entry point of this Caduceus model (model.yaml: ``defined_as: model.CaduceusKipoiModel``).

The class lives in the caduceus-plugin package (``pip install caduceus-plugin``); see its docstring for inputs
(one-hot (N, 4, L), ACGT) and outputs (RC-invariant pooled embeddings (N, d_model), float32).
"""

from __future__ import annotations

from caduceus_plugin.hosts.kipoi.model import CaduceusKipoiModel

__all__ = ["CaduceusKipoiModel"]
'''


#: One line for a user without the extra: kipoi (archived by its maintainers in December 2025) is optional.
KIPOI_HINT = (
    "kipoi is not installed: `pip install 'caduceus-plugin[kipoi]'` adds it (kipoi 0.8.6, archived upstream in "
    "December 2025, with the setuptools<81 pin its CLI needs)"
)


def require_kipoi() -> None:
    """Raise :class:`InputError` with :data:`KIPOI_HINT` when kipoi cannot be imported."""
    import importlib.util

    if importlib.util.find_spec("kipoi") is None:
        raise InputError(KIPOI_HINT)


def _template(name: str) -> Path:
    return Path(str(resources.files("caduceus_plugin.hosts.kipoi") / "template" / name))


def _registered() -> dict[str, bool]:
    """Registered Caduceus model name -> rcps (PS) flag."""
    from caduceus_plugin.registry.specs import load_specs

    specs = load_specs()
    return {name: bool(s["config"].get("rcps")) for name, s in specs.items() if s.get("family") == "caduceus"}


def _is_checkpoint_dir(path: Path) -> bool:
    return path.is_dir() and any((path / n).is_file() for n in ("config.json", "model_config.json"))


def resolve_weights(name_or_weights: str, weights: str | os.PathLike[str] | None = None) -> tuple[str, Path]:
    """``(model label, checkpoint directory)`` for a registered name (plus optional weights) or a checkpoint dir."""
    from caduceus_plugin.registry.specs import load_specs

    registered = _registered()
    if name_or_weights in load_specs() and name_or_weights not in registered:
        names = ", ".join(sorted(registered))
        raise InputError(f"{name_or_weights} is not a Caduceus model: export-kipoi supports {names}")
    if name_or_weights in registered:
        label = name_or_weights
        if weights is None:
            if not registered[label]:
                raise InputError(
                    f"no built-in weights for {label}: pass --weights DIR (a Caduceus-Ph checkpoint directory with "
                    "config.json + model.safetensors), or give that directory as NAME"
                )
            try:
                return label, builtin_weights()
            except CaduceusError:
                raise InputError(f"no built-in weights for {label} in this installation: pass --weights DIR") from None
        path = Path(weights)
    else:
        path = Path(name_or_weights)
        if not path.is_dir():
            names = ", ".join(sorted(registered))
            raise InputError(
                f"unknown model {name_or_weights!r}: give a registered name ({names}) or a checkpoint directory"
            )
        if weights is not None:
            raise InputError(f"{name_or_weights} is a checkpoint directory: drop --weights (or give a model name)")
        label = path.resolve().name
    if not path.exists():
        raise InputError(f"weights directory {path} does not exist: pass a directory with config.json + weights")
    if not _is_checkpoint_dir(path):
        raise InputError(f"{path} is not a Caduceus checkpoint directory (no config.json in it)")
    return label, path


def _write_examples(folder: Path, seq_len: int) -> list[str]:
    """Write example.fa/.fai/.bed sized for ``seq_len``; return the window sequences (plus strand)."""
    folder.mkdir()
    template = folder / "template.fa"
    shutil.copyfile(_template("example_files/example.fa"), template)  # a writable copy: pyfaidx indexes it
    genome = Genome(template)
    contig = genome.names[0]
    seq, _ = genome.fetch(contig, 0, genome.lengths[contig])
    header = f"{contig} {EXAMPLE_DESCRIPTION}"
    genome.close()
    for p in (template, Path(str(template) + ".fai")):
        p.unlink(missing_ok=True)
    bed = read_bed(_template("example_files/example.bed"))
    # kipoiseq's centre resize (``resize_interval``): start = (s + e) // 2 - L // 2, end = start + L
    wins = [((s + e) // 2 - seq_len // 2, (s + e) // 2 - seq_len // 2 + seq_len) for s, e in zip(bed.start, bed.end)]
    # N-pad the contig when the windows would run past its ends (kipoiseq itself would return short sequences)
    left = max(0, -min(s for s, _ in wins))
    right = max(0, max(e for _, e in wins) - len(seq))
    if left or right:
        seq = "N" * left + seq + "N" * right
        header += f" (padded with {left} N before and {right} N after for {seq_len}-bp windows)"
    table = bed.to_polars().with_columns(start=pl.col("start") + left, end=pl.col("end") + left)
    write_fasta(folder / "example.fa", [(header, seq)])
    table.write_csv(folder / "example.bed", separator="\t", include_header=False)
    Genome(folder / "example.fa").close()  # writes example.fa.fai now, not in the user's first run
    return [seq[s + left : e + left] for s, e in wins]


def _write_expect(path: Path, model: Any, seqs: list[str]) -> None:
    """HDF5 in kipoi's reader layout (``/inputs``, ``/preds``): the reference for ``kipoi test``."""
    import h5py
    import torch

    from caduceus_plugin.models.caduceus.features import embed, mean_pool
    from caduceus_plugin.sequence import onehot, tokenize

    with torch.no_grad():
        preds = mean_pool(embed(model, tokenize(seqs))).float().numpy()
    path.parent.mkdir()
    with h5py.File(path, "w") as fh:
        fh.create_dataset("inputs", data=onehot(seqs, n_value=0.25), compression="gzip")  # as kipoiseq writes N
        fh.create_dataset("preds", data=preds.astype(np.float32))


def _model_yaml(label: str, config: Any, seq_len: int, trained_on: str) -> dict[str, Any]:
    from caduceus_plugin import __version__

    d = int(config.d_model)
    kind = "Caduceus-PS (RC parameter sharing)" if config.rcps else "Caduceus-Ph (post-hoc conjoined)"
    pooling = "strand-averaged" if config.rcps else "averaged over the sequence and its reverse complement"
    return {
        "defined_as": "model.CaduceusKipoiModel",
        "args": {"weights": "weights", "device": "auto", "n_to_pad": False},
        "default_dataloader": {
            "defined_as": "kipoiseq.dataloaders.SeqIntervalDl",
            "default_args": {
                "intervals_file": "example_files/example.bed",
                "fasta_file": "example_files/example.fa",
                "auto_resize_len": seq_len,
                "num_chr_fasta": True,
                "alphabet_axis": 0,
                "dummy_axis": None,
                "alphabet": "ACGT",
                "dtype": "np.float32",
                "ignore_targets": True,
            },
        },
        "info": {
            "authors": [{"name": "caduceus-plugin"}],
            "doc": (
                f"{kind} DNA language model '{label}' ({d} x {config.n_layer} layers) as a sequence embedder: "
                f"one-hot DNA (4, {seq_len}) -> the mean over positions of its {pooling} per-position features "
                f"({d} values), the same for an interval on either strand. Exported by caduceus-plugin {__version__}."
            ),
            "cite_as": "https://doi.org/10.48550/arXiv.2403.03234",
            "trained_on": trained_on,
            "training_procedure": "masked language modelling (see the checkpoint's own documentation)",
            "license": "Apache-2.0",
            "tags": ["DNA language model", "embedding", "RC-invariant"],
            "version": __version__,
        },
        "schema": {
            "inputs": {
                "name": "seq",
                "shape": f"(4, {seq_len})",
                "special_type": "DNASeq",
                "doc": "one-hot DNA, channels A, C, G, T first; N as 0.25 (kipoiseq) or zeros",
                "associated_metadata": "ranges",
            },
            "targets": {
                "name": "embedding",
                "shape": f"({d},)",
                "doc": "reverse-complement-invariant mean-pooled embedding (float32)",
                "column_labels": [f"emb_{i}" for i in range(d)],
            },
        },
        "dependencies": {
            "conda_channels": ["conda-forge", "bioconda", "defaults"],
            "conda": ["python>=3.10", "pip"],
            "pip": ["caduceus-plugin", "torch>=2.1", "kipoi==0.8.6", "kipoiseq==0.7.1", "six", "pybedtools"],
        },
        # no ``test.expect``: kipoi opens that path relative to the *current* directory, not the model's
        "test": {"precision_decimal": PRECISION_DECIMAL},
    }


def _readme(label: str, seq_len: int) -> str:
    return f"""# {label} (kipoi model exported by caduceus-plugin)

    pip install caduceus-plugin   # brings kipoi 0.8.6, kipoiseq 0.7.1, six, pybedtools, setuptools<81
    kipoi test . --source dir                                  # offline, on example_files/
    kipoi test . --source dir -e test_files/expect.h5          # ... and compare with the exported predictions
    kipoi predict . --source dir -o out.tsv \\
        --dataloader_args='{{"intervals_file": "regions.bed", "fasta_file": "genome.fa"}}'

Each BED interval is resized around its centre to {seq_len} bp. Output: one row of pooled embeddings per interval
(write .tsv, or .parquet with pyarrow installed: kipoi's HDF5 writer fails on numpy >= 2). The default dataloader sets
`num_chr_fasta: true` (FASTA contigs named "1", "20", ...); for "chr1"-style FASTAs pass
`"num_chr_fasta": false`. Windows that run past a contig end are not padded by kipoiseq: keep intervals at least
{seq_len // 2} bp away from contig ends. example_files/example.fa is GRCh37 chr20:1000001-1006000 named "20"
(BED coordinates are relative to that slice).
"""


def export_kipoi(
    name_or_weights: str,
    outdir: str | os.PathLike[str],
    seq_len: int = DEFAULT_SEQ_LEN,
    weights: str | os.PathLike[str] | None = None,
    force: bool = False,
) -> Path:
    """Write a kipoi model directory for a registered model name or a checkpoint directory.

    Args:
        name_or_weights: ``caduceus_ps``/``caduceus_ph`` (registered names) or a checkpoint directory.
        outdir: directory to create (must not exist or be empty, unless ``force``).
        seq_len: window length the default dataloader cuts around each interval's centre.
        weights: checkpoint directory for a registered name (default for ``caduceus_ps``: the built-in
            model, :func:`caduceus_plugin.registry.pretrained.builtin_weights`; ``caduceus_ph`` has none).
        force: replace a non-empty ``outdir``.

    Returns:
        The model directory.

    Raises:
        InputError: unknown name, missing weights, a PS/Ph mismatch, bad ``seq_len``, a non-empty ``outdir``.
        CheckpointError: the weights cannot be loaded.
    """
    from caduceus_plugin.models.caduceus.checkpoint import from_pretrained

    require_kipoi()
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
        raise InputError(f"--seq-len must be a positive integer, got {seq_len!r}")
    outdir = Path(outdir)
    if outdir.resolve() in (Path.cwd().resolve(), *Path.cwd().resolve().parents):
        raise InputError(f"OUTDIR {outdir} is the current directory (or above it): name a new directory")
    if outdir.exists() and not outdir.is_dir():
        raise InputError(f"{outdir} exists and is not a directory: choose another OUTDIR")
    if outdir.is_dir() and any(outdir.iterdir()) and not force:
        raise InputError(f"{outdir} is not empty: choose another OUTDIR or pass --force to replace it")
    label, src = resolve_weights(name_or_weights, weights)
    model = from_pretrained(src)
    registered = _registered()
    if label in registered and registered[label] != bool(model.config.rcps):
        have = "Caduceus-PS" if model.config.rcps else "Caduceus-Ph"
        raise InputError(f"{src} holds a {have} checkpoint, not {label}: pass matching weights or the other name")
    readme = src / "README.md"
    trained_on = f"see weights/README.md ({src.name})" if readme.is_file() else f"see the checkpoint's source ({src})"

    def build(tmp: Path) -> None:
        wdir = tmp / "weights"
        if (src / "config.json").is_file() and (src / "model.safetensors").is_file():
            wdir.mkdir()
            for name in ("config.json", "model.safetensors", "README.md"):
                if (src / name).is_file():
                    shutil.copyfile(src / name, wdir / name)
        else:  # .bin / Lightning .ckpt / model_config.json: re-save in the released safetensors layout
            from caduceus_plugin.models.caduceus.checkpoint import save_pretrained

            save_pretrained(model, wdir)
            if readme.is_file():
                shutil.copyfile(readme, wdir / "README.md")
        seqs = _write_examples(tmp / "example_files", seq_len)
        _write_expect(tmp / "test_files" / "expect.h5", model, seqs)
        import yaml

        with open(tmp / "model.yaml", "w") as fh:
            yaml.safe_dump(_model_yaml(label, model.config, seq_len, trained_on), fh, sort_keys=False, width=120)
        (tmp / "model.py").write_text(_MODEL_PY)
        (tmp / "README.md").write_text(_readme(label, seq_len))

    try:
        atomic_directory(outdir, build, replace=force)
    except FileExistsError:  # something appeared meanwhile
        raise InputError(f"{outdir} is not empty: choose another OUTDIR or pass --force to replace it") from None
    return outdir
