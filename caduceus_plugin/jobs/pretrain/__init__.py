"""``caduceus pretrain``: masked-LM pre-training of a Caduceus model on a FASTA, with baselines and evaluation.

:mod:`.corpus` (the FASTA as token ids, validation region, windows, masking), :mod:`.baselines` (unigram and k-mer
counts) and :mod:`.run` (configuration, training loop, evaluation); their public names are re-exported here.
"""

from __future__ import annotations

from caduceus_plugin.genome.regions import Region, parse_region
from caduceus_plugin.jobs.pretrain.baselines import KmerModel, baseline_metrics, unigram_counts
from caduceus_plugin.jobs.pretrain.corpus import (
    IGNORE_INDEX,
    GenomeSplit,
    MaskedSet,
    WindowSampler,
    load_fasta,
    mask_tokens,
    seq_to_ids,
    split_genome,
    tile_windows,
)
from caduceus_plugin.jobs.pretrain.run import (
    NUC_IDS,
    PretrainConfig,
    evaluate_checkpoint,
    evaluate_windows,
    limited_threads,
    lr_at,
    model_metrics,
    param_groups,
    pretrain,
)

__all__ = [
    "IGNORE_INDEX",
    "NUC_IDS",
    "GenomeSplit",
    "KmerModel",
    "MaskedSet",
    "PretrainConfig",
    "Region",
    "WindowSampler",
    "baseline_metrics",
    "evaluate_checkpoint",
    "evaluate_windows",
    "limited_threads",
    "load_fasta",
    "lr_at",
    "mask_tokens",
    "model_metrics",
    "param_groups",
    "parse_region",
    "pretrain",
    "seq_to_ids",
    "split_genome",
    "tile_windows",
    "unigram_counts",
]
