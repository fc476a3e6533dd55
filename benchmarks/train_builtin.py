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

When the run is complete, one command turns it into a shipped model:

    .venv/bin/python benchmarks/train_builtin.py --finish      # -> caduceus_plugin/weights/grch37_chr20_ps_2m

``--finish`` writes the final weights from ``resume.pt`` in the released layout with ``config.json`` and
``training.json``, evaluates them on 512 windows of the held-out region and on the demo slice (16 windows of
chr20:1,000,001-2,000,000, the windows ``tests/jobs/test_pretrain.py`` re-measures) against the unigram and k-mer
baselines and against the model it replaces, paired on the same masked positions with 95 % intervals
(``caduceus pretrain-eval --against``), and writes ``evaluation.json`` and ``MODEL_CARD.md`` from those numbers.
Once that directory exists it is the default of demo / predict / score-variants (it is first in
``caduceus_plugin.registry.pretrained.BUILTIN_WEIGHTS``): read its card before committing it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
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
#: Where the finished model ships, and the built-in model it is measured against (and replaces as the default).
SHIP = Path(__file__).resolve().parents[1] / "caduceus_plugin" / "weights" / "grch37_chr20_ps_2m"
PREVIOUS = "grch37_chr20_ps"
#: The demo slice (``caduceus_plugin.demo_data``) in the training FASTA's naming, and the evaluation's sizes.
DEMO_REGION = "chr20:1000001-2000000"
EVAL_WINDOWS, DEMO_WINDOWS, MASK_SEED = 512, 16, 12345


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


# ---------------------------------------------------------------------------------------------------------------
# the finished run -> a shipped model


def final_weights(run_dir: Path, dest: Path, require_complete: bool = True) -> dict[str, Any]:
    """Write the run's final model (from ``resume.pt``, the state the run checkpointed last) into ``dest`` in the
    released layout, with the run's ``config.json`` and ``training.json``; returns the training record.

    Raises:
        InputError: ``run_dir`` holds no run, or (with ``require_complete``) the run has steps left.
    """
    import torch

    from caduceus_plugin.errors import InputError
    from caduceus_plugin.fileio import atomic_directory
    from caduceus_plugin.jobs.pretrain.run import PretrainConfig, build_model, save_model

    if run_step(run_dir) is None:
        raise InputError(f"{run_dir} holds no run (no training.json and resume.pt); nothing to finish")
    state = torch.load(run_dir / "resume.pt", map_location="cpu", weights_only=False)
    info = state["info"]
    last = info["history"][-1]["step"] if info.get("history") else 0
    if require_complete and not (info.get("complete") and last == info["settings"]["steps"]):
        raise InputError(
            f"{run_dir} is at step {last:,} of {info['settings']['steps']:,}: train the rest with --minutes M first"
        )
    names = {f.name for f in dataclasses.fields(PretrainConfig)}
    settings = {k: (tuple(v) if k == "betas" else v) for k, v in info["settings"].items() if k in names}
    model = build_model(PretrainConfig(fasta="", out="", **settings))
    model.load_state_dict(state["model"])

    def build(tmp: Path) -> None:
        save_model(model, tmp)
        (tmp / "training.json").write_text(json.dumps(info, indent=1) + "\n")

    atomic_directory(dest, build, replace=True)
    return info


def evaluate_finished(
    weights: Path, fasta: str, previous: Path, val_region: str, demo_region: str, windows: int = EVAL_WINDOWS,
    demo_windows: int = DEMO_WINDOWS, threads: int = 2,
) -> dict[str, Any]:
    """``evaluation.json``: the held-out region (``windows`` windows) and the demo slice (``demo_windows``, its
    baselines counted outside the held-out region), each against the baselines and, paired, against ``previous``."""
    from caduceus_plugin.jobs.pretrain.run import evaluate_checkpoint

    out: dict[str, Any] = {}
    for key, region, n, exclude in (("validation_region", val_region, windows, ()),
                                    ("demo_slice_check", demo_region, demo_windows, (val_region,))):
        t0 = time.perf_counter()
        res = evaluate_checkpoint(weights, fasta, region, n_windows=n, seed=MASK_SEED, threads=threads,
                                  exclude=exclude, against=[previous])
        res["against"] = {"previous": res["against"].pop(str(previous))}
        res.update(weights=weights.name, previous=previous.name, fasta=Path(fasta).name,
                   eval_seconds=round(time.perf_counter() - t0, 1))
        out[key] = res
    return out


def _signed(x: float) -> str:
    return f"{x:+.4f}"


def _table(res: dict[str, Any], name: str, previous: str) -> list[str]:
    rows = ["| predictor | accuracy (all selected) | cross-entropy, nats (ACGT) | accuracy ([MASK] only) | "
            "cross-entropy ([MASK] only) |", "|---|---|---|---|---|"]
    for label, m in ((f"**Caduceus-PS ({name}, this model)**", res["model"]),
                     (f"Caduceus-PS ({previous}, the previous built-in model)", res["against"]["previous"]["model"])):
        rows.append(f"| {label} | {m['accuracy']:.4f} | {m['nuc_loss']:.4f} | {m['accuracy_mask_only']:.4f} | "
                    f"{m['nuc_loss_mask_only']:.4f} |")
    for key, b in res["baselines"].items():
        label = f"unigram (always {b['predicts']})" if key == "unigram" else f"k-mer, {b['context']}"
        rows.append(f"| {label} | {b['accuracy']:.4f} | {b['loss']:.4f} | {b['accuracy_mask_only']:.4f} | "
                    f"{b['loss_mask_only']:.4f} |")
    cmp = res["against"]["previous"]
    loss, acc = cmp["nuc_loss_diff"], cmp["accuracy_diff"]
    rows += [
        "",
        f"* against the previous built-in model on the same masked positions: cross-entropy {_signed(loss['diff'])} "
        f"nats (95 % CI [{_signed(loss['ci_low'])}, {_signed(loss['ci_high'])}], {loss['verdict']}), accuracy "
        f"{_signed(acc['diff'])} (95 % CI [{_signed(acc['ci_low'])}, {_signed(acc['ci_high'])}], {acc['verdict']}); "
        f"{loss['method']}",
        f"* margin over the unigram baseline: **{_signed(res['margin_vs_unigram'])}** accuracy (all selected "
        f"positions), **{_signed(res['margin_vs_unigram_mask_only'])}** ([MASK] positions only)",
        f"* margin over the best k-mer baseline: {_signed(res['margin_vs_best_kmer'])} (all selected), "
        f"{_signed(res['margin_vs_best_kmer_mask_only'])} ([MASK] only)",
    ]
    return rows


def model_card(name: str, previous: str, info: dict[str, Any], ev: dict[str, Any]) -> str:
    """``MODEL_CARD.md`` of a finished run, every number from ``info`` (training.json) and ``ev`` (evaluation.json)."""
    st, data, hist = info["settings"], info["data"], info["history"]
    params, final = info["model"]["parameters"], info["final"]
    tokens = st["steps"] * st["batch_size"] * st["seq_len"]
    val, demo = ev["validation_region"], ev["demo_slice_check"]
    every = max(1, len(hist) // 10)
    curve = [h for i, h in enumerate(hist) if i % every == 0 or i == len(hist) - 1]
    env = info.get("environment", {})
    lines = [
        f"# {name} — a Caduceus-PS of {params / 1e6:.1f}M parameters pre-trained on human chromosome 20 (GRCh37)",
        "",
        f"The built-in model of `caduceus-plugin`: a **Caduceus-PS** (RC-equivariant, reverse-complement parameter "
        f"sharing) masked DNA language model with **{params:,} parameters** (d_model {st['d_model']}, n_layer "
        f"{st['n_layer']}, BiMamba with tied in/out projections, fused-add-norm layout with the authors' half swap), "
        f"trained from scratch on CPUs with this package's `caduceus pretrain` on real human DNA, in "
        f"{len(info.get('sittings', []))} sittings resumed from checkpoints. Window length {st['seq_len']} bp; any "
        f"length works at inference. It replaces `{previous}` (326k parameters, 4.1M tokens) as the default of "
        f"`caduceus demo`, `predict` and `score-variants`. Files: `config.json`, `model.safetensors` (the released "
        f"Hugging Face layout, float32), `training.json` (settings, data split, metric history), `evaluation.json` "
        f"(the numbers below).",
        "",
        "It is small and saw one chromosome. It is **not** a substitute for the released Caduceus checkpoints "
        "(trained on the whole of hg38 on GPUs). Use it for demos, tests and pipelines that must run offline; do "
        "not read biological conclusions into its scores.",
        "",
        "## Data, provenance and licences",
        "",
        "* **Sequence**: GRCh37 (b37) chromosome 20, 63,025,520 bp, from the Debian package **vt-examples** "
        "(`/usr/share/doc/vt/examples/ref/20.fa.gz`), fetched from the package registry and renamed to contig "
        "`chr20` by `caduceus_plugin.data.sources.chr20_fasta`. Package licence: **MIT** (Adrian Tan, Debian "
        "copyright file of `vt`); the GRCh37 assembly is in the public domain.",
        "* Tokenisation as in the authors' pre-training: A/C/G/T -> ids 7-10; every N -> `[PAD]` (id 4), never "
        "masked and never in the loss. Soft-masking is ignored (upper-cased).",
        "* The weights are released under the package's licence (Apache-2.0).",
        "",
        "## Split",
        "",
        f"* **Validation (held out): {data['validation_region']}** (1-based, inclusive). No training window overlaps "
        "it. It contains the demo slice (`caduceus_plugin/demo_data`, 20:1,000,001-2,000,000) and the 1000 Genomes "
        "variants of the demo VCF, so the demo inputs are unseen sequence for this model.",
        f"* **Training: {', '.join(data['train_segments'])}** ({data['train_bases']:,} bp, "
        f"{data['train_acgt_bases']:,} A/C/G/T); windows of {st['seq_len']} bp drawn uniformly at random (seeded), "
        f"skipping windows with more than {st['max_n_frac']:.0%} N.",
        "",
        "## Training",
        "",
        f"* Masked LM as in the paper: {st['mask_prob']:.0%} of A/C/G/T positions selected; 80 % -> `[MASK]`, 10 % "
        "-> a random nucleotide, 10 % unchanged; cross-entropy on the selected positions. PS is RC-equivariant, so "
        "no RC augmentation.",
        f"* AdamW (betas {st['betas'][0]}, {st['betas'][1]}; weight decay {st['weight_decay']} on weight matrices "
        f"only), peak learning rate {st['lr']}, linear warm-up over {st['warmup_frac']:.0%} of the steps then cosine "
        f"decay to {st['min_lr_ratio']}x peak, gradient clipping {st['grad_clip']}; float32; seed {st['seed']}.",
        f"* **{st['steps']:,} steps x batch {st['batch_size']} x {st['seq_len']} bp = {tokens:,} tokens** "
        f"({tokens / 4_096_000:.0f}x the previous built-in model's 4,096,000).",
        f"* **{info['wall_time_s'] / 3600:.1f} h of training** on 2-CPU x86_64 machines ({env.get('threads', 2)} "
        f"thread(s), torch {env.get('torch', '?')}, Python {env.get('python', '?')}), over "
        f"{len(info.get('sittings', []))} sittings; the run's state (weights, optimizer, every RNG) was carried "
        "between machines in `benchmarks/runs/`, and a resumed run ends with the weights an uninterrupted one "
        "would have (tested).",
        f"* Untrained model on the validation windows: MLM loss {info['initial']['val_loss']:.4f}, accuracy "
        f"{info['initial']['val_accuracy']:.4f}.",
        "",
        "| step | tokens | lr | train loss | val MLM loss | val accuracy | training h |",
        "|---|---|---|---|---|---|---|",
        *[f"| {h['step']:,} | {h['tokens_seen']:,} | {h['lr']:.2e} | {h['train_loss']:.4f} | {h['val_loss']:.4f} | "
          f"{h['val_accuracy']:.4f} | {h['elapsed_s'] / 3600:.2f} |" for h in curve],
        "",
        f"(val = {st['val_windows']} fixed windows of the validation region, {data['val_masked_positions']:,} "
        f"masked positions, the previous model's windows and masks; MLM loss over the full vocabulary. Final: val "
        f"loss {final['val_loss']:.4f}, accuracy {final['val_accuracy']:.4f}.)",
        "",
        "## Evaluation (measured, not assumed)",
        "",
        "Masked-token accuracy = the argmax over A/C/G/T equals the true base; cross-entropy over A/C/G/T in nats "
        f"(ln 4 = 1.3863 is chance). All predictors are scored on the **same** masked positions (seed "
        f"{val['mask_seed']}). 'all selected' is the usual MLM metric over the selected positions (10 % of which "
        "show the true base to the model); '[MASK] only' restricts to the 80 % the model saw as `[MASK]`. "
        "Baselines are counted on the training region only (add-one smoothing): **unigram** predicts the most "
        "frequent training base; **k-mer** predicts the base from the k true bases on each side (it sees neighbours "
        "even where the model's input was masked, so it is favoured). The difference from the previous model is "
        "pooled over positions, with a 95 % bootstrap interval over windows.",
        "",
        f"### Validation region {val['region']} ({val['n_windows']} evenly spaced non-overlapping "
        f"{val['seq_len']}-bp windows, {val['n_masked']:,} selected positions)",
        "",
        *_table(val, name, previous),
        "",
        "### Demo-slice check (what `tests/jobs/test_pretrain.py` re-measures)",
        "",
        f"Region {demo['region']} (the shipped demo FASTA's 20:1000001-2000000, inside the held-out region), "
        f"{demo['n_windows']} evenly spaced {demo['seq_len']}-bp windows, mask seed {demo['mask_seed']}, "
        f"{demo['n_masked']:,} selected positions; baselines counted outside the held-out region.",
        "",
        *_table(demo, name, previous),
        "",
        "## Reproduce",
        "",
        "```",
        ".venv/bin/python benchmarks/train_builtin.py --minutes 120    # repeat until complete (resumes each time)",
        ".venv/bin/python benchmarks/train_builtin.py --finish         # weights, evaluation.json, this card",
        f"caduceus pretrain-eval --weights caduceus_plugin/weights/{name} --fasta ~/.cache/caduceus-plugin/genome/"
        f"hg19_chr20.fa --region {val['region']} --windows {val['n_windows']} --seed {val['mask_seed']} "
        f"--against caduceus_plugin/weights/{previous}",
        "```",
        "Same arguments on the same machine give the same weights (seeded data order, masking and initialisation); "
        "other CPUs or library versions may differ in the last bits.",
        "",
    ]
    return "\n".join(lines)


def finish(
    run_dir: Path, dest: Path = SHIP, fasta: str | None = None, previous: Path | None = None,
    demo_region: str = DEMO_REGION, windows: int = EVAL_WINDOWS, demo_windows: int = DEMO_WINDOWS,
    threads: int = 2, require_complete: bool = True,
) -> Path:
    """The finished run -> ``dest`` with weights, ``training.json``, ``evaluation.json`` and ``MODEL_CARD.md``."""
    from caduceus_plugin.fileio import atomic_write_json, atomic_write_text
    from caduceus_plugin.registry.pretrained import shipped_weights

    info = final_weights(run_dir, dest, require_complete)
    if fasta is None:
        from caduceus_plugin.data.sources import chr20_fasta

        fasta = str(chr20_fasta())
    previous = previous or shipped_weights(PREVIOUS)
    ev = evaluate_finished(dest, fasta, previous, info["settings"]["val_region"], demo_region, windows,
                           demo_windows, threads)
    atomic_write_json(dest / "evaluation.json", ev)
    atomic_write_text(dest / "MODEL_CARD.md", model_card(dest.name, previous.name, info, ev))
    return dest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--minutes", type=float, help="train this long in this sitting (stops at a step boundary)")
    p.add_argument("--status", action="store_true", help="print where the run stands and exit")
    p.add_argument("--carry", action="store_true", help=f"copy the run's state into {CARRY} (to commit) and exit")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"run directory (default {DEFAULT_OUT})")
    p.add_argument("--fasta", help="GRCh37 chr20 FASTA with contig chr20 (default: the one caduceus_plugin.data "
                                   "prepares)")
    p.add_argument("--finish", action="store_true",
                   help=f"the complete run -> {SHIP.relative_to(SHIP.parents[2])} (weights, evaluation, card)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    if args.carry:
        print(carry_run(args.out))
        return 0
    if args.finish:
        from caduceus_plugin.errors import CaduceusError

        try:
            print(f"wrote {finish(args.out, fasta=args.fasta, threads=args.threads)}")
        except CaduceusError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
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
