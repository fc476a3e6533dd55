"""Where the time of one Caduceus training step (forward + backward of the MLM loss) goes.

    .venv/bin/python benchmarks/profile_train.py                          # both regimes of the training-speed issue
    .venv/bin/python benchmarks/profile_train.py --regime long --length 32768
    .venv/bin/python benchmarks/profile_train.py --regime finetune --batch 64 --length 512

Regimes: ``long`` is the 7.7M-parameter Caduceus-PS of the released 131k checkpoints (d_model 256, 16 layers) at
batch 1 x 8,192; ``finetune`` is d_model 118 x 4 layers (0.47M) at batch 32 x 1,024 (the sizes ``caduceus bench``
and gReLU users fine-tune). Random weights, float32, the default (fastest available) CPU path.

For each regime it prints the step's tokens/s without any instrumentation (median of ``--repeats`` steps), the
inference tokens/s at the same shape and their ratio (the arithmetic says a step costs ~3-4 forwards), and then
one profiled step split into parts:

* ``projections fwd`` / ``projections bwd``: matmuls (in_proj, out_proj, x_proj, dt_proj and the LM head) before
  and after ``backward()`` starts (after it: their gradients and, under layer checkpointing, the recompute);
* ``scan fwd`` / ``scan bwd`` / ``conv fwd`` / ``conv bwd``: the numba kernels, timed at their launch; forward
  kernels that run after ``backward()`` started are the recompute of checkpointed layers (``recompute``);
* ``copies and layout``: copy_, cat, flip, clone, contiguous, transposes that materialise;
* ``elementwise (norms, adds, casts, loss)``: every other aten op;
* ``autograd, Python, allocator``: the rest of the step's wall time.

Shares come from a step run under ``torch.profiler``, which slows it; read the shares, not the seconds. These
machines are shared: the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import time

REGIMES = {
    "long": dict(d_model=256, n_layer=16, batch=1, length=8192),
    "finetune": dict(d_model=118, n_layer=4, batch=32, length=1024),
}
MATMUL = ("aten::mm", "aten::addmm", "aten::bmm", "aten::addmm_", "aten::baddbmm", "mkldnn::_linear_pointwise")
COPIES = ("aten::copy_", "aten::cat", "aten::flip", "aten::clone", "aten::contiguous", "aten::_to_copy",
          "aten::index_select", "aten::index")  # fmt: skip


def build(regime: str, d_model: int, n_layer: int):  # type: ignore[no-untyped-def]
    import torch

    from caduceus_plugin import CaduceusConfig, CaduceusForMaskedLM
    from caduceus_plugin.registry.specs import checkpoint_config

    torch.manual_seed(0)
    if regime == "long" and (d_model, n_layer) == (256, 16):
        config = checkpoint_config("caduceus_ps", "131k_d256_l16")
    else:
        config = CaduceusConfig(d_model=d_model, n_layer=n_layer, rcps=True)
    return CaduceusForMaskedLM(config)


def step_times(net, ids, repeats: int) -> tuple[list[float], list[float]]:  # type: ignore[no-untyped-def]
    """Seconds per training step and per inference forward at the same shape (after one warm-up each)."""
    import torch

    def train_step() -> None:
        net.zero_grad(set_to_none=True)
        net(ids, labels=ids).loss.backward()

    train_step()
    train = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        train_step()
        train.append(time.perf_counter() - t0)
    infer = []
    with torch.inference_mode():
        net.caduceus(ids)
        for _ in range(repeats):
            t0 = time.perf_counter()
            net.caduceus(ids)
            infer.append(time.perf_counter() - t0)
    return train, infer


def profiled_step(net, ids) -> tuple[float, dict[str, float]]:  # type: ignore[no-untyped-def]
    """One step under torch.profiler with the numba kernel launches timed; returns (wall seconds, parts)."""
    from torch.profiler import ProfilerActivity, profile

    from caduceus_plugin.ops.numba import mixer

    spent: dict[str, float] = collections.defaultdict(float)
    phase = {"backward": False}
    labels = {"_scan_kernel": "scan fwd", "_scan_bwd_kernel": "scan bwd", "_conv_kernel": "conv fwd",
              "_conv_bwd_kernel": "conv bwd"}  # fmt: skip
    original = mixer.launch

    def timed_launch(kernel, *args):  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        try:
            return original(kernel, *args)
        finally:
            label = labels.get(getattr(kernel, "__name__", ""), "other kernels")
            if phase["backward"] and label in ("scan fwd", "conv fwd"):
                label += " (recompute in backward)"
            spent[label] += time.perf_counter() - t0

    mixer.launch = timed_launch
    try:
        net.zero_grad(set_to_none=True)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            t0 = time.perf_counter()
            loss = net(ids, labels=ids).loss
            t_bwd = time.perf_counter()
            phase["backward"] = True
            loss.backward()
            total = time.perf_counter() - t0
    finally:
        mixer.launch = original
    fwd_us = (t_bwd - t0) * 1e6
    start = min((e.time_range.start for e in prof.events()), default=0)
    for ev in prof.events():
        if ev.device_type.name != "CPU":
            continue
        self_s = ev.self_cpu_time_total / 1e6
        in_bwd = (ev.time_range.start - start) > fwd_us
        if ev.name in MATMUL:
            spent["projections bwd (and recompute)" if in_bwd else "projections fwd"] += self_s
        elif ev.name in COPIES:
            spent["copies and layout"] += self_s
        elif ev.name.startswith("aten::") and ev.name not in ("aten::empty", "aten::view", "aten::as_strided"):
            spent["elementwise (norms, adds, casts, loss)"] += self_s
    # the kernels run inside the custom autograd Functions, whose own self time the profiler also counts: the
    # launch timers are the kernels' share; what the profiler attributes to the Functions beyond it is glue
    accounted = sum(spent.values())
    spent["autograd, Python, allocator"] = max(0.0, total - accounted)
    return total, dict(spent)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--regime", nargs="+", default=list(REGIMES), choices=list(REGIMES))
    parser.add_argument("--length", type=int, help="override the regime's length")
    parser.add_argument("--batch", type=int, help="override the regime's batch")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import torch

    from caduceus_plugin import resolve_backend

    print(f"# load average before: {os.getloadavg()}; scan backend {resolve_backend('cpu')}, "
          f"{torch.get_num_threads()} threads")
    for regime in args.regime:
        cfg = dict(REGIMES[regime])
        cfg.update({k: v for k, v in (("length", args.length), ("batch", args.batch)) if v is not None})
        net = build(regime, cfg["d_model"], cfg["n_layer"])
        ids = torch.randint(7, 11, (cfg["batch"], cfg["length"]), generator=torch.Generator().manual_seed(0))
        tokens = ids.numel()
        train, infer = step_times(net, ids, args.repeats)
        tr, inf = statistics.median(train), statistics.median(infer)
        print(f"\n## {regime}: d_model {cfg['d_model']} x {cfg['n_layer']} layers "
              f"({net.num_parameters() / 1e6:.2f}M), batch {cfg['batch']} x {cfg['length']:,}")
        print(f"training step {tokens / tr:,.0f} tokens/s (median of {len(train)}, "
              f"min-max {tokens / max(train):,.0f}-{tokens / min(train):,.0f}); inference {tokens / inf:,.0f} "
              f"tokens/s; a step costs {tr / inf:.1f} forwards")
        total, spent = profiled_step(net, ids)
        print(f"profiled step: {total:.2f} s")
        print(f"{'part':<42} {'seconds':>8} {'share':>6}")
        for label, sec in sorted(spent.items(), key=lambda kv: -kv[1]):
            print(f"{label:<42} {sec:>8.2f} {100 * sec / total:>5.1f}%")
    print(f"\n# load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
