"""Helpers for the genomic-input tests: the real GRCh37 slice in ``tests/resources`` and tiny synthetic files."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

DATA = Path(__file__).resolve().parent / "resources"
REAL_FASTA = "grch37_chr20_1.0-1.2Mb.fa.gz"
REAL_BED = "grch37_chr20_sites.bed"
REAL_VCF = "1kg_chr20_1.0-1.2Mb.vcf"
SLICE = (1_000_000, 1_200_000)  # real bases of contig "20" in REAL_FASTA; N before, contig ends at 1.2 Mb


def real_data(tmp_path: Path) -> dict[str, Path]:
    """Copy the real test data into ``tmp_path`` (indexes are then built there, never in the repository)."""
    out = {}
    for key, name in (("fasta", REAL_FASTA), ("bed", REAL_BED), ("vcf", REAL_VCF)):
        out[key] = Path(shutil.copy(DATA / name, tmp_path / name))
    return out


def write_fasta(path: Path, seqs: dict[str, str], width: int = 60, compress: str | None = None) -> Path:
    """A FASTA with ``width``-character lines; ``compress`` = ``"bgzf"`` or ``"gzip"``."""
    text = "".join(
        f">{name}\n" + "".join(seq[i : i + width] + "\n" for i in range(0, len(seq), width))
        for name, seq in seqs.items()
    )
    if compress == "bgzf":
        from Bio import bgzf

        with bgzf.BgzfWriter(str(path), "wb") as fh:
            fh.write(text.encode())
    elif compress == "gzip":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def write_lines(path: Path, lines: list[str], gz: bool = False) -> Path:
    data = "".join(line + "\n" for line in lines).encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def random_genome(seed: int = 0, lengths: dict[str, int] | None = None) -> dict[str, str]:
    import numpy as np

    rng = np.random.default_rng(seed)
    lengths = lengths or {"20": 3000, "21": 500}
    return {c: "".join(rng.choice(list("ACGT"), n)) for c, n in lengths.items()}


def grelu_checkpoint(path: Path, tracks: bool = False, seq_len: int = 128, params: dict | None = None) -> Path:
    """A tiny gReLU Lightning checkpoint, written as Lightning does (no Trainer needed): by default a
    ``ConvModel`` with 2 scalar tasks, or 2 tracks of 8-bp bins (crop 1 bin); ``params`` replaces the model."""
    import pytorch_lightning as pl
    import torch
    from grelu.lightning import LightningModel

    torch.manual_seed(0)
    if params is None:
        params = {
            "model_type": "ConvModel",
            "n_tasks": 2,
            "stem_channels": 8,
            "stem_kernel_size": 5,
            "n_conv": 2,
            "channel_init": 8,
            "kernel_size": 3,
        }
        if tracks:
            params.update(pool_func="avg", pool_size=8, final_pool_func=None, crop_len=1)
    lm = LightningModel(model_params=params, train_params={"task": "regression", "loss": "mse"})
    lm.data_params = {"tasks": {"name": ["dnase", "ctcf"]}, "train": {"seq_len": seq_len}}
    if tracks:
        lm.data_params["train"]["bin_size"] = 8
    torch.save(
        {
            "state_dict": lm.state_dict(),
            "hyper_parameters": dict(lm.hparams),
            "pytorch-lightning_version": pl.__version__,
            "data_params": lm.data_params,
            "performance": {},
        },
        path,
    )
    return path
