"""GPU check: scan-backend and full-model parity on CUDA, then Caduceus-PS 7.7M next to HyenaDNA medium.

    .venv/bin/python benchmarks/gpu_check.py --dry-run            # the plan (checks, cells, order); any machine
    .venv/bin/python benchmarks/gpu_check.py                      # everything, within --budget-s (300 s)
    .venv/bin/python benchmarks/gpu_check.py --skip-speed         # parity only (well under a minute)
    .venv/bin/python benchmarks/gpu_check.py --skip-parity --lengths 32768 --train-lengths 8192
    .venv/bin/python benchmarks/gpu_check.py --out /tmp/gpu_check.csv --repeats 5 --budget-s 600
    .venv/bin/python benchmarks/gpu_check.py --device cpu --lengths 1024 --train-lengths 512 --out /tmp/g.csv
                                                                  # rehearsal of the script on CPU (no GPU figures)

Without CUDA (and without ``--dry-run`` or ``--device cpu``) it says so in one line on stderr and exits with 2.

**Parity** (TF32 off while it runs, so float32 means float32):

* *scan*: every backend of ``caduceus_plugin.ops.scan.available_backends('cuda')`` (``ref``, ``chunked``,
  ``mamba_ssm`` when its kernels import) against the ``ref`` backend on the same device in float32, on random
  inputs of the shapes of ``caduceus_plugin/ops/scan.py`` (b 2, e 16, n 8, l 300: a length that is no multiple of
  the chunk): the output and the gradients of a fixed random projection of it w.r.t. x, delta, A, B, C, D, z and
  delta_bias, relative error ``||a - b|| / ||b||``. In float32 (tolerance 1e-4), and under bf16 autocast with
  x, delta, B, C, z in bf16 as bf16 projections hand them over (A, D, delta_bias are float32 parameters;
  tolerance 5e-2; the reference is ``ref`` in float32 on the same bf16-rounded inputs). ``ref`` on CPU is checked
  against ``ref`` on the device too.
* *model*: a small ``CaduceusForMaskedLM`` (d_model 32, 2 layers; PS and Ph) with the MLM loss, forward and
  backward on the device with each backend, against the same weights on CPU with the ``ref`` backend: loss,
  logits, the gradients of all parameters (concatenated), and the logits of the inference path
  (``torch.inference_mode``). Tolerances: float32 1e-4; bf16 autocast 5e-2 (loss, logits) and 1e-1 (gradients).

**Speed**: tokens/s and peak CUDA memory (``torch.cuda.max_memory_allocated``, reset before each timed call, so
weights + inputs + activations of that call) of Caduceus-PS 7.7M (``checkpoint_config("caduceus_ps",
"131k_d256_l16")``) and HyenaDNA medium 6.6M, built as ``benchmarks/compute.py`` builds them (random weights,
float32, batch 1): inference at ``--lengths`` (default 131,072 bp) and one training step (forward + backward of
``compute.py``'s loss: the MLM loss for Caduceus, a mean square of the hidden states for HyenaDNA) at
``--train-lengths`` (default 8,192 and 131,072 bp). The two models of one (mode, length) alternate, A B A B ...
for ``--repeats`` rounds (at least 3), in one process; each run builds its model afresh; the first run of a cell is
preceded by an untimed call at full length (kernels load, cuFFT plans, allocator grows). ``torch.cuda.synchronize``
brackets every timed call. Cheapest comparisons first; a comparison finishes its rounds before the next starts.
Each cell: median tokens/s, min-max, spread ``(max - min) / median``, median peak memory; PS/HyenaDNA is printed
only when both spreads are at most 25 % (else ``noisy: rerun``), as in compute.py.

**Budget**: ``--budget-s`` (default 300) bounds the whole script. Before each run, a cell whose previous run
would not fit in what is left is skipped with a note; a run still going when the budget ends is stopped (checked
between Python operations: a backward pass in progress finishes first) and every later run is skipped, noted.

Writes ``benchmarks/results/gpu_check.csv`` (``--out``): one row per parity quantity (``section`` parity) and one
per speed cell (``section`` speed), each with the card (``device_name``, from ``torch.cuda.get_device_name()``),
torch and CUDA versions; prints the tables. Exit status 1 when a parity check fails, else 0.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import os
import platform
import signal
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

# benchmarks/ is not a package: compute.py's workloads and the protocol's statistics, imported from its folder
sys.path.insert(0, str(Path(__file__).resolve().parent))
import compute

DEFAULT_OUT = compute.RESULTS / "gpu_check.csv"
#: b, e (d_inner), n (d_state), l of the scan check.
SCAN_SHAPE = (2, 16, 8, 300)
SCAN_ARGS = ("x", "delta", "A", "B", "C", "D", "z", "delta_bias")
#: What bf16 autocast hands the scan in bf16 (projection outputs); A, D and delta_bias are float32 parameters.
BF16_ARGS = ("x", "delta", "B", "C", "z")
SCAN_TOL = {"float32": 1e-4, "bf16": 5e-2}
#: (forward: loss, logits; gradients) of the full-model check.
MODEL_TOL = {"float32": (1e-4, 1e-4), "bf16": (5e-2, 1e-1)}
MODEL_SIZE = {"d_model": 32, "n_layer": 2}
MODEL_INPUT = (2, 160)  # batch, length (two scan chunks of 128, the second one short)
SPEED_MODELS = ("caduceus_ps", "hyenadna")
FIELDS = [
    "section", "device", "device_name", "torch", "cuda", "check", "backend", "dtype", "quantity", "rel_err", "tol",
    "result", "model", "mode", "length", "batch", "repeats", "tokens_per_s_median", "tokens_per_s_min",
    "tokens_per_s_max", "spread", "tokens_per_s_all", "seconds_median", "peak_cuda_gb", "peak_cuda_gb_all",
    "vs_hyenadna", "note",
]


class BudgetExceeded(Exception):
    """``--budget-s`` ran out."""


@contextlib.contextmanager
def alarm(seconds: float) -> Iterator[None]:
    """Raise :class:`BudgetExceeded` in the main thread after ``seconds`` (at once when none are left)."""
    if seconds <= 0:
        raise BudgetExceeded

    def handler(signum: int, frame: Any) -> None:
        raise BudgetExceeded

    previous = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def rel_err(a: Any, b: Any) -> float:
    """``||a - b|| / ||b||`` in float64 on CPU."""
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return ((a - b).norm() / b.norm().clamp(min=1e-30)).item()


def speed_groups(lengths: Sequence[int], train_lengths: Sequence[int]) -> list[list[tuple[str, str, int]]]:
    """The compared pairs ``[(caduceus_ps, mode, length), (hyenadna, mode, length)]``, cheapest first (by length,
    inference before training)."""
    keys = [("infer", n) for n in lengths] + [("train", n) for n in train_lengths]
    keys.sort(key=lambda k: (k[1], k[0] != "infer"))
    return [[(m, mode, n) for m in SPEED_MODELS] for mode, n in keys]


# --------------------------------------------------------------------------------------------------------------------
# parity


def scan_inputs(device: Any, seed: int = 0) -> tuple[dict[str, Any], Any]:
    """Random scan inputs of :data:`SCAN_SHAPE` (a stable decay: A < 0, softplus steps around 0.3) and the
    cotangent that projects the output to the scalar whose gradients are compared."""
    import torch

    b, e, n, length = SCAN_SHAPE
    g = torch.Generator().manual_seed(seed)

    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g)

    t = {"x": r(b, e, length), "delta": 0.5 * r(b, e, length) - 1.0, "A": -(0.5 + torch.rand(e, n, generator=g)),
         "B": r(b, n, length), "C": r(b, n, length), "D": r(e), "z": r(b, e, length), "delta_bias": 0.1 * r(e)}
    return {k: v.to(device) for k, v in t.items()}, r(b, e, length).to(device)


def run_scan(inputs: dict[str, Any], cot: Any, backend: str, dtype: str) -> dict[str, Any]:
    """Output and gradients of ``selective_scan(..., backend=backend)``; ``dtype`` ``bf16``: the :data:`BF16_ARGS`
    in bf16, under bf16 autocast."""
    import torch

    from caduceus_plugin.ops.scan import selective_scan

    bf16 = dtype == "bf16"
    leaves = {k: (v.to(torch.bfloat16) if bf16 and k in BF16_ARGS else v).detach().clone().requires_grad_()
              for k, v in inputs.items()}
    device_type = inputs["x"].device.type
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
        y = selective_scan(**leaves, backend=backend)
    (y.float() * cot).sum().backward()
    out = {"out": y.detach().float()}
    for k in SCAN_ARGS:
        grad = leaves[k].grad
        if grad is None:
            raise RuntimeError(f"no gradient w.r.t. {k}")
        out[f"grad_{k}"] = grad.float()
    return out


def _parity_rows(check: str, backend: str, dtype: str, got: dict | None, want: dict, tols: dict[str, float],
                 error: str = "") -> list[dict]:
    rows = []
    for q, ref in want.items():
        row = {"section": "parity", "check": check, "backend": backend, "dtype": dtype, "quantity": q,
               "tol": tols[q]}
        if got is None:
            rows.append(row | {"result": "FAIL", "note": error})
            continue
        err = rel_err(got[q], ref)
        rows.append(row | {"rel_err": f"{err:.3e}", "result": "pass" if err <= tols[q] else "FAIL"})
    return rows


def scan_parity(device: Any) -> list[dict]:
    import torch

    from caduceus_plugin.ops.scan import available_backends

    inputs, cot = scan_inputs(device)
    rows = []
    for dtype in ("float32", "bf16"):
        ref_inputs = {k: v.bfloat16().float() if dtype == "bf16" and k in BF16_ARGS else v for k, v in inputs.items()}
        want = run_scan(ref_inputs, cot, "ref", "float32")
        tols = dict.fromkeys(want, SCAN_TOL[dtype])
        cases = [(name, inputs) for name in available_backends(device)]
        if dtype == "float32":
            cases = [(n, i) for n, i in cases if n != "ref"]  # ref against itself: zero by construction
            if torch.device(device).type != "cpu":
                cases.insert(0, ("ref (cpu)", {k: v.cpu() for k, v in inputs.items()}))
        for name, case_inputs in cases:
            c = cot.to(case_inputs["x"].device)
            try:
                got = run_scan(case_inputs, c, name.split()[0], dtype)
            except Exception as err:  # a backend that breaks is a failed check, not a crashed script
                rows += _parity_rows("scan", name, dtype, None, want, tols, _one_line(err))
                continue
            rows += _parity_rows("scan", name, dtype, got, want, tols)
    return rows


def run_model(model: Any, ids: Any, labels: Any, backend: str, dtype: str) -> dict[str, Any]:
    """Loss, logits and all parameters' gradients (concatenated) of one MLM forward + backward, and the logits of
    the inference path, with scan ``backend`` (``bf16``: under bf16 autocast)."""
    import torch

    from caduceus_plugin import scan_backend

    bf16 = dtype == "bf16"
    model.eval()  # no dropout; gradients still flow
    model.zero_grad(set_to_none=True)
    with scan_backend(backend), torch.autocast(ids.device.type, dtype=torch.bfloat16, enabled=bf16):
        out = model(ids, labels=labels)
        out.loss.backward()
        with torch.inference_mode():
            infer = model(ids).logits
    params = list(model.parameters())
    if any(p.grad is None for p in params):
        raise RuntimeError("a parameter got no gradient")
    grads = torch.cat([p.grad.reshape(-1).float() for p in params])
    return {"loss": out.loss.detach().float().reshape(1), "logits": out.logits.detach().float(), "grads": grads,
            "logits_infer": infer.float()}


def model_parity(device: Any) -> list[dict]:
    import torch

    from caduceus_plugin import CaduceusConfig, CaduceusForMaskedLM
    from caduceus_plugin.ops.scan import available_backends

    rows = []
    b, length = MODEL_INPUT
    for variant, rcps in (("ps", True), ("ph", False)):
        torch.manual_seed(0)
        cpu_model = CaduceusForMaskedLM(CaduceusConfig(**MODEL_SIZE, rcps=rcps))
        ids = torch.randint(7, 11, (b, length))
        labels = torch.where(torch.rand(ids.shape) < 0.15, ids, -100)
        want = run_model(copy.deepcopy(cpu_model), ids, labels, "ref", "float32")
        want["logits_infer"] = want["logits"]  # the inference path computes the same logits
        for backend in available_backends(device):
            for dtype in ("float32", "bf16"):
                fwd, grad = MODEL_TOL[dtype]
                tols = {"loss": fwd, "logits": fwd, "grads": grad, "logits_infer": fwd}
                try:
                    got = run_model(copy.deepcopy(cpu_model).to(device), ids.to(device), labels.to(device), backend,
                                    dtype)
                except Exception as err:
                    rows += _parity_rows(f"model_{variant}", backend, dtype, None, want, tols, _one_line(err))
                    continue
                rows += _parity_rows(f"model_{variant}", backend, dtype, got, want, tols)
    return rows


@contextlib.contextmanager
def no_tf32() -> Iterator[None]:
    import torch

    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def print_parity(rows: list[dict]) -> None:
    """One line per (check, backend, dtype): the relative error of each quantity, and pass/FAIL."""
    checks = list(dict.fromkeys(r["check"] for r in rows))
    for check in checks:
        mine = [r for r in rows if r["check"] == check]
        quantities = list(dict.fromkeys(r["quantity"] for r in mine))
        names = ["d_" + q.removeprefix("grad_") if q.startswith("grad_") else q for q in quantities]
        print(f"\n{check:<9} {'backend':<10} {'dtype':<7} {'tol':>13}  " + " ".join(f"{n:>12}" for n in names)
              + "  result")
        for key in dict.fromkeys((r["backend"], r["dtype"]) for r in mine):
            group = {r["quantity"]: r for r in mine if (r["backend"], r["dtype"]) == key}
            ok = all(r["result"] == "pass" for r in group.values())
            tol = "/".join(f"{t:.0e}" for t in dict.fromkeys(float(r["tol"]) for r in group.values()))
            cells = " ".join(f"{group[q].get('rel_err') or '-':>12}" for q in quantities)
            note = next((r["note"] for r in group.values() if r.get("note")), "")
            print(f"{check:<9} {key[0]:<10} {key[1]:<7} {tol:>13}  {cells}  {'pass' if ok else 'FAIL'}"
                  + (f"  ({note})" if note else ""))


# --------------------------------------------------------------------------------------------------------------------
# speed


def speed(args: argparse.Namespace, device: Any, deadline: float) -> list[dict]:
    import gc

    import torch

    from caduceus_plugin import resolve_backend, scan_backend

    cuda = torch.device(device).type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    def reset() -> None:
        if cuda:
            torch.cuda.reset_peak_memory_stats()

    rows = []
    stopped = False  # once the budget has run out mid-run: every later run is skipped
    for group in speed_groups(args.lengths, args.train_lengths):
        runs: dict[tuple, list[dict]] = {c: [] for c in group}
        last: dict[tuple, float] = {}
        notes: dict[tuple, str] = {}
        used: dict[tuple, str] = {}
        for rnd, cell in compute.interleaved_schedule(group, args.repeats):
            model, mode, length = cell
            if cell in notes:
                continue
            if stopped:
                notes[cell] = f"skipped from round {rnd}: --budget-s {args.budget_s:g} had run out"
                continue
            left = deadline - time.monotonic()
            if left <= 0 or last.get(cell, 0) > left:
                notes[cell] = f"skipped from round {rnd}: its last run would not fit in --budget-s {args.budget_s:g}"
                continue
            t0 = time.monotonic()
            w = None
            try:
                with alarm(left), scan_backend(args.backend):
                    w = compute.build(model, length, 1, device=device)
                    used[cell] = w.path or resolve_backend(device)
                    seconds = compute.time_once(w, mode, warm=w.full if rnd == 1 else None, sync=sync, before=reset)
                    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
            except BudgetExceeded:
                stopped = True
                notes[cell] = f"stopped in round {rnd}: --budget-s {args.budget_s:g} ran out"
            except Exception as err:  # out of memory, a backend that breaks: note it, go on with the others
                notes[cell] = f"round {rnd}: {_one_line(err)}"
            else:
                runs[cell].append({"seconds": seconds, "tokens_per_s": length / seconds, "peak": peak})
                last[cell] = time.monotonic() - t0
                print(f"  round {rnd}/{args.repeats}  {model} {mode} {length}: {length / seconds:,.0f} tokens/s"
                      + (f", peak {peak:.2f} GB" if peak is not None else ""), flush=True)
            finally:
                del w
                gc.collect()
                if cuda:
                    torch.cuda.empty_cache()
        for cell in group:
            rows.append(_speed_row(cell, runs[cell], used.get(cell, ""), notes.get(cell, ""), args.repeats))
        ps, hy = rows[-2], rows[-1]
        if ps["repeats"] and hy["repeats"]:
            value = compute.ratio(ps, hy)
            ps["vs_hyenadna"] = compute.NOISY if value is None else f"{value:.3f}"
    return rows


def _speed_row(cell: tuple, runs: list[dict], backend: str, note: str, planned: int) -> dict:
    model, mode, length = cell
    s = compute.summarize([r["tokens_per_s"] for r in runs])
    peaks = [r["peak"] for r in runs if r["peak"] is not None]
    row: dict[str, Any] = {"section": "speed", "model": model, "backend": backend, "mode": mode, "length": length,
                           "batch": 1, "repeats": len(runs), "spread": s["spread"], "note": note}
    if runs:
        row |= {
            "tokens_per_s_median": round(s["median"], 1), "tokens_per_s_min": round(s["min"], 1),
            "tokens_per_s_max": round(s["max"], 1), "spread": round(s["spread"], 4),
            "tokens_per_s_all": ";".join(f"{r['tokens_per_s']:.1f}" for r in runs),
            "seconds_median": round(statistics.median(r["seconds"] for r in runs), 4),
            "peak_cuda_gb": round(statistics.median(peaks), 3) if peaks else "",
            "peak_cuda_gb_all": ";".join(f"{p:.3f}" for p in peaks),
        }
    if runs and len(runs) < planned and not note:
        row["note"] = f"{planned - len(runs)} of {planned} rounds missing"
    return row


def print_speed(rows: list[dict]) -> None:
    print(f"\n{'model':>12} {'mode':>5} {'length':>8} {'backend':>10} {'tokens/s':>10} {'min-max':>19} {'spread':>6} "
          f"{'n':>2} {'peak GB':>8}  vs HyenaDNA (medians, this run)")
    for r in rows:
        head = f"{r['model']:>12} {r['mode']:>5} {r['length']:>8} {r['backend'] or '-':>10}"
        if not r["repeats"]:
            print(f"{head}  not measured: {r['note']}")
            continue
        minmax = f"{r['tokens_per_s_min']:,.0f}-{r['tokens_per_s_max']:,.0f}"
        peak = f"{r['peak_cuda_gb']:.2f}" if r["peak_cuda_gb"] != "" else "n/a"
        vs = r.get("vs_hyenadna", "")
        vs = f"{vs}x" if vs and vs != compute.NOISY else vs
        print(f"{head} {r['tokens_per_s_median']:>10,.0f} {minmax:>19} {100 * r['spread']:>5.0f}% {r['repeats']:>2} "
              f"{peak:>8}  {vs}" + (f"  [{r['note']}]" if r["note"] else ""))


# --------------------------------------------------------------------------------------------------------------------


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true", help="print the plan and exit (no GPU needed)")
    p.add_argument("--skip-parity", action="store_true", help="no parity checks")
    p.add_argument("--skip-speed", action="store_true", help="no speed cells")
    p.add_argument("--lengths", type=int, nargs="*", default=[131072], help="inference lengths (default 131072)")
    p.add_argument("--train-lengths", type=int, nargs="*", default=[8192, 131072],
                   help="training-step lengths (default 8192 131072)")
    p.add_argument("--repeats", type=compute.repeats_arg, default=compute.MIN_REPEATS,
                   help=f"rounds per speed cell, the pair alternating (>= {compute.MIN_REPEATS})")
    p.add_argument("--budget-s", type=float, default=300.0, help="limit of the whole run in seconds (default 300)")
    p.add_argument("--backend", default="auto", help="scan backend of the Caduceus speed cells (default auto)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"CSV path (default {DEFAULT_OUT})")
    p.add_argument("--device", default="cuda", help="cuda (default; cuda:N for another card), or cpu: a rehearsal")
    return p


def print_plan(args: argparse.Namespace) -> None:
    print(f"# plan (device {args.device}, budget {args.budget_s:g} s, writes {args.out})")
    if args.skip_parity:
        print("parity: skipped (--skip-parity)")
    else:
        try:
            from caduceus_plugin.ops.scan import available_backends

            names = available_backends(args.device)
            backends = ", ".join(names)
            if "mamba_ssm" not in names and args.device.startswith("cuda"):
                backends += "; mamba_ssm too where its compiled kernels import"
        except Exception as err:  # the plan does not need the package to import
            backends = f"(unknown here: {_one_line(err)})"
        b, e, n, length = SCAN_SHAPE
        print(f"parity, scan: backends of available_backends({args.device!r}) (here: {backends}) against ref on the "
              f"device; b {b} e {e} n {n} l {length}; output and d_{', d_'.join(SCAN_ARGS)}; float32 (tol "
              f"{SCAN_TOL['float32']:g}; plus ref on cpu) and bf16 autocast (tol {SCAN_TOL['bf16']:g})")
        print(f"parity, model: CaduceusForMaskedLM d_model {MODEL_SIZE['d_model']}, {MODEL_SIZE['n_layer']} layers, "
              f"PS and Ph, ids {MODEL_INPUT[0]} x {MODEL_INPUT[1]}: loss, logits, gradients, inference logits, each "
              f"backend on the device vs ref on cpu; float32 (tol {MODEL_TOL['float32'][0]:g}) and bf16 autocast "
              f"(tol {MODEL_TOL['bf16'][0]:g} forward, {MODEL_TOL['bf16'][1]:g} gradients)")
    if args.skip_speed:
        print("speed: skipped (--skip-speed)")
        return
    print(f"speed: Caduceus-PS 7.7M vs HyenaDNA medium, batch 1, scan backend {args.backend}, {args.repeats} rounds "
          "per pair (A B A B ...), in this order:")
    for group in speed_groups(args.lengths, args.train_lengths):
        order = " ".join(f"{m}" for _, (m, _, _) in compute.interleaved_schedule(group, args.repeats))
        _, mode, length = group[0]
        print(f"  {mode:<5} {length:>8} bp: {order}")
    print(f"budget: {args.budget_s:g} s for the whole run; a cell whose last run would not fit in what is left is "
          "skipped, a run under way when it runs out is stopped, and the table says so")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.dry_run:
        print_plan(args)
        return 0
    import torch

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"gpu_check: CUDA is not available (torch {torch.__version__}, CUDA build {torch.version.cuda}): run it "
              "on a GPU machine, or pass --dry-run for the plan", file=sys.stderr)
        return 2
    start = time.monotonic()
    deadline = start + args.budget_s
    if device.type == "cuda":
        device = torch.device("cuda", torch.cuda.current_device() if device.index is None else device.index)
        torch.cuda.set_device(device)
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
    from caduceus_plugin.ops.scan import available_backends, resolve_backend

    info = {"device": str(device), "device_name": name, "torch": torch.__version__, "cuda": torch.version.cuda or ""}
    print(f"# {name} ({device}), torch {torch.__version__}, CUDA {torch.version.cuda}, python "
          f"{platform.python_version()}; scan backends {', '.join(available_backends(device))} (auto: "
          f"{resolve_backend(device)}); budget {args.budget_s:g} s; "
          f"load average {compute.format_load(compute.load_average())}")
    if device.type == "cpu":
        print("# rehearsal on CPU: these figures say nothing about a GPU")
    rows: list[dict] = []
    failed = 0
    if not args.skip_parity:
        with no_tf32():
            parity = scan_parity(device) + model_parity(device)
        print_parity(parity)
        failed = sum(r["result"] != "pass" for r in parity)
        print(f"\nparity: {len(parity) - failed} of {len(parity)} pass ({time.monotonic() - start:.0f} s)")
        rows += parity
    if not args.skip_speed:
        print(f"\nspeed (batch 1; {args.repeats} rounds per pair, alternating):")
        table = speed(args, device, deadline)
        print_speed(table)
        print(f"# PS/HyenaDNA only where both have >= {compute.MIN_REPEATS} runs and a spread <= "
              f"{compute.MAX_SPREAD:.0%}; else '{compute.NOISY}'")
        rows += table
    write_csv([info | r for r in rows], args.out)
    print(f"wrote {args.out} ({time.monotonic() - start:.0f} s)")
    return 1 if failed else 0


def write_csv(rows: list[dict], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: "" if r.get(k) is None else r.get(k, "") for k in FIELDS})
    os.replace(tmp, out)


if __name__ == "__main__":
    sys.exit(main())
