"""``caduceus train``: fine-tune any registered backbone + head on a real task through gReLU and Lightning.

A Hydra app (``python -m caduceus_plugin.hosts.grelu.train``, or ``caduceus train``): config groups ``model/``,
``data/``, ``task/`` and ``trainer/`` live in :mod:`caduceus_plugin.hosts.grelu.conf`. Every registered backbone is a
valid ``model=`` choice, third-party ones included: those without a YAML file get a config node
``{name: NAME, params: {}}`` in Hydra's ConfigStore. ``-m model=caduceus_ps,caduceus_ph`` runs them side by side
(Hydra multirun).

The model is gReLU's ``LightningModel(model_params={"model_type": NAME, "n_tasks": ..., **model.params})``;
training runs a ``pytorch_lightning.Trainer`` built from the ``trainer`` group (any Trainer keyword: ``devices``,
``strategy=ddp``, ``precision``, ...), with a progress bar, early stopping on the validation loss and the best
checkpoint restored. The run directory receives ``model.ckpt`` (a gReLU checkpoint: reload with
``LightningModel.load_from_checkpoint(path, weights_only=False)`` after ``import caduceus_plugin``, or pass it to
``caduceus predict --weights``), ``metrics.json`` (test metrics) and ``test_predictions.npz`` (``labels`` and
``scores`` of every test example, in the test split's fixed order, for paired intervals between models).
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any

#: Per-example test predictions of a run (``labels``, ``scores``), beside ``metrics.json``.
PREDICTIONS_FILE = "test_predictions.npz"

#: Add this to another Hydra app's search path to compose our groups (``model/`` etc.).
CONFIG_SEARCH_PATH = "pkg://caduceus_plugin.hosts.grelu.conf"


def _store_registered_models() -> None:
    """Config nodes ``model/NAME`` for registered backbones that ship no YAML (e.g. third-party plugins)."""
    from importlib import resources

    from hydra.core.config_store import ConfigStore

    from caduceus_plugin.registry.components import get_registry

    conf = resources.files("caduceus_plugin.hosts.grelu.conf")
    shipped = {p.name[: -len(".yaml")] for p in (conf / "model").iterdir()}
    store = ConfigStore.instance()
    for name in get_registry().names("backbone"):
        if name not in shipped:
            store.store(group="model", name=name, node={"name": name, "params": {}})


def _to_container(node: Any) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(node, resolve=True) if node is not None else None


def build_lightning_model(cfg: Any, n_tasks: int, kind: str) -> Any:
    """gReLU LightningModel for the composed config (the backbone name must be registered)."""
    from grelu.lightning import LightningModel

    import caduceus_plugin  # noqa: F401  (registers our models on grelu.model.models)
    from caduceus_plugin.registry.components import get_registry

    get_registry().get(cfg.model.name)  # unknown -> CaduceusError listing the registered backbones
    task = dict(_to_container(cfg.task))
    task["task"] = task.get("task") or kind
    if task["task"] != kind:
        from caduceus_plugin.errors import InputError

        raise InputError(f"task={task['task']} does not fit data={cfg.data.name}, which is {kind}; use task={kind}")
    task["loss"] = task.get("loss") or {"binary": "bce", "multiclass": "ce", "regression": "mse"}[kind]
    train_params = {
        **task,
        "batch_size": int(cfg.data.batch_size),
        "num_workers": int(cfg.data.num_workers),
        "logger": None,
        "save_dir": str(cfg.out_dir),
        "max_epochs": int(cfg.trainer.get("max_epochs", 1) or 1),
    }
    if cfg.init_checkpoint:
        model = LightningModel.load_from_checkpoint(cfg.init_checkpoint, weights_only=False)
        if model.model.head.n_tasks != n_tasks:
            model.change_head(n_tasks=n_tasks, final_pool_func="avg")
        model.train_params.update(train_params)
        return model
    params = dict(_to_container(cfg.model.params) or {})
    return LightningModel(model_params={"model_type": cfg.model.name, "n_tasks": n_tasks, **params},
                          train_params=train_params)


def load_splits(cfg: Any) -> tuple[dict[str, Any], Any]:
    """gReLU datasets (train/val/test) of the configured real-data task (see :mod:`caduceus_plugin.data.tasks`)."""
    from caduceus_plugin import data as datasets

    kwargs = {"seq_len": int(cfg.data.seq_len)} if cfg.data.get("seq_len") else {}
    quick = cfg.data.get("quick", False)
    quick_test = cfg.data.get("quick_test")
    if quick_test and isinstance(quick, int) and not isinstance(quick, bool) and quick > 0:
        # a small training budget, a test split big enough for an interval: subsample the full task here
        task = datasets.load_task(cfg.data.name, quick=False, **kwargs).subsample(quick, 0, int(quick_test))
    else:
        task = datasets.load_task(cfg.data.name, quick=quick if isinstance(quick, int) else bool(quick), **kwargs)
    rc = bool(cfg.model.get("rc_augment", False))  # Ph is trained with RC augmentation (PS needs none)
    return datasets.to_grelu_datasets(task, rc=rc, seed=int(cfg.seed)), task


def _record_data_params(model: Any, splits: dict[str, Any]) -> None:
    """What gReLU's train_on_dataset stores, so downstream gReLU helpers work on our checkpoints."""
    train = splits["train"]
    model.data_params["tasks"] = train.tasks.reset_index(names="name").to_dict(orient="list")
    for split in ("train", "val"):
        model.data_params[split] = dict(model._get_dataset_attrs(splits[split]))


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


#: The composed config's values this app reads itself, with what each must be (checked before any work).
_CHECKS: tuple[tuple[str, str, Any], ...] = (
    ("seed", "an integer", _is_int),
    ("early_stopping_patience", "null or an integer >= 0", lambda v: v is None or (_is_int(v) and v >= 0)),
    ("data.batch_size", "a positive integer", lambda v: _is_int(v) and v >= 1),
    ("data.num_workers", "an integer >= 0", lambda v: _is_int(v) and v >= 0),
    ("data.seq_len", "null or an integer >= 2", lambda v: v is None or (_is_int(v) and v >= 2)),
    ("data.quick", "true, false or a positive integer", lambda v: isinstance(v, bool) or (_is_int(v) and v >= 1)),
    ("data.quick_test", "null or a positive integer", lambda v: v is None or (_is_int(v) and v >= 1)),
    ("trainer.max_epochs", "a positive integer", lambda v: _is_int(v) and v >= 1),
    ("task.lr", "a positive number", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0),
    ("task.clip", "null or a number >= 0",
     lambda v: v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0)),
    ("task.optimizer", "adam or sgd (gReLU's optimizers)", lambda v: v in ("adam", "sgd")),
    ("init_checkpoint", "null or an existing gReLU .ckpt file", lambda v: v is None or Path(str(v)).is_file()),
)


def check_config(cfg: Any) -> None:
    """Refuse, before any work, a value of the composed config that would fail later (or train wrongly).

    Raises:
        InputError: the first value that is not what :data:`_CHECKS` says, naming the override that fixes it.
    """
    from omegaconf import OmegaConf

    from caduceus_plugin.errors import InputError

    for key, what, ok in _CHECKS:
        value = OmegaConf.select(cfg, key, default=None)
        if not ok(value):
            raise InputError(f"{key}={value!r}: expected {what} (override it, e.g. {key}=...)")


def _trainer(**kwargs: Any) -> Any:
    """``pytorch_lightning.Trainer(**kwargs)``, its refusals of the ``trainer`` group's values as InputError."""
    import pytorch_lightning as pl
    from lightning_fabric.utilities.exceptions import MisconfigurationException

    from caduceus_plugin.errors import InputError

    try:
        return pl.Trainer(**kwargs)
    except TypeError as err:  # a key Trainer does not take (+trainer.foo=1)
        raise InputError(f"trainer: {err} (the trainer group holds pytorch_lightning.Trainer's arguments)") from None
    except (ValueError, MisconfigurationException) as err:  # a value it refuses (accelerator, precision, ...)
        raise InputError(f"trainer: {str(err).splitlines()[0]}") from None


def run(cfg: Any) -> dict[str, Any]:
    """Train, restore the best checkpoint, test; returns the test metrics (also written to metrics.json)."""
    import pytorch_lightning as pl
    import torch
    from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
    from pytorch_lightning.loggers import CSVLogger

    from caduceus_plugin.fileio import atomic_write, atomic_write_text

    for pattern in (".*LeafSpec.*", ".*does not have many workers.*", ".*smaller than the logging interval.*"):
        warnings.filterwarnings("ignore", message=pattern)  # Lightning's advice, not the user's problem
    check_config(cfg)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    callbacks: list[Any] = [ModelCheckpoint(dirpath=out_dir / "checkpoints", monitor="val_loss", mode="min")]
    if cfg.early_stopping_patience:
        callbacks.append(EarlyStopping(monitor="val_loss", mode="min", patience=int(cfg.early_stopping_patience)))
    trainer_kwargs = dict(_to_container(cfg.trainer))
    trainer = _trainer(  # before the data and the model: a trainer value it refuses costs no work
        default_root_dir=str(out_dir),
        logger=CSVLogger(str(out_dir), name="logs"),
        callbacks=callbacks,
        gradient_clip_val=float(cfg.task.get("clip") or 0) or None,
        **trainer_kwargs,
    )
    splits, task = load_splits(cfg)
    model = build_lightning_model(cfg, n_tasks=splits["train"].n_tasks, kind=task.kind)
    _record_data_params(model, splits)
    loaders = {s: (model.make_train_loader if s == "train" else model.make_test_loader)(splits[s]) for s in splits}
    import time

    t0 = time.perf_counter()
    trainer.fit(model, train_dataloaders=loaders["train"], val_dataloaders=loaders["val"])
    train_seconds = time.perf_counter() - t0
    best = callbacks[0].best_model_path
    if best:
        state = torch.load(best, map_location="cpu", weights_only=False)["state_dict"]
        model.load_state_dict(state)
    model.data_params["test"] = dict(model._get_dataset_attrs(splits["test"]))
    metrics: dict[str, float] = {}
    if trainer.is_global_zero:
        from caduceus_plugin.data import compute_metrics

        test_labels, test_scores = predictions(model, loaders["test"], task)
        metrics = compute_metrics(task, test_labels, test_scores)
    model.performance["test"] = metrics
    ckpt = out_dir / "model.ckpt"
    trainer.save_checkpoint(str(ckpt))  # every rank takes part (barrier); rank 0 writes, atomically
    if trainer.is_global_zero:
        summary = {"model": cfg.model.name, "data": cfg.data.name, "seed": int(cfg.seed), "metrics": metrics,
                   "n_parameters": sum(p.numel() for p in model.model.parameters()),
                   "epochs": trainer.current_epoch, "checkpoint": str(ckpt), "world_size": trainer.world_size,
                   "train_seconds": round(train_seconds, 2), "n_train": len(splits["train"]),
                   "seq_len": task.seq_len}
        # per-example test predictions, in the test split's (fixed) order: paired intervals in caduceus bench
        atomic_write(out_dir / PREDICTIONS_FILE, lambda p: _save_predictions(p, test_labels, test_scores))
        atomic_write_text(out_dir / "metrics.json", json.dumps(summary, indent=2))
        print(f"test metrics ({cfg.model.name} on {cfg.data.name}, seed {cfg.seed}):")
        for name, value in metrics.items():
            print(f"  {name}: {value:.4f}")
        print(f"checkpoint: {ckpt}")
    return metrics


def _save_predictions(path: str, labels: Any, scores: Any) -> None:
    import numpy as np

    with open(path, "wb") as f:  # a file object: np.savez would append ".npz" to the temporary name
        np.savez(f, labels=labels, scores=scores)


def predictions(model: Any, loader: Any, task: Any) -> tuple[Any, Any]:
    """Test labels (N,) int and scores (binary: (N,) P(positive); multiclass: (N, C)) in the loader's order."""
    import numpy as np
    import torch

    model.eval()
    scores, labels = [], []
    with torch.inference_mode():
        for x, y in loader:
            p = model(x.to(model.device))[..., 0].float().cpu().numpy()  # activation applied: probabilities
            scores.append(p[:, 0] if task.kind == "binary" else p)
            labels.append(y[:, 0, 0].numpy() if task.kind == "binary" else y[..., 0].argmax(1).numpy())
    return np.concatenate(labels).astype(int), np.concatenate(scores)


def evaluate(model: Any, loader: Any, task: Any) -> dict[str, float]:
    """The task's metrics (accuracy, AUROC, MCC; :func:`caduceus_plugin.data.tasks.compute_metrics`) on one process."""
    from caduceus_plugin.data import compute_metrics

    return compute_metrics(task, *predictions(model, loader, task))


#: Hydra's flags that take a value (the next word is not an override); ``--info`` takes one only from its choices.
_VALUE_FLAGS = frozenset({"--cfg", "-c", "--package", "-p"})
_INFO_CHOICES = frozenset({"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"})
#: Flags after which Hydra reads another config, prints help, or replays a run: the command line is left to Hydra.
_HYDRA_OWNS = frozenset({"--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd", "--help", "-h",
                         "--hydra-help", "--version", "--shell-completion", "-sc", "--experimental-rerun"})


def _one_line(err: BaseException) -> str:
    """Hydra's and OmegaConf's several-line messages as one line: the text before the location details."""
    options = getattr(err, "options", None)  # MissingConfigException: the group's available choices
    lines = []
    for line in str(err).splitlines():
        line = line.strip()
        if line.startswith(("full_key:", "object_type", "Config search path", "See https://", "Available options")):
            break
        if line:
            lines.append(line.rstrip(".") if not lines else line[:1].lower() + line[1:].rstrip("."))
    text = "; ".join(lines) or type(err).__name__
    return f"{text}: choose one of {', '.join(options)}" if options else text


def override_error(argv: list[str]) -> str | None:
    """What is wrong with the overrides of a ``caduceus train`` command line, in one line, or None.

    Hydra reports a bad override or an unknown config choice over several lines with exit status 1; composing
    the config here first (each value of a sweep in turn) lets the command say it as every other one does, one
    ``error:`` line and status 2, before any work. Command lines that read another config or ask for help are
    left to Hydra.
    """
    from hydra import compose, initialize_config_module
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    words: list[str] = []
    skip = False
    for i, word in enumerate(argv):
        if skip:
            skip = False
            continue
        if word.split("=", 1)[0] in _HYDRA_OWNS:
            return None
        if word in _VALUE_FLAGS:
            skip = True
        elif word in ("--info", "-i"):
            skip = i + 1 < len(argv) and argv[i + 1] in _INFO_CHOICES
        elif not word.startswith("-"):
            words.append(word)
    try:
        overrides = OverridesParser.create().parse_overrides(words)
    except HydraException as err:
        text = _one_line(err).replace("Error parsing override ", "cannot parse the override ", 1).replace("; ", ": ", 1)
        return f"{text} (overrides are key=value, e.g. model=caduceus_ph)"
    sweeps = [o.input_line for o in overrides if o.is_sweep_override()]
    if sweeps and not {"-m", "--multirun"} & set(argv):
        return f"{sweeps[0]} is a sweep (several values): add -m to run one job per value"
    prefix = {OverrideType.CHANGE: "", OverrideType.ADD: "+", OverrideType.FORCE_ADD: "++", OverrideType.DEL: "~"}
    choices: list[list[str]] = []  # per override, the override strings of each of its values
    for o in overrides:
        if not o.is_sweep_override():
            choices.append([o.input_line])
            continue
        try:
            values = list(o.sweep_string_iterator())
        except HydraException:  # a sweep only Hydra's launcher can expand (glob(), interval()): left to it
            return None
        choices.append([f"{prefix[o.type]}{o.get_key_element()}={v}" for v in values] or [o.input_line])
    first = [c[0] for c in choices]
    runs = [first] + [[*first[:i], v, *first[i + 1:]] for i, c in enumerate(choices) for v in c[1:]]
    _store_registered_models()
    with initialize_config_module(config_module="caduceus_plugin.hosts.grelu.conf", version_base="1.3"):
        for run_overrides in runs:
            try:
                compose(config_name="train", overrides=run_overrides)
            except (HydraException, OmegaConfBaseException) as err:
                return _one_line(err)
    return None


def main(argv: list[str] | None = None) -> int:
    """Entry point: Hydra command line (``overrides``, ``-m`` for multirun, ``--help``)."""
    import hydra

    from caduceus_plugin.errors import CaduceusError

    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    problem = override_error(sys.argv[1:])
    if problem:
        print(f"error: {problem} (see `caduceus train --help`)", file=sys.stderr)
        return 2
    _store_registered_models()
    status = {"code": 0}

    @hydra.main(version_base="1.3", config_path="conf", config_name="train")
    def _app(cfg: Any) -> Any:
        try:
            return run(cfg)
        except CaduceusError as err:
            print(f"error: {err}", file=sys.stderr)
            status["code"] = 2
            if cfg.get("_multirun_", False):
                raise
            return None

    _app()
    return status["code"]


if __name__ == "__main__":
    sys.exit(main())
