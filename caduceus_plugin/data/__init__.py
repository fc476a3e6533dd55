"""Real data from the package registries (PyPI, Debian): sources and their checksums (:mod:`.sources`), the tasks
built from them with their gReLU adapters (:mod:`.tasks`), and task metrics (:mod:`.metrics`)."""

from __future__ import annotations

from caduceus_plugin.data.metrics import compute_metrics
from caduceus_plugin.data.sources import (
    SHA256,
    SOURCES,
    ChecksumError,
    DataSourceError,
    Source,
    chr20_fasta,
    data_dir,
    fetch_all,
    fetch_source,
)
from caduceus_plugin.data.tasks import (
    BENCHMARK_TASKS,
    TaskData,
    VariantData,
    decode_mlbench_dna,
    encode_indices,
    grelu_labels,
    grelu_task_params,
    load_task,
    oct4_mafk,
    promoter_chr20,
    splice,
    to_grelu_datasets,
    tss_context_chr20,
    variants_1kg_chr20,
)

__all__ = [
    "BENCHMARK_TASKS",
    "SHA256",
    "SOURCES",
    "ChecksumError",
    "DataSourceError",
    "Source",
    "TaskData",
    "VariantData",
    "chr20_fasta",
    "compute_metrics",
    "data_dir",
    "decode_mlbench_dna",
    "encode_indices",
    "fetch_all",
    "fetch_source",
    "grelu_labels",
    "grelu_task_params",
    "load_task",
    "oct4_mafk",
    "promoter_chr20",
    "splice",
    "to_grelu_datasets",
    "tss_context_chr20",
    "variants_1kg_chr20",
]
