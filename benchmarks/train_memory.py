"""Peak resident memory and time of one Caduceus training step (forward + backward of the MLM loss) at one length.

    .venv/bin/python benchmarks/train_memory.py --length 131072           # the 7.7M PS model, batch 1
    .venv/bin/python benchmarks/train_memory.py --length 8192 --model caduceus_ph

One process, one untimed warm-up step at 1,024 bp (numba compiles), then one timed step at ``--length``; prints
tokens/s, the number of layers the automatic policy recomputes (``checkpointed_layers``) and the peak resident set
size (``ru_maxrss``, what the machine must hold). Random weights in the configuration of the released 131k
checkpoints, float32, default CPU path. A memory figure, not a speed comparison: speed comparisons are
``benchmarks/compute.py``'s interleaved runs.
"""

from __future__ import annotations

import argparse
import os
import resource
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--length", type=int, default=131072)
    parser.add_argument("--model", default="caduceus_ps", choices=("caduceus_ps", "caduceus_ph"))
    args = parser.parse_args()
    if args.length < 1:
        parser.error("--length must be positive")
    import torch

    from caduceus_plugin import CaduceusForMaskedLM
    from caduceus_plugin.models.caduceus.modeling import checkpointed_layers
    from caduceus_plugin.registry.specs import checkpoint_config

    torch.manual_seed(0)
    net = CaduceusForMaskedLM(checkpoint_config(args.model, "131k_d256_l16"))
    warm = torch.randint(7, 11, (1, 1024))
    net(warm, labels=warm).loss.backward()
    net.zero_grad(set_to_none=True)
    ids = torch.randint(7, 11, (1, args.length))
    labels = torch.where(torch.rand(ids.shape) < 0.15, ids, -100)
    c = net.config.d_model * (2 if net.config.rcps else 1)
    t0 = time.perf_counter()
    net(ids, labels=labels).loss.backward()
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # KiB on Linux -> GB
    print(f"{args.model} 7.7M, {args.length:,} bp, batch 1: {seconds:.0f} s, {args.length / seconds:,.0f} tokens/s, "
          f"{checkpointed_layers(1, args.length, c, net.config.n_layer)} of {net.config.n_layer} layers recomputed, "
          f"peak RSS {peak:.2f} GB; load average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
