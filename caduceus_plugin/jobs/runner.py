"""Run a job's batches in this process or through ``pytorch_lightning.Trainer.predict``, streaming results into
resumable shards.

Every job (``predict``, ``score-variants``, ``logits``) is a map-style dataset whose items carry their row
``index`` and a step function from a collated batch to arrays with one row per item. :func:`run_job`:

1. lays out the shard folder ``OUT.parts/`` next to the output, with ``job.json`` (what the job is: inputs, model,
   options). An existing folder is an error unless ``resume`` is given, and with ``resume`` it must describe the
   same job;
2. runs the items that no shard holds yet: with one process (the default) in a plain loop in this process, which
   spares a run the import of Lightning (7-11 s on 2 cores, most of a small job's start-up); with more than one
   (``devices`` x ``num_nodes`` > 1) through ``Trainer.predict`` on ``accelerator``/``devices``/``num_nodes``, DDP,
   Lightning's distributed sampler splitting the items over the ranks. Either way every finished batch goes to
   :meth:`Shards.write` as one ``.npz`` shard, atomically (:mod:`caduceus_plugin.fileio`), so memory holds one batch
   and a run killed at any moment (SIGKILL included) keeps every finished batch;
3. on global rank 0, after all ranks are done, reads the shards back in row order (duplicates from the sampler's
   padding dropped) and returns the arrays; the caller writes the final output atomically and then calls
   :meth:`Shards.remove`.

Progress: a tqdm bar (rate, ETA) on a terminal, else one log line every ``log_every`` seconds.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from caduceus_plugin.errors import InputError, JobInterrupted  # noqa: F401  (re-exported)
from caduceus_plugin.fileio import atomic_write, atomic_write_json
from caduceus_plugin.jobs.predictor import resolve_device

JOB_FILE = "job.json"


# ---------------------------------------------------------------------------------------------------------------
# shards


@dataclass
class Shards:
    """The shard folder of one output: ``job.json`` plus ``part-*.npz`` files, each holding ``index`` and columns."""

    folder: Path
    signature: dict[str, Any]

    @classmethod
    def for_output(cls, out: str | os.PathLike[str], signature: dict[str, Any]) -> Shards:
        out = Path(out)
        return cls(out.with_name(out.name + ".parts"), signature)

    def prepare(self, resume: bool) -> None:
        """Create the folder for a new run, or check it for ``resume``.

        Raises:
            InputError: a folder from an earlier run without ``resume``, or one of a different job with it.
        """
        job = self.folder / JOB_FILE
        if self.folder.exists():
            if not resume:
                raise InputError(
                    f"{self.folder} holds the finished batches of an interrupted run: pass --resume to continue it, "
                    f"or delete the folder to start again"
                )
            try:
                old = json.loads(job.read_text())
            except (OSError, ValueError):
                raise InputError(f"{self.folder} is not a shard folder of caduceus-plugin (no readable {JOB_FILE})"
                                 "; delete it to start again") from None
            if old != json.loads(json.dumps(self.signature)):
                changed = sorted(k for k in set(old) | set(self.signature) if old.get(k) != self.signature.get(k))
                raise InputError(
                    f"--resume: {self.folder} was written by a different job (differs in: {', '.join(changed)}); "
                    "rerun with the same inputs and options, or delete the folder"
                )
            for tmp in self.folder.glob(".*.tmp*"):  # a write cut short by a kill
                tmp.unlink(missing_ok=True)
            return
        self.folder.mkdir(parents=True)
        atomic_write_json(job, self.signature)

    def parts(self) -> list[Path]:
        return sorted(self.folder.glob("part-*.npz"))

    def done(self) -> set[int]:
        """Row indices some shard already holds."""
        out: set[int] = set()
        for part in self.parts():
            with np.load(part) as z:
                out.update(z["index"].tolist())
        return out

    def write(self, arrays: dict[str, np.ndarray], rank: int) -> Path:
        path = self.folder / f"part-r{rank:03d}-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.npz"

        def save(tmp: str) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)

        atomic_write(path, save)
        return path

    def gather(self, n_rows: int) -> dict[str, np.ndarray]:
        """All shards as arrays of ``n_rows`` rows in row order.

        Raises:
            InputError: rows missing (a shard folder that does not cover the job).
        """
        chunks: dict[str, list[np.ndarray]] = {}
        for part in self.parts():
            with np.load(part) as z:
                for k in z.files:
                    chunks.setdefault(k, []).append(z[k])
        if not chunks:
            raise InputError(f"{self.folder} holds no finished batch")
        index = np.concatenate(chunks.pop("index"))
        first = np.unique(index, return_index=True)[1]  # the sampler's padding repeats rows: keep one of each
        order = first[np.argsort(index[first], kind="stable")]
        if len(order) != n_rows or not np.array_equal(index[order], np.arange(n_rows)):
            missing = n_rows - len(order)
            raise InputError(f"{self.folder}: {missing} of {n_rows} rows have no result; rerun with --resume")
        return {k: np.concatenate(v)[order] for k, v in chunks.items()}

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _file_identity(path: str | os.PathLike[str] | None) -> dict[str, Any] | None:
    if path is None:
        return None
    p = Path(path)
    if not p.exists():
        return {"path": str(p)}
    st = p.stat()
    return {"path": str(p.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def job_signature(kind: str, inputs: dict[str, str | os.PathLike[str] | None], **options: Any) -> dict[str, Any]:
    """What identifies a job for ``--resume``: its kind, each input file (resolved path, size, mtime) and options."""
    from caduceus_plugin import __version__

    return json.loads(json.dumps({
        "job": kind, "version": __version__,
        "inputs": {k: _file_identity(v) for k, v in inputs.items()},
        "options": options,
    }, default=str))


@contextlib.contextmanager
def shard_folder(out: str | os.PathLike[str] | None, signature: dict[str, Any]) -> Iterator[Shards]:
    """The shards of ``out`` (kept after an error or interrupt, for ``--resume``), or of a temporary folder that is
    removed afterwards when there is no output file."""
    if out is not None:
        yield Shards.for_output(out, signature)
        return
    import tempfile

    with tempfile.TemporaryDirectory(prefix="caduceus-job-") as tmp:
        yield Shards(Path(tmp) / "job.parts", signature)


def _launcher_is_rank_zero() -> bool:
    """True in the process that starts a job: not a rank Lightning, torchrun or SLURM started as rank > 0."""
    return all(os.environ.get(v, "0") == "0" for v in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


# ---------------------------------------------------------------------------------------------------------------
# the step, the progress report and the two ways of running them


def _batch_arrays(step: Callable[[dict[str, Any]], dict[str, torch.Tensor]], batch: dict[str, Any]) -> dict[str, Any]:
    """One batch's rows as numpy arrays (on the CPU), with their row ``index``: what a shard holds."""
    out = {k: v.detach().cpu().numpy() for k, v in step(batch).items()}
    out["index"] = batch["index"].cpu().numpy().astype(np.int64)
    return out


class _Progress:
    """tqdm on a terminal; otherwise one line every ``log_every`` seconds (rank 0 only, counts its own rows)."""

    def __init__(self, total: int, unit: str, desc: str, log_every: float) -> None:
        self.total, self.unit, self.desc, self.log_every = total, unit, desc, log_every
        self.done, self.bar, self.t0, self.last = 0, None, 0.0, 0.0

    def start(self, rank: int) -> None:
        self.t0 = self.last = time.monotonic()
        if rank == 0 and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, unit=self.unit, desc=self.desc, file=sys.stderr)

    def update(self, n: int, rank: int) -> None:
        """``n`` more rows done (over all ranks)."""
        self.done = min(self.total, self.done + n)
        if rank != 0:
            return
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.monotonic()
        if now - self.last >= self.log_every:  # periodic: a job shorter than log_every prints nothing
            rate = self.done / max(now - self.t0, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            print(f"{self.desc}: {self.done}/{self.total} {self.unit}s ({100 * self.done / max(self.total, 1):.0f}%), "
                  f"{rate:.1f} {self.unit}s/s, ETA {eta:.0f} s", file=sys.stderr, flush=True)
            self.last = now

    def end(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _to_device(batch: Any, device: torch.device) -> Any:
    """Tensors of a collated batch (dicts, lists and tuples of them) on ``device``; what Lightning's transfer does."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def _in_process(
    loader: torch.utils.data.DataLoader,
    step: Callable[[dict[str, Any]], dict[str, torch.Tensor]],
    modules: dict[str, torch.nn.Module],
    shards: Shards,
    device: torch.device,
    progress: _Progress | None,
) -> None:
    """The one-process run: what ``Trainer.predict`` does for one device (modules on ``device`` in eval mode, batches
    moved there, inference mode), each batch to a shard; the modules' devices and train/eval modes are put back
    after, as Lightning does."""
    before = [(m, next(iter(m.parameters()), torch.empty(0)).device, [c.training for c in m.modules()])
              for m in modules.values()]
    try:
        for m in modules.values():
            m.to(device).eval()
        if progress is not None:
            progress.start(0)
        with torch.inference_mode():
            for batch in loader:
                arrays = _batch_arrays(step, _to_device(batch, device))
                shards.write(arrays, 0)
                if progress is not None:
                    progress.update(len(arrays["index"]), 0)
        if progress is not None:
            progress.end()
    finally:
        for m, dev, modes in before:
            m.to(dev)
            for c, training in zip(m.modules(), modes):
                c.training = training


# ---------------------------------------------------------------------------------------------------------------
# Lightning pieces (more than one process)


class _Subset(torch.utils.data.Dataset):
    def __init__(self, dataset: torch.utils.data.Dataset, indices: Sequence[int]):
        self.dataset, self.indices = dataset, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Any:
        return self.dataset[self.indices[i]]


def _lightning_module(modules: torch.nn.ModuleDict, step: Callable[[dict[str, Any]], dict[str, torch.Tensor]]) -> Any:
    import pytorch_lightning as pl

    class JobModule(pl.LightningModule):
        """Holds the job's models (so Lightning moves them to the device) and runs its step in predict mode."""

        def __init__(self) -> None:
            super().__init__()
            self.models = modules

        def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
            return _batch_arrays(step, batch)

    return JobModule()


def _writer(shards: Shards) -> Any:
    from pytorch_lightning.callbacks import BasePredictionWriter

    class ShardWriter(BasePredictionWriter):
        """Writes each finished batch as a shard and keeps nothing in memory."""

        def __init__(self) -> None:
            super().__init__(write_interval="batch")

        def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):  # type: ignore[no-untyped-def]
            shards.write(prediction, trainer.global_rank)

    return ShardWriter()


def _progress_callback(progress: _Progress) -> Any:
    from pytorch_lightning.callbacks import Callback

    class Progress(Callback):
        """Feeds :class:`_Progress` from Lightning's predict hooks."""

        def on_predict_start(self, trainer, pl_module):  # type: ignore[no-untyped-def]
            progress.start(trainer.global_rank)

        def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):  # type: ignore[no-untyped-def]
            # ranks run in step: this rank's rows times the world size estimates the whole
            progress.update(len(outputs["index"]) * trainer.world_size, trainer.global_rank)

        def on_predict_end(self, trainer, pl_module):  # type: ignore[no-untyped-def]
            progress.end()

    return Progress()


@contextlib.contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Lightning's banner lines ("GPU available: ...") and its data-loader hints are not for our users."""
    loggers = [logging.getLogger(n) for n in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*(does not have many workers|num_workers|sync_dist).*")
            warnings.filterwarnings("ignore", category=UserWarning, module=r"pytorch_lightning.*")
            # Lightning 2.6 on torch 2.13 inspects batches with a deprecated pytree class; nothing we can change
            warnings.filterwarnings("ignore", category=FutureWarning, message=r".*LeafSpec.*")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


@dataclass
class Devices:
    """Where a job runs: Lightning's ``accelerator``, ``devices`` (per node) and ``num_nodes``.

    One process (the default) runs in this process without Lightning unless ``lightning`` is set (Lightning's own
    one-device path, the same results; kept for comparison and for hosts that want Lightning's hooks).
    """

    accelerator: str = "cpu"
    devices: int = 1
    num_nodes: int = 1
    strategy: str = field(default="auto")
    lightning: bool = False

    @property
    def world_size(self) -> int:
        return self.devices * self.num_nodes

    def in_process_device(self) -> torch.device | None:
        """The device a job runs on in this process, or None where Lightning launches it (several processes, an
        explicit strategy, or ``lightning``). ``auto`` means CUDA when available, else the CPU."""
        if self.lightning or self.world_size != 1 or self.strategy != "auto":
            return None
        if self.accelerator == "auto":
            return resolve_device(None)
        return torch.device("cuda" if self.accelerator in ("gpu", "cuda") else "cpu")

    def check(self) -> None:
        if self.accelerator not in ("cpu", "gpu", "cuda", "auto"):
            raise InputError(f"--accelerator {self.accelerator}: choose cpu, gpu or auto")
        if self.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
            raise InputError(f"--accelerator {self.accelerator}: CUDA is not available on this machine; use cpu")
        if self.accelerator in ("gpu", "cuda") and self.devices > torch.cuda.device_count():
            raise InputError(f"--devices {self.devices}: this machine has {torch.cuda.device_count()} GPU(s)")
        for name, value in (("--devices", self.devices), ("--num-nodes", self.num_nodes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be a positive integer, got {value!r}")


def job_devices(devices: Devices | None, device: str | torch.device | None) -> Devices:
    """``devices`` if given, else one process on ``device`` (``cuda``/``cpu``; None: CUDA when available), checked
    before any work.

    Raises:
        InputError: an accelerator or device count this machine does not have.
    """
    if devices is None:
        devices = Devices(accelerator="gpu" if resolve_device(device).type == "cuda" else "cpu")
    devices.check()
    return devices


def run_job(
    dataset: torch.utils.data.Dataset,
    step: Callable[[dict[str, Any]], dict[str, torch.Tensor]],
    modules: dict[str, torch.nn.Module],
    shards: Shards,
    *,
    batch_size: int,
    devices: Devices,
    resume: bool = False,
    num_workers: int = 0,
    progress: bool = False,
    unit: str = "window",
    desc: str = "predict",
    log_every: float = 30.0,
) -> dict[str, np.ndarray] | None:
    """Run ``step`` over every item of ``dataset`` not yet in ``shards``, in this process or through Lightning
    (:meth:`Devices.in_process_device`); on global rank 0 return all rows' arrays in row order (other ranks return
    None). See the module docstring.

    Args:
        dataset: items are dicts with an ``index`` (the row) and tensors ``step`` reads.
        step: collated batch -> dict of tensors with one row per item.
        modules: the models ``step`` uses: on the device and in eval mode while the job runs, as they were after.
        shards: from :meth:`Shards.for_output`; :meth:`Shards.prepare` is called here.
        progress: a tqdm bar on a terminal, else one line every ``log_every`` seconds.
    """
    from caduceus_plugin.models.caduceus.streaming import malloc_reuse

    devices.check()
    if _launcher_is_rank_zero():
        shards.prepare(resume)  # once, before Lightning starts the other ranks
    n_rows = len(dataset)  # type: ignore[arg-type]
    todo = sorted(set(range(n_rows)) - shards.done()) if resume else list(range(n_rows))
    if todo:
        here = devices.in_process_device()
        loader = torch.utils.data.DataLoader(
            _Subset(dataset, todo),
            batch_size=batch_size,
            shuffle=False,
            num_workers=num_workers,
            persistent_workers=num_workers > 0,
            pin_memory=here is not None and here.type == "cuda",
        )
        report = _Progress(len(todo), unit, desc, log_every) if progress else None
        # malloc_reuse over the whole job, not per forward: each forward leaving it would hand the heap back to the
        # system (malloc_trim) and the next one fault it in again: ~4 % of a 1 kbp batch of the built-in model
        if here is not None:
            with malloc_reuse():
                _in_process(loader, step, modules, shards, here, report)
            return shards.gather(n_rows)
        import pytorch_lightning as pl

        strategy = devices.strategy
        if strategy == "auto" and devices.world_size > 1:
            strategy = "ddp"
        with _quiet_lightning(), malloc_reuse():
            trainer = pl.Trainer(
                accelerator=devices.accelerator,
                devices=devices.devices,
                num_nodes=devices.num_nodes,
                strategy=strategy,
                logger=False,
                enable_checkpointing=False,
                enable_progress_bar=False,
                enable_model_summary=False,
                callbacks=[_writer(shards)] + ([_progress_callback(report)] if report is not None else []),
                inference_mode=True,
            )
            trainer.predict(_lightning_module(torch.nn.ModuleDict(modules), step), loader, return_predictions=False)
            if trainer.world_size > 1:
                trainer.strategy.barrier()
            if trainer.global_rank != 0:
                return None
    return shards.gather(n_rows)
