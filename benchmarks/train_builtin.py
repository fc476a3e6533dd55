"""Sittings of the next built-in model's training: a Caduceus-PS of 1,934,592 parameters (d_model 256 x 4 layers,
the width of the released 131k checkpoints) pre-trained on GRCh37 chr20 outside its held-out 20:1-4,000,000, for
5,000 steps x 16 windows x 1,024 bp = 81,920,000 tokens (20x the shipped model's 4.1M), in as many sittings as it
takes (on 2 cores about 1,050 tokens/s with AVX2, some 22 hours, and 2,300 with AVX-512, some 10 hours).

    .venv/bin/python benchmarks/train_builtin.py --minutes 80   # one sitting: resume, train 80 minutes, checkpoint
    .venv/bin/python benchmarks/train_builtin.py --status       # step, tokens, held-out loss, rate, time left

A sitting is ``caduceus pretrain`` with :data:`RECIPE`, ``--resume`` and ``--max-minutes``: it stops at a step
boundary with its whole state in ``OUT/resume.pt``, and the finished run has the weights an uninterrupted one would
have (tested in tests/jobs/test_pretrain.py). ``OUT`` (default ``~/.cache/caduceus-plugin/runs/grch37_chr20_ps_2m``)
is the live run directory, outside the repository.

A machine's home directory is not kept from one session to the next (a run kept only under ``~/.cache`` was lost
that way at step 730), and a run of 10-22 hours needs many sessions. So the run is carried in the repository:

    .venv/bin/python benchmarks/train_builtin.py --carry       # end of a session: OUT -> benchmarks/runs/..., commit

``--carry`` copies ``resume.pt`` (23 MB: weights, AdamW moments, every RNG), ``training.json`` and ``config.json``
into :data:`CARRY` (``benchmarks/runs/grch37_chr20_ps_2m``, tracked by git); a sitting starts by copying them back
into ``OUT`` when ``OUT`` holds no run or an older one. The tracked copy changes only through ``--carry``, so the
23 MB file enters the history once a session, not with every commit. When the run is finished and its weights
ship, the carried files are deleted. The chr20 FASTA is the one ``caduceus_plugin.data`` prepares from Debian's
vt-examples package (fetched from the package registry once, then offline).

``--status`` also prints the shipped model's last validation on the same 64 held-out windows and masks (same
region, window length, count and seed), the figure the new model has to beat before it replaces it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

#: The run's identity (``caduceus pretrain`` flags); changing any of it starts a different run.
RECIPE: dict[str, Any] = dict(rcps=True, d_model=256, n_layer=4, seq_len=1024, batch_size=16, steps=5000, lr=2e-3,
                              val_region="chr20:1-4000000", val_windows=64, val_every=50, seed=0)
DEFAULT_OUT = Path.home() / ".cache" / "caduceus-plugin" / "runs" / "grch37_chr20_ps_2m"
#: The run's copy in the repository, which survives a new machine (see the module docstring).
CARRY = Path(__file__).resolve().parent / "runs" / "grch37_chr20_ps_2m"
#: What a carried copy holds; ``model.safetensors`` is inside ``resume.pt`` and is rewritten at the next checkpoint.
CARRIED = ("resume.pt", "training.json", "config.json")


def run_step(run_dir: Path) -> int | None:
    """The step of the last checkpoint in ``run_dir`` (from its ``training.json``), or None when it holds no run."""
    path = run_dir / "training.json"
    if not (path.is_file() and (run_dir / "resume.pt").is_file()):
        return None
    hist = json.loads(path.read_text()).get("history") or []
    return int(hist[-1]["step"]) if hist else 0


def copy_run(src: Path, dst: Path) -> None:
    """Copy the :data:`CARRIED` files of a run from ``src`` to ``dst``, each atomically, ``training.json`` last (it
    is what :func:`run_step` reads, so a copy cut short never looks newer than it is)."""
    from caduceus_plugin.fileio import atomic_copy

    dst.mkdir(parents=True, exist_ok=True)
    for name in sorted(CARRIED, key=lambda n: n == "training.json"):
        if (src / name).is_file():
            atomic_copy(src / name, dst / name)


def seed_from_carry(out: Path, carry: Path = CARRY) -> str | None:
    """Before a sitting: copy the carried run into ``out`` when ``out`` has none or an older one; says what it did."""
    have, carried = run_step(out), run_step(carry)
    if carried is None or (have is not None and have >= carried):
        return None
    copy_run(carry, out)
    return f"seeded {out} from the carried run in {carry} (step {carried}; {out} had {have})"


def carry_run(out: Path, carry: Path = CARRY) -> str:
    """End of a session: copy the live run into the repository's :data:`CARRY` (refusing to go backwards)."""
    have, carried = run_step(out), run_step(carry)
    if have is None:
        return f"{out}: no run to carry"
    if carried is not None and carried > have:
        return f"{carry} holds step {carried}, newer than {out} (step {have}): nothing carried"
    copy_run(out, carry)
    return f"carried step {have} from {out} to {carry}: commit {', '.join(CARRIED)} there"


def config(out: Path, fasta: str, minutes: float | None, threads: int) -> Any:
    from caduceus_plugin.jobs.pretrain.run import PretrainConfig

    return PretrainConfig(fasta=fasta, out=str(out), threads=threads, resume=True, max_minutes=minutes, **RECIPE)


def status(out: Path, carry: Path | None = None) -> str:
    """Where the run stands, from its ``training.json``: one paragraph. Where ``out`` holds no run and ``carry``
    does, the carried copy's."""
    from caduceus_plugin.registry.pretrained import shipped_weights

    path = out / "training.json"
    if not path.is_file():
        if carry is not None and run_step(carry) is not None:
            return f"{out}: no run here; the next sitting starts from the carried copy\n" + status(carry)
        return f"{out}: not started (no training.json); start it with --minutes M"
    info = json.loads(path.read_text())
    hist = info["history"]
    last = hist[-1]
    total = RECIPE["steps"] * RECIPE["batch_size"] * RECIPE["seq_len"]
    # rate over the last validations of the run (cumulative training seconds, so across sittings too)
    first = hist[max(0, len(hist) - 5)]
    rate = (last["tokens_seen"] - first["tokens_seen"]) / max(last["elapsed_s"] - first["elapsed_s"], 1e-9)
    left_h = (total - last["tokens_seen"]) / rate / 3600 if rate > 0 else float("nan")
    best = min(hist, key=lambda h: h["val_loss"])
    lines = [f"{out}: step {last['step']:,}/{RECIPE['steps']:,}, {last['tokens_seen']:,} of {total:,} tokens "
             f"({last['tokens_seen'] / total:.1%}), {len(info.get('sittings', []))} sitting(s), "
             f"{last['elapsed_s'] / 3600:.2f} h of training",
             f"  held-out (64 windows of chr20:1-4 Mb): val loss {last['val_loss']:.4f}, accuracy "
             f"{last['val_accuracy']:.4f} (best {best['val_loss']:.4f} at step {best['step']:,})",
             f"  rate {rate:,.0f} tokens/s over the last validations: about {left_h:.1f} h left at that rate"]
    shipped = shipped_weights("grch37_chr20_ps") / "training.json"
    if shipped.is_file():
        old = json.loads(shipped.read_text())
        same = all(old["settings"][k] == info["settings"][k] for k in ("seq_len", "val_windows", "seed"))
        ref = old["history"][-1]
        lines.append(f"  shipped model on {'the same' if same else 'different'} windows: val loss "
                     f"{ref['val_loss']:.4f}, accuracy {ref['val_accuracy']:.4f}; margin now "
                     f"{ref['val_loss'] - last['val_loss']:+.4f} nats (positive: the new model is ahead)")
    if info.get("complete"):
        lines.append("  complete: evaluate it with `caduceus pretrain-eval` before it replaces the shipped model")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--minutes", type=float, help="train this long in this sitting (stops at a step boundary)")
    p.add_argument("--status", action="store_true", help="print where the run stands and exit")
    p.add_argument("--carry", action="store_true", help=f"copy the run's state into {CARRY} (to commit) and exit")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"run directory (default {DEFAULT_OUT})")
    p.add_argument("--fasta", help="GRCh37 chr20 FASTA with contig chr20 (default: the one caduceus_plugin.data "
                                   "prepares)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    if args.carry:
        print(carry_run(args.out))
        return 0
    if args.status or args.minutes is None:
        print(status(args.out, CARRY))
        return 0
    if not args.minutes > 0:
        p.error(f"--minutes must be positive, got {args.minutes}")
    from caduceus_plugin.errors import CaduceusError
    from caduceus_plugin.jobs.pretrain.run import pretrain

    try:
        if args.fasta is None:
            from caduceus_plugin.data.sources import chr20_fasta

            args.fasta = str(chr20_fasta())
        seeded = seed_from_carry(args.out)
        if seeded:
            print(seeded, flush=True)
        pretrain(config(args.out, args.fasta, args.minutes, args.threads), log=lambda s: print(s, flush=True))
    except CaduceusError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(status(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
