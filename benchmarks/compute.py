"""Throughput and peak memory of the registered backbones against length and batch, with baselines in the same run.

    .venv/bin/python benchmarks/compute.py                      # default grid, 3 rounds: well over an hour on 2 cores
    .venv/bin/python benchmarks/compute.py --quick              # 1k/4k/16k only, 3 rounds: about a quarter of an hour
    .venv/bin/python benchmarks/compute.py --lengths 131072 --models caduceus_ps --backends auto ref
    .venv/bin/python benchmarks/compute.py --models caduceus_ps hyenadna --backends auto auto+bf16 ref --repeats 5
    .venv/bin/python benchmarks/compute.py --quick --out /tmp/compute   # anywhere but the committed results
    # fine-tune regime: Caduceus 0.47M vs HyenaDNA tiny, training (and inference) at batch 32 x 1024
    .venv/bin/python benchmarks/compute.py --size small --models caduceus_ps hyenadna --lengths 1024 --batches 32 \
        --batch-len 1024 --backends auto --train-len 1024

**Protocol.** Every run of a cell (model, backend, length, batch, mode) is a fresh subprocess, so its peak resident
memory (``ru_maxrss``) is its own. The cells alternate: with ``--repeats R`` (default 3, at least 3) the script runs
round 1 of every cell (A B C ...), then round 2 of every cell, and so on (A B C A B C ...), never all the repeats
of one cell in a row, so a slow spell of a shared machine falls on every cell alike. A cell whose run fails (error,
timeout) is not run again in later rounds. Each cell reports the median tokens/s with the min and max over its
runs, ``spread = (max - min) / median``, and the median peak memory. A ratio between two cells (against the ``ref``
scan, against HyenaDNA in the same run) is printed only when both cells have at least 3 runs and a spread of at most
25 %; otherwise the table says ``noisy: rerun``. The load average (1, 5, 15 min) is printed before and after the
whole run; its 1-minute value is recorded in every CSV row (``load_before``, ``load_after``).

``--size`` picks the pair of model sizes (:data:`SIZES`). ``default``: Caduceus models are the 7.7M-parameter
configuration of the released 131k checkpoints (d_model 256, 16 layers) and ``hyenadna`` is HyenaDNA medium (6.6M).
``small`` (the fine-tune regime): Caduceus is the 0.47M configuration of the released 1k checkpoints (d_model 118,
4 layers; ``rcps`` as the model says: on for ``caduceus_ps``, off for ``caduceus_ph``) and ``hyenadna`` is HyenaDNA
tiny (0.44M; d_model 128, 2 layers). Any other registered backbone (``enformer``, ``cnn``, third-party ones) runs in
its default configuration on one-hot input, whatever the size. Random weights, float32. ``infer`` runs time one
forward of the backbone under ``torch.inference_mode`` after a short warm-up in the same process (numba compiles,
allocator settles); ``train`` runs (Caduceus and HyenaDNA) time one forward + backward of the loss (Caduceus: the
MLM loss; HyenaDNA: a mean square of its hidden states). Cells: inference at batch 1 for each of ``--lengths``;
inference at each batch of ``--batches`` other than 1 at ``--batch-len``; training at each batch of ``--batches``
(1 included) at ``--train-len``, so ``--batches 32 --train-len 1024`` gives training cells of 32 x 1024. Baselines
measured in the same run: the ``ref`` scan backend (run only up to ``--ref-max-len``; beyond that it takes minutes
per sequence) and HyenaDNA when it is among ``--models``. For reference only, the table also prints ratios against
the figures the speed issue quotes for the authors' code, marked ``quoted`` (HyenaDNA medium, and Caduceus-PS 7.7M
on mamba-ssm's reference scan; ``--size default`` only); those are not measured here and are not in the CSV. A
backend written ``NAME+bf16`` (e.g. ``auto+bf16``) runs the Caduceus projections in bf16 (inference cells only;
scan, conv, norms and residuals stay float32); ``NAME+avx256`` runs the numba kernels as LLVM's tuning compiles them
(``CADUCEUS_NUMBA_AVX512=0``: 256-bit vectors on Intel AVX-512 cores) instead of in 512-bit vectors; the two
combine (``auto+bf16+avx256``).

Writes ``compute.csv`` and ``compute.png`` (log-log throughput, min-max bars, and memory against length) under
``--out`` (default ``benchmarks/results``) and prints the table. CSV columns: ``model, size`` (``--size``),
``params`` (parameters of the network timed, each shared tensor once), ``backend, mode, length, batch, repeats``
(runs that succeeded), ``tokens_per_s`` (the median, as ``caduceus bench`` reads it),
``tokens_per_s_median, tokens_per_s_min, tokens_per_s_max, spread, tokens_per_s_all`` (every run, in round order,
``;``-separated), ``seconds`` (median), ``peak_rss_gb`` (median) and ``peak_rss_gb_all``, ``vs_ref`` and
``vs_hyenadna`` (ratio of medians, or ``noisy: rerun``), ``load_before, load_after``, ``error`` (every run failed)
and ``note`` (some runs failed or were skipped). These machines are shared: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

RESULTS = Path(__file__).resolve().parent / "results"
#: HyenaDNA medium 6.6M, authors' standalone code, on a 2-core machine like ours (speed issue's table): tokens/s.
HYENADNA_QUOTED = {4096: 7148, 32768: 4966, 131072: 3331}
#: Authors' Caduceus-PS 7.7M on mamba-ssm's reference scan, same machine class (speed issue's table): tokens/s
#: (131k: the issue's estimate of ~20 min per sequence).
AUTHORS_REF_QUOTED = {1024: 110, 4096: 100, 131072: round(131072 / 1200)}
CELL_TIMEOUT_S = 1800
#: Fewest runs per cell: a median, a min and a max that are not all the same run.
MIN_REPEATS = 3
#: Largest spread, (max - min) / median of tokens/s, at which a cell's median is compared with another's.
MAX_SPREAD = 0.25
NOISY = "noisy: rerun"
#: ``--size``: the checkpoint tag whose sizes Caduceus (``caduceus_*``) and HyenaDNA are built with, and a label.
SIZES = {
    "default": {"caduceus": "131k_d256_l16", "hyenadna": "medium_160k",
                "label": "Caduceus 7.7M (d_model 256, 16 layers), HyenaDNA medium 6.6M"},
    "small": {"caduceus": "1k_d118_l4", "hyenadna": "tiny_1k",
              "label": "Caduceus 0.47M (d_model 118, 4 layers), HyenaDNA tiny 0.44M (d_model 128, 2 layers)"},
}
FIELDS = [
    "model", "size", "params", "backend", "mode", "length", "batch", "repeats", "tokens_per_s", "tokens_per_s_median",
    "tokens_per_s_min", "tokens_per_s_max", "spread", "tokens_per_s_all", "seconds", "peak_rss_gb", "peak_rss_gb_all",
    "vs_ref", "vs_hyenadna", "load_before", "load_after", "cpu", "error", "note",
]

T = TypeVar("T")


# --------------------------------------------------------------------------------------------------------------------
# the protocol: pure functions (unit-tested in tests/test_benchmarks.py)


def interleaved_schedule(cells: Sequence[T], repeats: int) -> list[tuple[int, T]]:
    """``(round, cell)`` in run order: round 1 of every cell, then round 2 of every cell, ... (A B C A B C ...)."""
    return [(r, cell) for r in range(1, repeats + 1) for cell in cells]


def summarize(values: Sequence[float]) -> dict[str, float | None]:
    """``median``, ``min``, ``max`` and ``spread = (max - min) / median`` of ``values`` (all ``None`` when empty)."""
    if not values:
        return {"median": None, "min": None, "max": None, "spread": None}
    med, lo, hi = statistics.median(values), min(values), max(values)
    return {"median": med, "min": lo, "max": hi, "spread": (hi - lo) / med if med else None}


def is_noisy(row: dict, max_spread: float = MAX_SPREAD) -> bool:
    """True when ``row``'s median cannot be compared: an error, fewer than ``MIN_REPEATS`` runs, or a spread
    above ``max_spread`` (or none)."""
    spread = row.get("spread")
    return (bool(row.get("error")) or (row.get("repeats") or 0) < MIN_REPEATS or spread is None or spread == ""
            or spread > max_spread)


def ratio(row: dict, base: dict | float, max_spread: float = MAX_SPREAD) -> float | None:
    """Median tokens/s of ``row`` over ``base``'s (a row, or a quoted figure: a number, taken as exact); ``None``
    when either row is noisy (:func:`is_noisy`)."""
    if is_noisy(row, max_spread):
        return None
    if isinstance(base, dict):
        if is_noisy(base, max_spread):
            return None
        base = base["tokens_per_s_median"]
    return row["tokens_per_s_median"] / base


def ratio_text(row: dict, base: dict | float, label: str, digits: int = 2, max_spread: float = MAX_SPREAD) -> str:
    """``"0.71x HyenaDNA"``, or ``"noisy: rerun"`` when either side's spread is above ``max_spread``."""
    value = ratio(row, base, max_spread)
    return NOISY if value is None else f"{value:.{digits}f}x {label}"


def aggregate(cell: Sequence[Any], runs: Sequence[dict], planned: int) -> dict:
    """One CSV row of ``cell`` ``(model, backend, length, batch, mode)`` from its runs (each :func:`run_cell`'s dict,
    in round order) out of ``planned`` rounds."""
    model, backend, length, batch, mode = cell
    ok = [r for r in runs if "error" not in r]
    failed = [r for r in runs if "error" in r]
    tps = [r["tokens_per_s"] for r in ok]
    s = summarize(tps)
    row: dict[str, Any] = {"model": model, "size": next((r["size"] for r in runs if "size" in r), None),
                           "backend": ok[0]["backend"] if ok else backend, "mode": mode, "length": length,
                           "batch": batch, "repeats": len(ok)}
    if not ok:
        return row | {"error": failed[0]["error"] if failed else "not run", "spread": None}
    row |= {
        "params": ok[0].get("params"),
        "tokens_per_s": round(s["median"], 1),
        "tokens_per_s_median": round(s["median"], 1),
        "tokens_per_s_min": round(s["min"], 1),
        "tokens_per_s_max": round(s["max"], 1),
        "spread": round(s["spread"], 4) if s["spread"] is not None else None,
        "tokens_per_s_all": ";".join(f"{v:.1f}" for v in tps),
        "seconds": round(statistics.median(r["seconds"] for r in ok), 4),
        "peak_rss_gb": round(statistics.median(r["peak_rss_gb"] for r in ok), 3),
        "peak_rss_gb_all": ";".join(f"{r['peak_rss_gb']:.3f}" for r in ok),
    }
    notes = []
    if failed:
        notes.append(f"{len(failed)} of {len(runs)} runs failed: {failed[0]['error']}")
    if len(runs) < planned:
        notes.append(f"{planned - len(runs)} later rounds skipped after a failure")
    if notes:
        row["note"] = "; ".join(notes)
    return row


def repeats_arg(text: str) -> int:
    """argparse type of ``--repeats``: an integer of at least ``MIN_REPEATS``."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if n < MIN_REPEATS:
        raise argparse.ArgumentTypeError(
            f"at least {MIN_REPEATS} repeats (got {n}): a median with its min and max needs {MIN_REPEATS} runs "
            "per cell")
    return n


def cpu_description() -> str:
    """The processor as these machines differ from one session to the next: model name, the vector ISA torch's
    kernels use (AVX2 / AVX512) and whether it has bf16 matrix instructions (AVX512-BF16 or AMX), which decide the
    projections' speed (float32 and ``+bf16``)."""
    import torch

    from caduceus_plugin.ops.gemm import cpu_info

    info = cpu_info()
    bf16 = {True: "yes", False: "no", None: "unknown"}[info.bf16_matmul]
    return f"{info.name}, torch ISA {torch.backends.cpu.get_cpu_capability()}, bf16 matmul instructions: {bf16}"


def load_average() -> tuple[float, float, float] | None:
    """``os.getloadavg()`` (1, 5, 15 min), or ``None`` where the platform has none."""
    try:
        return os.getloadavg()
    except (AttributeError, OSError):
        return None


def format_load(load: tuple[float, float, float] | None) -> str:
    return "n/a" if load is None else " ".join(f"{v:.2f}" for v in load)


# --------------------------------------------------------------------------------------------------------------------
# the workloads (also used by benchmarks/gpu_check.py)


@dataclass
class Workload:
    """A network, the input of its timed call (``full``), a short warm-up input (``warm``), and the two timed
    callables: ``forward(x)`` (inference) and ``loss(x)`` (a scalar to call ``.backward()`` on)."""

    net: Any
    forward: Callable[[Any], Any]
    loss: Callable[[Any], Any]
    full: Any
    warm: Any
    path: str | None  # what runs (HyenaDNA: "fft"; other trunks: "torch"); None for Caduceus: its scan backend

    @property
    def params(self) -> int:
        """Parameters of ``net``, each shared tensor once (``parameters()`` yields a tied tensor once)."""
        return sum(p.numel() for p in self.net.parameters())


def build(model: str, length: int, batch: int, device: Any = "cpu", seed: int = 0, size: str = "default") -> Workload:
    """The workload of ``model`` at ``length`` x ``batch`` on ``device``, in the sizes of ``size`` (:data:`SIZES`):
    Caduceus with its MLM loss (15 % of positions labelled) in the 7.7M configuration of the released 131k
    checkpoints (``default``) or the 0.47M one of the 1k checkpoints (``small``; d_model 118, 4 layers); HyenaDNA
    medium (``default``; 6.6M, d_model 256, 8 layers) or tiny (``small``; 0.44M, d_model 128, 2 layers), its filters
    for the checkpoint's ``l_max`` or ``length + 2`` if longer, with a mean-square loss on its hidden states; any
    other registered backbone in its default configuration on one-hot input (whatever ``size``). Random weights
    (``seed``), float32."""
    import torch

    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}: choose one of {', '.join(SIZES)}")
    tags = SIZES[size]
    torch.manual_seed(seed)
    if model.startswith("caduceus_"):
        from caduceus_plugin import CaduceusForMaskedLM
        from caduceus_plugin.registry.specs import checkpoint_config

        net = CaduceusForMaskedLM(checkpoint_config(model, tags["caduceus"])).to(device)
        ids = torch.randint(7, 11, (batch, length)).to(device)
        labels = torch.where(torch.rand(ids.shape) < 0.15, ids.cpu(), -100).to(device)
        return Workload(net, net.caduceus, lambda x: net(x, labels=labels[:, : x.shape[1]]).loss, ids,
                        ids[:, : min(length, 512)], None)
    if model == "hyenadna":
        from caduceus_plugin.models.hyenadna import HyenaDNA
        from caduceus_plugin.registry.specs import checkpoint_config

        config = checkpoint_config("hyenadna", tags["hyenadna"])
        if length + 2 > config.l_max:  # the positional features of the filters cover the whole input
            config = checkpoint_config("hyenadna", tags["hyenadna"], l_max=length + 2)
        net = HyenaDNA(config).to(device)
        ids = torch.randint(7, 11, (batch, length)).to(device)
        return Workload(net, net, lambda x: net(x).float().pow(2).mean(), ids, ids[:, : min(length, 512)], "fft")
    from caduceus_plugin.registry.components import get_registry

    net = get_registry().build(model).to(device)
    x = torch.nn.functional.one_hot(torch.randint(0, 4, (batch, length)), 4).float().transpose(1, 2).to(device)
    return Workload(net, net, lambda v: net(v).pow(2).mean(), x, x[..., : min(length, 2048)], "torch")


def time_once(w: Workload, mode: str, warm: Any = None, sync: Callable[[], None] = lambda: None,
              before: Callable[[], None] = lambda: None) -> float:
    """Seconds of one ``w.forward(w.full)`` (``infer``, under inference_mode) or ``w.loss(w.full).backward()``
    (``train``), after an untimed warm-up call on ``warm`` (none when ``None``). ``sync`` runs just before the clock
    starts and just before it stops (``torch.cuda.synchronize`` on a GPU); ``before`` after the warm-up (e.g. to
    reset peak-memory counters)."""
    import torch

    if mode == "infer":
        w.net.eval()
        with torch.inference_mode():
            if warm is not None:
                w.forward(warm)
            before()
            sync()
            t0 = time.perf_counter()
            w.forward(w.full)
            sync()
            return time.perf_counter() - t0
    w.net.train()
    if warm is not None:
        w.loss(warm).backward()
    w.net.zero_grad(set_to_none=True)
    before()
    sync()
    t0 = time.perf_counter()
    w.loss(w.full).backward()
    sync()
    seconds = time.perf_counter() - t0
    w.net.zero_grad(set_to_none=True)
    return seconds


# --------------------------------------------------------------------------------------------------------------------
# one run of a cell, in its own process


def _cell(model: str, backend: str, length: int, batch: int, mode: str, size: str = "default") -> dict:
    backend, *mods = backend.split("+")
    if "avx256" in mods:  # before any numba kernel of this process is compiled
        os.environ["CADUCEUS_NUMBA_AVX512"] = "0"
    w = build(model, length, batch, size=size)
    if model.startswith("caduceus_"):
        from caduceus_plugin import resolve_backend, scan_backend

        w.net.backbone.matmul_dtype = "bf16" if "bf16" in mods else None
        with scan_backend(backend):
            used = "+".join([resolve_backend("cpu"), *mods])
            seconds = time_once(w, mode, w.warm)
    else:
        used = w.path or backend
        seconds = time_once(w, mode, w.warm)
    return {
        "model": model,
        "size": size,
        "params": w.params,
        "backend": used,
        "mode": mode,
        "length": length,
        "batch": batch,
        "seconds": round(seconds, 4),
        "tokens_per_s": round(batch * length / seconds, 1),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
    }


def run_cell(model: str, backend: str, length: int, batch: int, mode: str, size: str = "default") -> dict:
    """One run of a cell in a fresh subprocess, its models in the sizes of ``size``: its :func:`_cell` dict, or the
    cell with an ``error``."""
    cmd = [sys.executable, __file__, "--_cell", json.dumps([model, backend, length, batch, mode, size])]
    row = {"model": model, "size": size, "backend": backend, "mode": mode, "length": length, "batch": batch}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=CELL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return row | {"error": f"timeout > {CELL_TIMEOUT_S}s"}
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["killed"])[-1]
        return row | {"error": tail}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def plan(args: argparse.Namespace) -> list[tuple]:
    """The cells ``(model, backend, length, batch, mode)``, HyenaDNA's first (its figures are the yardstick):
    inference at batch 1 for each length, inference at each batch other than 1 of ``args.batches`` at
    ``args.batch_len``, and (Caduceus and HyenaDNA, when ``args.train_len``) training at each batch of
    ``args.batches`` at ``args.train_len``."""
    cells = []
    for model in args.models:
        caduceus = model.startswith("caduceus_")
        # no scan backend, no bf16 option: one path
        backends = args.backends if caduceus else [b for b in args.backends if "+" not in b][:1]
        for length in args.lengths:
            for backend in backends:
                if backend == "ref" and length > args.ref_max_len:
                    continue
                cells.append((model, backend, length, 1, "infer"))
        for batch in args.batches:
            if batch != 1:
                cells.append((model, args.backends[0], args.batch_len, batch, "infer"))
        if args.train_len and (caduceus or model == "hyenadna"):  # the models with a loss
            for backend in backends:
                if "bf16" in backend.split("+"):  # bf16 projections: the inference path only
                    continue
                if backend != "ref" or args.train_len <= args.ref_max_len:
                    cells += [(model, backend, args.train_len, batch, "train") for batch in args.batches]
    cells.sort(key=lambda c: c[0] != "hyenadna")
    return cells


# --------------------------------------------------------------------------------------------------------------------
# the table


def _key(r: dict) -> tuple:
    return r["mode"], r["length"], r["batch"]


def compare(rows: list[dict], cells: Sequence[tuple]) -> None:
    """Fill each row's ``vs_ref`` (the same model's ``ref`` cell) and ``vs_hyenadna`` (HyenaDNA's cell of the same
    mode, length and batch): a ratio of medians, ``noisy: rerun``, or empty when there is no such baseline."""
    refs = {(c[0], *_key(r)): r for c, r in zip(cells, rows) if c[1] == "ref"}
    hyena = {_key(r): r for r in rows if r["model"] == "hyenadna"}
    for c, r in zip(cells, rows):
        base = refs.get((r["model"], *_key(r))) if c[1] != "ref" else None
        r["vs_ref"] = _csv_ratio(r, base)
        base = hyena.get(_key(r)) if r["model"] != "hyenadna" else None
        r["vs_hyenadna"] = _csv_ratio(r, base)


def _csv_ratio(r: dict, base: dict | None) -> str:
    if base is None or r.get("error") or base.get("error"):
        return ""
    value = ratio(r, base)
    return NOISY if value is None else f"{value:.3f}"


def params_text(n: Any) -> str:
    """``"0.47M"``, ``"7.73M"``; empty when unknown."""
    return "" if n in (None, "") else f"{int(n) / 1e6:.2f}M"


def print_header() -> None:
    print(f"{'model':>12} {'size':>7} {'params':>6} {'mode':>5} {'length':>8} {'bs':>3} {'backend':>10} "
          f"{'tokens/s':>10} {'min-max':>17} {'spread':>6} {'n':>2} {'seconds':>9} {'peak GB':>7}  "
          "comparisons (medians, this run; quoted: not measured)")


def print_row(r: dict) -> None:
    head = (f"{r['model']:>12} {r.get('size') or '':>7} {params_text(r.get('params')):>6} "
            f"{r['mode']:>5} {r['length']:>8} {r['batch']:>3} {r['backend']:>10}")
    if r.get("error"):
        print(f"{head}  error: {r['error']}")
        return
    parts = []
    if r.get("vs_ref"):
        parts.append(r["vs_ref"] if r["vs_ref"] == NOISY else f"{float(r['vs_ref']):.1f}x ref")
    if r.get("vs_hyenadna"):
        parts.append(r["vs_hyenadna"] if r["vs_hyenadna"] == NOISY else f"{float(r['vs_hyenadna']):.2f}x HyenaDNA")
    # the quoted figures are of HyenaDNA medium and Caduceus-PS 7.7M: the default sizes only
    infer1 = r["mode"] == "infer" and r["batch"] == 1 and (r.get("size") or "default") == "default"
    quoted = HYENADNA_QUOTED.get(r["length"]) if infer1 and r["model"] != "hyenadna" else None
    if quoted:
        text = ratio_text(r, quoted, "HyenaDNA")
        parts.append(f"{text} (quoted {quoted})" if text != NOISY else f"HyenaDNA quoted {quoted}: {NOISY}")
    authors = AUTHORS_REF_QUOTED.get(r["length"]) if infer1 and r["model"] == "caduceus_ps" else None
    if authors:
        text = ratio_text(r, authors, "authors' ref scan", digits=0)
        parts.append(f"{text} (quoted {authors})" if text != NOISY else f"authors' ref scan quoted {authors}: {NOISY}")
    spread = f"{100 * r['spread']:.0f}%" if r.get("spread") is not None else ""
    minmax = f"{r['tokens_per_s_min']:.0f}-{r['tokens_per_s_max']:.0f}"
    print(f"{head} {r['tokens_per_s_median']:>10.0f} {minmax:>17} {spread:>6} {r['repeats']:>2} {r['seconds']:>9.2f} "
          f"{r['peak_rss_gb']:>7.2f}  {'  '.join(parts)}" + (f"  [{r['note']}]" if r.get("note") else ""), flush=True)


def write_outputs(rows: list[dict], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / ".compute.csv.tmp"
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: "" if r.get(k) is None else r.get(k, "") for k in FIELDS})
    os.replace(tmp, out_dir / "compute.csv")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib not installed: no plot)")
        return
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    ok = [r for r in rows if not r.get("error") and r["mode"] == "infer" and r["batch"] == 1]
    for key in sorted({(r["model"], r["backend"]) for r in ok}):
        mine = sorted((r for r in ok if (r["model"], r["backend"]) == key), key=lambda r: r["length"])
        xs = [r["length"] for r in mine]
        med = [r["tokens_per_s_median"] for r in mine]
        err = [[m - r["tokens_per_s_min"] for m, r in zip(med, mine)], [r["tokens_per_s_max"] - m
                                                                         for m, r in zip(med, mine)]]
        ax1.errorbar(xs, med, yerr=err, marker="o", capsize=3, label=f"{key[0]} [{key[1]}]")
        ax2.plot(xs, [r["peak_rss_gb"] for r in mine], marker="o", label=f"{key[0]} [{key[1]}]")
    sizes = sorted({r.get("size") or "default" for r in rows})
    if sizes == ["default"]:
        hx = sorted(HYENADNA_QUOTED)
        ax1.plot(hx, [HYENADNA_QUOTED[x] for x in hx], "k--", marker="x", label="HyenaDNA medium (quoted)")
    for ax, title, unit in ((ax1, "throughput (median, min-max)", "tokens/s"), (ax2, "peak resident memory", "GB")):
        ax.set(xscale="log", yscale="log", xlabel="sequence length (bp)", ylabel=unit, title=title)
        ax.grid(True, which="both", alpha=0.3)
    ax1.legend(fontsize=7)
    labels = "; ".join(SIZES[z]["label"] if z in SIZES else z for z in sizes)
    title = f"{labels}, peers: batch 1, float32 (+bf16: bf16 projections), inference, "
    cpus = sorted({r["cpu"] for r in rows if r.get("cpu")})
    fig.suptitle(title + ("; ".join(cpus) or platform.machine()), fontsize=9)
    fig.tight_layout()
    tmp_png = out_dir / ".compute.png.tmp.png"
    fig.savefig(tmp_png, dpi=110)
    os.replace(tmp_png, out_dir / "compute.png")


# --------------------------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["hyenadna", "caduceus_ps", "caduceus_ph", "enformer", "cnn"],
                        help="registered backbones")
    parser.add_argument("--backends", nargs="+", default=["auto", "auto+bf16", "ref"],
                        help="scan backends, first one the fast path; NAME+bf16: bf16 projections; "
                             "NAME+avx256: numba kernels in LLVM's default vector width")
    parser.add_argument("--lengths", type=int, nargs="+", help="default 1k 4k 16k 131k 1M (--quick: 1k 4k 16k)")
    parser.add_argument("--size", choices=sorted(SIZES), default="default",
                        help="model sizes: default = Caduceus 7.7M vs HyenaDNA medium; small (fine-tune regime) = "
                             "Caduceus 0.47M (d_model 118, 4 layers) vs HyenaDNA tiny 0.44M")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4],
                        help="batch sweep: inference cells at --batch-len (batches other than 1), training cells "
                             "at --train-len (every batch)")
    parser.add_argument("--batch-len", type=int, default=4096)
    parser.add_argument("--train-len", type=int, default=8192,
                        help="forward+backward cell length, at each of --batches (0: none)")
    parser.add_argument("--ref-max-len", type=int, default=4096)
    parser.add_argument("--repeats", type=repeats_arg, default=MIN_REPEATS,
                        help=f"rounds: runs per cell, each in a fresh process, cells alternating (>= {MIN_REPEATS})")
    parser.add_argument("--quick", action="store_true", help="lengths 1k/4k/16k, no batch sweep, train at 2k")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for compute.csv and compute.png")
    parser.add_argument("--_cell", help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args._cell:
        print(json.dumps(_cell(*json.loads(args._cell))))
        return
    if args.quick:
        args.batches, args.train_len = [1], 2048
    if args.lengths is None:
        args.lengths = [1024, 4096, 16384] if args.quick else [1024, 4096, 16384, 131072, 1048576]

    import torch

    threads = torch.get_num_threads()
    print(
        f"# {platform.machine()} {os.cpu_count()} cpus, torch {torch.__version__} ({threads} threads), "
        f"python {platform.python_version()}"
    )
    cpu = cpu_description()
    print(f"# cpu: {cpu}")
    print(f"# --size {args.size}: {SIZES[args.size]['label']}")
    cells = plan(args)
    load_before = load_average()
    print(f"# load average before (1, 5, 15 min): {format_load(load_before)}")
    if load_before and load_before[0] > 0.5 * (os.cpu_count() or 1):
        print("# the machine is busy: expect spreads, and ratios marked noisy")
    print(f"# {len(cells)} cells x {args.repeats} rounds, cells alternating, each run in a fresh process")
    runs: list[list[dict]] = [[] for _ in cells]
    failed: set[int] = set()
    for rnd, (i, cell) in interleaved_schedule(list(enumerate(cells)), args.repeats):
        if i in failed:
            continue
        r = run_cell(*cell, size=args.size)
        runs[i].append(r)
        model, backend, length, batch, mode = cell
        what = (f"error: {r['error']}" if "error" in r
                else f"{r['tokens_per_s']:.0f} tokens/s, {r['peak_rss_gb']:.2f} GB")
        print(f"  round {rnd}/{args.repeats}  {model} {mode} {length} bs {batch} {backend}: {what}", flush=True)
        if "error" in r:
            failed.add(i)
    load_after = load_average()
    print(f"# load average after (1, 5, 15 min): {format_load(load_after)}")
    rows = [aggregate(c, rs, args.repeats) for c, rs in zip(cells, runs)]
    compare(rows, cells)
    for r in rows:
        r["size"] = args.size
        r["load_before"] = round(load_before[0], 2) if load_before else None
        r["load_after"] = round(load_after[0], 2) if load_after else None
        r["cpu"] = cpu
    print()
    print_header()
    for r in rows:
        print_row(r)
    print(f"# ratios only where both cells have >= {MIN_REPEATS} runs and a spread <= {MAX_SPREAD:.0%}; "
          f"else '{NOISY}'")
    write_outputs(rows, args.out)
    print(f"wrote {args.out / 'compute.csv'} and {args.out / 'compute.png'}")


if __name__ == "__main__":
    main()
