"""Test-split metrics of a task (:func:`compute_metrics`): accuracy, AUROC and MCC through torchmetrics."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from caduceus_plugin.data.tasks import TaskData

__all__ = ["compute_metrics"]


def compute_metrics(task: TaskData, labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """The task's metrics from integer labels (N,) and scores: binary (N,) P(positive); multiclass (N, C).

    accuracy = fraction correct (argmax / threshold 0.5), auroc = binary AUROC or macro one-vs-rest AUROC,
    mcc = Matthews correlation (multiclass: the Gorodkin R_K form).
    """
    import torch
    from torchmetrics.functional.classification import (
        binary_accuracy,
        binary_auroc,
        binary_matthews_corrcoef,
        multiclass_accuracy,
        multiclass_auroc,
        multiclass_matthews_corrcoef,
    )

    y = torch.as_tensor(np.asarray(labels), dtype=torch.long).reshape(-1)
    p = torch.as_tensor(np.asarray(scores, dtype=np.float32))
    out: dict[str, float] = {}
    if task.kind == "binary":
        p = p.reshape(-1)
        fns = {
            "accuracy": lambda: binary_accuracy(p, y),
            "auroc": lambda: binary_auroc(p, y),
            "mcc": lambda: binary_matthews_corrcoef(p, y),
        }
    else:
        p = p.reshape(len(y), task.n_classes)
        c = task.n_classes
        fns = {
            "accuracy": lambda: multiclass_accuracy(p, y, num_classes=c, average="micro"),
            "auroc": lambda: multiclass_auroc(p, y, num_classes=c, average="macro"),
            "mcc": lambda: multiclass_matthews_corrcoef(p, y, num_classes=c),
        }
    for m in task.metrics:
        out[m] = float(fns[m]())
    return out
