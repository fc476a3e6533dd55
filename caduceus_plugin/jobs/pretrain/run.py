"""Masked-language-model pre-training of Caduceus on a FASTA file (spec §5.1), and its evaluation.

The corpus (contigs as token ids, the held-out validation region, training windows, BERT masking) is in
:mod:`.corpus`, the unigram and k-mer count baselines in :mod:`.baselines`.

Caduceus-PS is RC-equivariant and trains without RC augmentation; Caduceus-Ph windows are reverse-complemented
with probability 0.5. The paper's pre-training ablations are options of the same loop: untied BiMamba
(``weight_tie=False``), uni-directional Mamba (``bidirectional=False``), next-token prediction (``objective="ntp"``,
for the causal models: uni-directional Mamba and HyenaDNA, ``arch="hyenadna"``).

AdamW (betas 0.9/0.95, weight decay on matrices only), linear warm-up then cosine decay, gradient clipping,
periodic validation on a fixed set of masked windows, checkpoints written with
:func:`caduceus_plugin.models.caduceus.checkpoint.save_pretrained` (atomic). Everything is seeded: the same
arguments on the same machine give the same weights. At every validation the full training state (weights,
optimizer, the data and masking generators) is written atomically to ``OUT/resume.pt``, so a run that was stopped
(``stop_at_step``, ``max_minutes``, Ctrl-C or SIGKILL) continues with ``resume=True`` and ends with the same weights
as an uninterrupted run.

Evaluation (:func:`evaluate_windows`) reports, on the same masked positions, the model's MLM loss and masked-token
accuracy and the two count baselines (unigram and k-mer; the k-mer baseline sees the true neighbouring bases even
where the model's input is masked, so it is, if anything, favoured).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from caduceus_plugin.data.stats import pooled_paired_bootstrap, verdict
from caduceus_plugin.errors import InputError
from caduceus_plugin.fileio import atomic_write, atomic_write_json
from caduceus_plugin.genome import Region, parse_region
from caduceus_plugin.jobs.pretrain.baselines import KmerModel, baseline_metrics, unigram_counts
from caduceus_plugin.jobs.pretrain.corpus import (
    IGNORE_INDEX,
    MaskedSet,
    WindowSampler,
    load_fasta,
    mask_tokens,
    next_token_labels,
    split_genome,
    tile_windows,
)
from caduceus_plugin.sequence import A_ID, MASK_ID, PAD_ID, T_ID

NUC_IDS = (A_ID, A_ID + 1, A_ID + 2, T_ID)  # A C G T


# ---------------------------------------------------------------------------------------------------------------
# evaluation


def lm_logits(model: torch.nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """Logits (b, l, vocab) float32 of a Caduceus MLM (``.logits``) or of a model that returns the tensor."""
    out = model(inputs)
    return (out if isinstance(out, torch.Tensor) else out.logits).float()


@torch.no_grad()
def model_metrics(model: torch.nn.Module, data: MaskedSet, batch_size: int = 16) -> dict[str, Any]:
    """Metrics of ``model`` on the selected positions of ``data`` (masked positions, or next tokens).

    ``loss``: MLM cross-entropy over the full vocabulary (nats, the training objective); ``nuc_loss``: the same
    renormalised over A/C/G/T (comparable with the baselines); ``accuracy``: argmax over A/C/G/T equals the
    original base; ``accuracy_mask_only`` / ``nuc_loss_mask_only``: the same on the positions whose input was
    ``[MASK]`` (80 %), where the model cannot see the base; ``window_nuc_loss``: ``nuc_loss`` of each window
    (a list, NaN for a window without selected positions), ``window_n`` / ``window_correct``: each window's number
    of selected positions and of correct argmaxes, for intervals paired over windows.
    """
    was_training = model.training
    model.eval()
    sums = dict.fromkeys(("loss", "nuc_loss", "correct", "nuc_loss_m", "correct_m", "n", "n_m"), 0.0)
    nuc = torch.tensor(NUC_IDS)
    window_loss: list[float] = []
    window_n: list[int] = []
    window_correct: list[int] = []
    try:
        for i in range(0, len(data.inputs), batch_size):
            inputs, labels = data.inputs[i : i + batch_size], data.labels[i : i + batch_size]
            sel = labels != IGNORE_INDEX
            if not sel.any():
                window_loss += [math.nan] * len(inputs)
                window_n += [0] * len(inputs)
                window_correct += [0] * len(inputs)
                continue
            logits = lm_logits(model, inputs)[sel]  # (m, vocab)
            target = labels[sel]
            is_mask = inputs[sel] == MASK_ID
            nuc_logits = logits[:, nuc]
            # float64 sums, so the totals agree with the per-window sums the paired intervals use
            nuc_ce = F.cross_entropy(nuc_logits, target - A_ID, reduction="none").double()
            row = sel.nonzero()[:, 0]  # window (within the batch) of each selected position
            per_sum = torch.zeros(len(inputs), dtype=torch.float64).index_add_(0, row, nuc_ce)
            per_n = torch.bincount(row, minlength=len(inputs)).double()
            window_loss += (per_sum / per_n).tolist()
            hit = (nuc_logits.argmax(-1) == target - A_ID).double()
            window_n += per_n.long().tolist()
            window_correct += torch.zeros(len(inputs), dtype=torch.float64).index_add_(0, row, hit).long().tolist()
            sums["loss"] += F.cross_entropy(logits, target, reduction="sum").item()
            sums["nuc_loss"] += nuc_ce.sum().item()
            sums["correct"] += hit.sum().item()
            sums["nuc_loss_m"] += nuc_ce[is_mask].sum().item()
            sums["correct_m"] += hit[is_mask].sum().item()
            sums["n"] += int(sel.sum())
            sums["n_m"] += int(is_mask.sum())
    finally:
        model.train(was_training)
    n, n_m = sums["n"], max(sums["n_m"], 1.0)
    if n == 0:
        raise InputError("no masked positions to evaluate: the evaluation windows hold no A/C/G/T")
    return {
        "loss": sums["loss"] / n,
        "nuc_loss": sums["nuc_loss"] / n,
        "accuracy": sums["correct"] / n,
        "nuc_loss_mask_only": sums["nuc_loss_m"] / n_m,
        "accuracy_mask_only": sums["correct_m"] / n_m,
        "n_masked": int(n),
        "n_mask_token": int(sums["n_m"]),
        "window_nuc_loss": window_loss,
        "window_n": window_n,
        "window_correct": window_correct,
    }


def paired_comparison(model: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """``model`` minus ``other`` (two :func:`model_metrics` results on the same masked positions), pooled over
    positions, each with a 95 % bootstrap interval over windows and a verdict: ``nuc_loss_diff`` (negative: the model
    is better), ``accuracy_diff`` (positive: the model is better)."""
    n = np.asarray(model["window_n"], dtype=np.float64)
    if not np.array_equal(n, np.asarray(other["window_n"], dtype=np.float64)):
        raise ValueError("paired comparison needs both models scored on the same masked positions")
    loss_sums = [np.nan_to_num(np.asarray(m["window_nuc_loss"], dtype=np.float64)) * n for m in (model, other)]
    res: dict[str, Any] = {}
    for key, a, b, higher in (
        ("nuc_loss_diff", *loss_sums, False),
        ("accuracy_diff", model["window_correct"], other["window_correct"], True),
    ):
        iv = pooled_paired_bootstrap(a, b, n)
        res[key] = {"diff": iv.estimate, "ci_low": iv.low, "ci_high": iv.high, "method": iv.method,
                    "verdict": verdict(iv, higher_is_better=higher)}
    return res


def evaluate_windows(
    model: torch.nn.Module,
    windows: np.ndarray,
    unigram: np.ndarray,
    kmer_models: Sequence[KmerModel] = (),
    seed: int = 12345,
    batch_size: int = 16,
    against: Mapping[str, torch.nn.Module] | None = None,
) -> dict[str, Any]:
    """Model vs baselines (and vs the models of ``against``) on the same masked positions of ``windows`` (n, l)
    token ids.

    Returns ``{"model": {...}, "baselines": {...}, "margin_vs_unigram": acc_model - acc_unigram,
    "margin_vs_best_kmer": ..., the same ``*_mask_only``, "n_windows", "n_masked"}``, and with ``against``
    ``"against": {name: {"model": {...}, **paired_comparison(model, that model)}}``.
    """
    data = MaskedSet.build(windows, seed)
    res: dict[str, Any] = {"model": model_metrics(model, data, batch_size)}
    if against:
        res["against"] = {}
        for name, other in against.items():
            theirs = model_metrics(other, data, batch_size)
            res["against"][name] = {"model": theirs, **paired_comparison(res["model"], theirs)}
    res["baselines"] = baseline_metrics(data, unigram, kmer_models)
    acc = res["model"]["accuracy"]
    acc_m = res["model"]["accuracy_mask_only"]
    res["margin_vs_unigram"] = acc - res["baselines"]["unigram"]["accuracy"]
    res["margin_vs_unigram_mask_only"] = acc_m - res["baselines"]["unigram"]["accuracy_mask_only"]
    kmers = [v for k, v in res["baselines"].items() if k.startswith("kmer")]
    if kmers:
        res["margin_vs_best_kmer"] = acc - max(v["accuracy"] for v in kmers)
        res["margin_vs_best_kmer_mask_only"] = acc_m - max(v["accuracy_mask_only"] for v in kmers)
    res["n_windows"], res["n_masked"], res["mask_seed"] = len(windows), data.n_masked, seed
    return res


# ---------------------------------------------------------------------------------------------------------------
# training


@dataclass
class PretrainConfig:
    """Arguments of :func:`pretrain` (the CLI's flags).

    ``arch``/``objective``/``bidirectional``/``weight_tie`` select the model of the paper's ablations;
    ``rc_augment`` defaults to "not RC-equivariant" (Ph and the causal models get it, PS does not).
    ``resume``, ``stop_at_step`` and ``max_minutes`` let one schedule of ``steps`` run over several sittings; they
    are not part of the run's identity (a resumed run checks that everything else matches).
    """

    fasta: str
    out: str
    rcps: bool = True
    d_model: int = 96
    n_layer: int = 4
    seq_len: int = 1024
    batch_size: int = 4
    steps: int = 2000
    lr: float = 2e-3
    min_lr_ratio: float = 0.05
    warmup_frac: float = 0.1
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    mask_prob: float = 0.15
    val_region: str | None = None
    val_windows: int = 64
    val_every: int = 250
    max_n_frac: float = 0.5
    seed: int = 0
    threads: int = 1
    arch: str = "caduceus"
    objective: str = "mlm"
    bidirectional: bool = True
    weight_tie: bool = True
    rc_augment: bool | None = None
    resume: bool = False
    stop_at_step: int | None = None
    max_minutes: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    #: Fields that may differ between the sittings of one run.
    SITTING_FIELDS = ("threads", "resume", "stop_at_step", "max_minutes", "out", "fasta")

    @property
    def augment(self) -> bool:
        """Whether training windows are reverse-complemented with probability 0.5."""
        if self.rc_augment is not None:
            return self.rc_augment
        return not (self.arch == "caduceus" and self.rcps)

    def validate(self) -> None:
        for name in ("d_model", "n_layer", "seq_len", "batch_size", "steps", "val_windows", "val_every", "threads"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(self, name)}")
        if not self.lr > 0:
            raise InputError(f"--lr must be positive, got {self.lr}")
        if not 0 < self.mask_prob < 1:
            raise InputError(f"mask probability must be in (0, 1), got {self.mask_prob}")
        if self.arch not in ("caduceus", "hyenadna"):
            raise InputError(f"--arch must be caduceus or hyenadna, got {self.arch!r}")
        if self.objective not in ("mlm", "ntp"):
            raise InputError(f"--objective must be mlm or ntp, got {self.objective!r}")
        if self.arch == "hyenadna" and self.objective != "ntp":
            raise InputError("HyenaDNA is causal: use --objective ntp with --arch hyenadna")
        if self.arch == "caduceus" and self.objective == "ntp" and (self.bidirectional or self.rcps):
            raise InputError(
                "next-token prediction needs a causal model: add --no-bidirectional --no-rcps "
                "(a bi-directional or RC-equivariant model sees the token it predicts)"
            )
        if self.stop_at_step is not None and self.stop_at_step < 1:
            raise InputError(f"--stop-at-step must be a positive integer, got {self.stop_at_step}")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise InputError(f"--max-minutes must be positive, got {self.max_minutes}")

    def identity(self) -> dict[str, Any]:
        """The settings that define the run (everything but :attr:`SITTING_FIELDS`), JSON-ready."""
        d = dataclasses.asdict(self)
        d["betas"] = list(d["betas"])
        return {k: v for k, v in d.items() if k not in self.SITTING_FIELDS}


def lr_at(step: int, total: int, lr: float, warmup_frac: float = 0.1, min_lr_ratio: float = 0.05) -> float:
    """Linear warm-up over ``warmup_frac * total`` steps, then cosine decay to ``min_lr_ratio * lr``."""
    warm = max(1, round(warmup_frac * total))
    if step < warm:
        return lr * (step + 1) / warm
    t = min(1.0, (step - warm) / max(1, total - warm))
    return lr * (min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on weight matrices only; none on biases, norms, ``A_log``, ``D`` or the (tied) embedding."""
    decay, no_decay, seen = [], [], set()
    for name, p in model.named_parameters():
        if id(p) in seen or not p.requires_grad:
            continue
        seen.add(id(p))
        if p.ndim < 2 or "A_log" in name or name.endswith(".D") or "embedding" in name:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@contextlib.contextmanager
def limited_threads(threads: int) -> Iterator[None]:
    """Run torch (and numba's scan kernels) on ``threads`` CPU threads; restore the previous counts afterwards."""
    import numba

    old_torch, old_numba = torch.get_num_threads(), numba.get_num_threads()
    torch.set_num_threads(threads)
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        torch.set_num_threads(old_torch)
        numba.set_num_threads(old_numba)


def build_model(cfg: PretrainConfig) -> torch.nn.Module:
    """The freshly initialised language model ``cfg`` describes (seed the RNG first)."""
    if cfg.arch == "hyenadna":
        from caduceus_plugin.models.hyenadna import HyenaDNAConfig, HyenaDNAForCausalLM

        # no dropout, as for the Caduceus models it is compared with
        return HyenaDNAForCausalLM(
            HyenaDNAConfig(d_model=cfg.d_model, n_layer=cfg.n_layer, l_max=cfg.seq_len, embed_dropout=0.0)
        )
    from caduceus_plugin.models.caduceus.config import CaduceusConfig
    from caduceus_plugin.models.caduceus.modeling import CaduceusForMaskedLM

    mcfg = CaduceusConfig(
        d_model=cfg.d_model,
        n_layer=cfg.n_layer,
        rcps=cfg.rcps,
        bidirectional=cfg.bidirectional,
        bidirectional_weight_tie=cfg.weight_tie,
        pad_token_id=PAD_ID,
        extra={"seq_len": cfg.seq_len, **cfg.extra},
    )
    model = CaduceusForMaskedLM(mcfg)
    model.backbone.gradient_checkpointing = False  # small models: memory is not the limit, speed is
    return model


def model_variant(cfg: PretrainConfig) -> str:
    """A readable name of the model ``cfg`` trains, e.g. ``Caduceus-PS``, ``Mamba (uni-directional)``."""
    if cfg.arch == "hyenadna":
        return "HyenaDNA"
    if not cfg.bidirectional:
        return "Mamba (uni-directional)" + (", RCPS" if cfg.rcps else "")
    name = "Caduceus-PS" if cfg.rcps else "Caduceus-Ph"
    return name + ("" if cfg.weight_tie else " (untied BiMamba)")


def save_model(model: torch.nn.Module, out: Path) -> None:
    """Weights and config in the model's released layout (atomic)."""
    if hasattr(model, "hyena"):
        from caduceus_plugin.models.hyenadna.checkpoint import save_pretrained as save_hyena

        save_hyena(model.hyena, out)
    else:
        from caduceus_plugin.models.caduceus.checkpoint import save_pretrained

        save_pretrained(model, out)  # type: ignore[arg-type]


def heldout_set(windows: np.ndarray, objective: str, seed: int, mask_prob: float = 0.15) -> MaskedSet:
    """The fixed evaluation set of an objective: masked windows (``mlm``) or next-token targets (``ntp``)."""
    return MaskedSet.next_token(windows) if objective == "ntp" else MaskedSet.build(windows, seed, mask_prob)


def pretrain(
    cfg: PretrainConfig,
    genome: dict[str, np.ndarray] | None = None,
    log: Callable[[str], None] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Train a language model from scratch; writes ``cfg.out`` (config.json, model.safetensors, training.json,
    resume.pt).

    Args:
        cfg: the run's settings.
        genome: already-loaded contigs (token ids); default: read ``cfg.fasta``.
        log: called with one line per validation.
        progress: show a tqdm progress bar.

    Returns:
        the ``training.json`` contents (``"complete": False`` when the run stopped before ``cfg.steps``).

    Raises:
        InputError: bad settings; ``resume`` with a state from different settings.
    """

    cfg.validate()
    if Path(cfg.out).exists() and not Path(cfg.out).is_dir():
        raise InputError(f"--out {cfg.out} exists and is not a directory; choose a directory path")
    with limited_threads(cfg.threads):
        return _pretrain(cfg, genome, log or (lambda s: None), progress)


RESUME_FILE = "resume.pt"


def _save_state(
    path: Path,
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    sampler: WindowSampler,
    mask_gen: torch.Generator,
    loop: dict[str, Any],
    info: dict[str, Any],
) -> None:
    state = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "sampler_rng": sampler.rng.bit_generator.state,
        "mask_gen": mask_gen.get_state(),
        "torch_rng": torch.get_rng_state(),
        "loop": loop,
        "info": info,
    }
    atomic_write(path, lambda p: torch.save(state, p))


def _load_state(path: Path, cfg: PretrainConfig) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        saved = state["info"]["settings"]
    except Exception as exc:  # a truncated or foreign file: say so, never train over it silently
        raise InputError(f"--resume: cannot read {path} ({type(exc).__name__}); delete it to start afresh") from None
    now = cfg.identity()
    diff = [k for k in sorted(set(now) | set(saved)) if saved.get(k) != now.get(k)]  # both are identity()
    if diff:
        k = diff[0]
        raise InputError(
            f"--resume: {path.parent} was trained with {k}={saved.get(k)!r}, now {now.get(k)!r}; "
            "use the same settings or a new --out"
        )
    return state


def _pretrain(
    cfg: PretrainConfig, genome: dict[str, np.ndarray] | None, log: Callable[[str], None], progress: bool
) -> dict[str, Any]:
    t_load = time.time()
    out = Path(cfg.out)
    state = None
    if (out / RESUME_FILE).exists():
        if not cfg.resume:
            raise InputError(
                f"{out} holds an unfinished or finished run ({RESUME_FILE}); add --resume or use a new --out"
            )
        state = _load_state(out / RESUME_FILE, cfg)
    if genome is None:
        genome = load_fasta(cfg.fasta)
    split = split_genome(genome, parse_region(cfg.val_region) if cfg.val_region else None, cfg.seq_len)
    val_windows = tile_windows(split.val_ids(), cfg.seq_len, cfg.val_windows)
    if len(val_windows) == 0:
        raise InputError(f"validation region {split.val_region} has no window of {cfg.seq_len} bp that is mostly ACGT")
    val_set = heldout_set(val_windows, cfg.objective, cfg.seed + 1, cfg.mask_prob)
    unigram = unigram_counts(split.train_ids())
    base = baseline_metrics(val_set, unigram)["unigram"]
    log(
        f"data: {sum(map(len, genome.values())):,} bp in {len(genome)} contig(s); train {split.train_bases:,} bp; "
        f"validation {split.val_region} ({len(val_windows)} windows, {val_set.n_masked:,} scored positions); "
        f"loaded in {time.time() - t_load:.1f} s"
    )

    torch.manual_seed(cfg.seed)
    model = build_model(cfg)
    model.train()
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=cfg.betas)
    sampler = WindowSampler(split, cfg.seq_len, np.random.default_rng(cfg.seed), cfg.max_n_frac)
    mask_gen = torch.Generator().manual_seed(cfg.seed + 2)
    out.mkdir(parents=True, exist_ok=True)

    info: dict[str, Any] = {
        "settings": cfg.identity(),
        "model": {
            "variant": model_variant(cfg),
            "parameters": model.num_parameters(),
            "rc_augmentation": cfg.augment,
            "objective": cfg.objective,
        },
        "data": {
            "fasta": str(cfg.fasta),
            "contigs": {c: len(v) for c, v in genome.items()},
            "validation_region": str(split.val_region),
            "train_segments": [str(Region(*s)) for s in split.train_segments],
            "train_bases": split.train_bases,
            "train_acgt_bases": int(unigram.sum()),
            "unigram_counts_ACGT": [int(c) for c in unigram],
            "val_windows": len(val_windows),
            "val_masked_positions": val_set.n_masked,
        },
        "masking": {
            "prob": cfg.mask_prob,
            "mask": 0.8,
            "random_nucleotide": 0.1,
            "unchanged": 0.1,
            "N": "[PAD], never masked",
        }
        if cfg.objective == "mlm"
        else {"next_token": "position i scores the base at i + 1; [PAD] targets not scored"},
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "machine": f"{platform.machine()} {platform.processor() or ''} ({os.cpu_count()} cpus)".strip(),
            "threads": cfg.threads,
        },
        "val_unigram": base,
        "history": [],
        "sittings": [],
        "complete": False,
    }
    loop: dict[str, Any] = {"step": 0, "tokens": 0, "running": 0.0, "n_running": 0, "elapsed": 0.0}
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sampler.rng.bit_generator.state = state["sampler_rng"]
        mask_gen.set_state(state["mask_gen"])
        torch.set_rng_state(state["torch_rng"])
        loop, info = state["loop"], state["info"]
        info["environment"]["threads"] = cfg.threads
        log(f"resuming {out} at step {loop['step']}/{cfg.steps} ({loop['tokens']:,} tokens)")
    else:
        m0 = model_metrics(model, val_set)
        info["initial"] = {"val_loss": m0["loss"], "val_nuc_loss": m0["nuc_loss"], "val_accuracy": m0["accuracy"]}
        log(f"step 0: val loss {m0['loss']:.4f}, val acc {m0['accuracy']:.4f} (unigram {base['accuracy']:.4f})")
    info["sittings"].append({"from_step": loop["step"], "threads": cfg.threads})

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=loop["step"], unit="step", file=sys.stderr)
    t0, elapsed0 = time.time(), loop["elapsed"]
    stop = min(cfg.steps, cfg.stop_at_step or cfg.steps)
    while loop["step"] < stop:
        step = loop["step"]
        lr = lr_at(step, cfg.steps, cfg.lr, cfg.warmup_frac, cfg.min_lr_ratio)
        for g in opt.param_groups:
            g["lr"] = lr
        batch = torch.from_numpy(sampler.batch(cfg.batch_size, rc_augment=cfg.augment).astype(np.int64))
        if cfg.objective == "ntp":
            inputs, labels = batch, next_token_labels(batch)
        else:
            inputs, labels = mask_tokens(batch, mask_gen, cfg.mask_prob)
        logits = lm_logits(model, inputs)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE_INDEX)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss became {loss.item()} at step {step + 1}; lower --lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        loop["step"] = step + 1
        loop["tokens"] += batch.numel()
        loop["running"] += loss.item()
        loop["n_running"] += 1
        loop["elapsed"] = elapsed0 + time.time() - t0
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.1e}")
        out_of_time = cfg.max_minutes is not None and time.time() - t0 >= 60 * cfg.max_minutes
        if loop["step"] % cfg.val_every == 0 or loop["step"] == cfg.steps or loop["step"] == stop or out_of_time:
            m = model_metrics(model, val_set)
            rec = {
                "step": loop["step"],
                "lr": lr,
                "train_loss": loop["running"] / max(loop["n_running"], 1),
                "grad_norm": float(gnorm),
                "val_loss": m["loss"],
                "val_nuc_loss": m["nuc_loss"],
                "val_accuracy": m["accuracy"],
                "tokens_seen": loop["tokens"],
                "elapsed_s": round(loop["elapsed"], 1),
            }
            info["history"].append(rec)
            loop["running"], loop["n_running"] = 0.0, 0
            info["final"] = rec
            info["final_window_nuc_loss"] = m["window_nuc_loss"]
            info["wall_time_s"] = rec["elapsed_s"]
            info["complete"] = loop["step"] == cfg.steps
            save_model(model, out)
            atomic_write_json(out / "training.json", info)
            _save_state(out / RESUME_FILE, model, opt, sampler, mask_gen, loop, info)
            log(
                f"step {loop['step']}/{cfg.steps}: train loss {rec['train_loss']:.4f}, val loss {m['loss']:.4f}, "
                f"val acc {m['accuracy']:.4f} (unigram {base['accuracy']:.4f}), {loop['tokens']:,} tokens, "
                f"{rec['elapsed_s']:.0f} s"
            )
            if out_of_time:
                break
    if bar is not None:
        bar.close()
    return info


# ---------------------------------------------------------------------------------------------------------------
# evaluating a checkpoint on a region


def evaluate_checkpoint(
    weights: str | os.PathLike[str],
    fasta: str | os.PathLike[str],
    region: str,
    seq_len: int | None = None,
    n_windows: int | None = 256,
    ks: Sequence[int] = (1, 2, 3),
    seed: int = 12345,
    threads: int = 1,
    exclude: Sequence[str] = (),
    batch_size: int = 16,
    against: Sequence[str | os.PathLike[str]] = (),
) -> dict[str, Any]:
    """Masked-token accuracy and MLM loss of a checkpoint on ``region`` vs unigram and k-mer baselines, and vs the
    checkpoints ``against`` (paired over the same windows and masked positions, see :func:`paired_comparison`).

    Baselines are counted on every base of the FASTA outside ``region`` and the ``exclude`` regions.
    ``seq_len`` defaults to the checkpoint's ``seq_len`` (config.json), else 1024; the ``against`` models are scored
    on the same windows whatever their own ``seq_len``.
    """

    with limited_threads(threads):
        return _evaluate_checkpoint(
            weights, fasta, region, seq_len, n_windows, ks, seed, exclude, batch_size, against
        )


def _evaluate_checkpoint(
    weights: str | os.PathLike[str],
    fasta: str | os.PathLike[str],
    region: str,
    seq_len: int | None,
    n_windows: int | None,
    ks: Sequence[int],
    seed: int,
    exclude: Sequence[str],
    batch_size: int,
    against: Sequence[str | os.PathLike[str]] = (),
) -> dict[str, Any]:
    from caduceus_plugin.models.caduceus.checkpoint import from_pretrained

    model = from_pretrained(weights)
    others = {str(w): from_pretrained(w) for w in against}
    if seq_len is None:
        seq_len = int(model.config.extra.get("seq_len", 1024))
    genome = load_fasta(fasta)
    reg = parse_region(region)
    split = split_genome(genome, reg, seq_len)
    held = [reg] + [parse_region(r) for r in exclude]
    train = []
    for c, s, e in split.train_segments:
        pieces = [(s, e)]
        for h in held[1:]:
            if h.chrom == c:
                pieces = [(a, b) for a0, b0 in pieces for a, b in ((a0, min(b0, h.start)), (max(a0, h.end), b0))]
        train += [genome[c][a:b] for a, b in pieces if b > a]
    windows = tile_windows(split.val_ids(), seq_len, n_windows)
    if len(windows) == 0:
        raise InputError(f"region {reg} has no {seq_len}-bp window that is mostly A/C/G/T")
    kmers = [KmerModel(k).fit(train) for k in ks]
    res = evaluate_windows(
        model, windows, unigram_counts(train), kmers, seed=seed, batch_size=batch_size, against=others
    )
    res.update(
        weights=str(weights),
        fasta=str(fasta),
        region=str(reg),
        seq_len=seq_len,
        baseline_training_bases=int(sum(len(t) for t in train)),
    )
    return res
