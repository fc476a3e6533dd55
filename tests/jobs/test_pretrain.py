"""MLM pre-training: masking statistics, baselines, a short training run, checkpoints, CLI errors, and the shipped
built-in model (GRCh37 chr20) against the unigram baseline on held-out real sequence."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from caduceus_plugin.cli import main
from caduceus_plugin.demo_data import REAL_REGION, paths
from caduceus_plugin.errors import InputError
from caduceus_plugin.genome import parse_region
from caduceus_plugin.jobs.pretrain.baselines import KmerModel, baseline_metrics, unigram_counts
from caduceus_plugin.jobs.pretrain.corpus import (
    IGNORE_INDEX,
    MaskedSet,
    WindowSampler,
    load_fasta,
    mask_tokens,
    next_token_labels,
    seq_to_ids,
    split_genome,
    tile_windows,
)
from caduceus_plugin.jobs.pretrain.run import (
    PretrainConfig,
    build_model,
    evaluate_windows,
    lm_logits,
    lr_at,
    pretrain,
)
from caduceus_plugin.models.caduceus.checkpoint import from_pretrained, save_pretrained
from caduceus_plugin.models.caduceus.config import CaduceusConfig
from caduceus_plugin.models.caduceus.modeling import CaduceusForMaskedLM
from caduceus_plugin.registry.pretrained import BUILTIN_WEIGHTS, builtin_weights, shipped_weights
from caduceus_plugin.sequence import A_ID, MASK_ID, PAD_ID, T_ID, reverse_complement_ids

#: The first pre-trained model (it had no predecessor to beat); the built-in model is the newest, the last below.
ORIGINAL = "grch37_chr20_ps"
#: The shipped pre-trained models and their bounds: (parameters low, high, directory bytes); only those shipped
#: are tested.
PRETRAINED = {
    "grch37_chr20_ps": (100_000, 1_000_000, 4_000_000),
    "grch37_chr20_ps_2m": (1_500_000, 2_500_000, 10_000_000),
}
SHIPPED = [name for name in PRETRAINED if (shipped_weights(name) / "config.json").is_file()]


def _fasta(path, contigs: dict[str, str]) -> str:
    with open(path, "w") as fh:
        for name, seq in contigs.items():
            fh.write(f">{name}\n")
            for i in range(0, len(seq), 70):
                fh.write(seq[i : i + 70] + "\n")
    return str(path)


def _motif_genome(n: int, seed: int = 0) -> str:
    """A 23-bp motif repeated with 3 % point mutations: predictable from context, not from base counts."""
    motif = "".join(np.random.default_rng(123).choice(list("ACGT"), 23))
    rng = np.random.default_rng(seed)
    seq = np.array(list((motif * (n // 23 + 1))[:n]))
    mut = rng.random(n) < 0.03
    seq[mut] = rng.choice(list("ACGT"), int(mut.sum()))
    return "".join(seq)


# ---------------------------------------------------------------------------------------------------------------
# masking


def test_masking_statistics_and_pad_never_selected():
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(A_ID, T_ID + 1, (64, 4096), generator=gen)
    ids[:, 100:400] = PAD_ID  # an N run
    inputs, labels = mask_tokens(ids, torch.Generator().manual_seed(1))
    eligible = ids != PAD_ID
    sel = labels != IGNORE_INDEX
    frac = sel.sum().item() / eligible.sum().item()
    assert abs(frac - 0.15) < 0.004
    assert not sel[~eligible].any(), "[PAD] (N) must never be selected"
    assert torch.equal(inputs[~eligible], ids[~eligible])
    assert torch.equal(inputs[~sel], ids[~sel]), "unselected positions are left alone"
    assert torch.equal(labels[sel], ids[sel])
    n = sel.sum().item()
    as_mask = (inputs[sel] == MASK_ID).sum().item() / n
    changed = ((inputs[sel] != MASK_ID) & (inputs[sel] != ids[sel])).sum().item() / n
    same = (inputs[sel] == ids[sel]).sum().item() / n
    assert abs(as_mask - 0.8) < 0.01
    # 10 % random nucleotide (3/4 of which differ from the original) + 10 % unchanged
    assert abs(changed - 0.075) < 0.006
    assert abs(same - 0.125) < 0.006
    replaced = inputs[sel][inputs[sel] != MASK_ID]
    assert ((replaced >= A_ID) & (replaced <= T_ID)).all(), "random replacements are nucleotides"


def test_loss_counts_only_selected_positions():
    torch.manual_seed(0)
    model = CaduceusForMaskedLM(CaduceusConfig(d_model=16, n_layer=1, rcps=True))
    ids = torch.randint(A_ID, T_ID + 1, (2, 64))
    ids[:, :10] = PAD_ID
    inputs, labels = mask_tokens(ids, torch.Generator().manual_seed(3))
    out = model(inputs, labels=labels, ignore_index=IGNORE_INDEX)
    sel = labels != IGNORE_INDEX
    manual = F.cross_entropy(out.logits[sel], labels[sel])
    assert torch.allclose(out.loss, manual)
    assert not sel[:, :10].any()


def test_masking_is_seeded():
    ids = torch.randint(A_ID, T_ID + 1, (4, 256), generator=torch.Generator().manual_seed(0))
    a = mask_tokens(ids, torch.Generator().manual_seed(5))
    b = mask_tokens(ids, torch.Generator().manual_seed(5))
    c = mask_tokens(ids, torch.Generator().manual_seed(6))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


# ---------------------------------------------------------------------------------------------------------------
# data


def test_seq_to_ids_regions_and_split():
    assert seq_to_ids("ACGTNacgtR").tolist() == [7, 8, 9, 10, 4, 7, 8, 9, 10, 4]
    assert reverse_complement_ids(seq_to_ids("AACGN")).tolist() == seq_to_ids("NCGTT").tolist()
    r = parse_region("20:1,000,001-2,000,000")
    assert (r.chrom, r.start, r.end, str(r), len(r)) == ("20", 1_000_000, 2_000_000, "20:1000001-2000000", 1_000_000)
    for bad in ("20", "20:5-1", "20:0-10", "chr1:a-b"):
        with pytest.raises(InputError):
            parse_region(bad)
    genome = {"a": seq_to_ids("A" * 1000), "b": seq_to_ids("C" * 300)}
    split = split_genome(genome, parse_region("a:401-600"), seq_len=100)
    assert split.train_segments == [("a", 0, 400), ("a", 600, 1000), ("b", 0, 300)]
    assert split.train_bases == 1100
    with pytest.raises(InputError, match="not in the FASTA"):
        split_genome(genome, parse_region("c:1-200"), 100)
    with pytest.raises(InputError, match="past the end"):
        split_genome(genome, parse_region("b:1-400"), 100)
    # training windows never touch the validation region; RC augmentation only when asked
    genome = {"a": seq_to_ids("A" * 400 + "G" * 200 + "A" * 400)}
    split = split_genome(genome, parse_region("a:401-600"), seq_len=50)
    sampler = WindowSampler(split, 50, np.random.default_rng(0))
    assert set(np.unique(sampler.batch(64))) == {A_ID}
    assert set(np.unique(sampler.batch(64, rc_augment=True))) == {A_ID, T_ID}


def test_tile_windows_skips_mostly_n():
    ids = seq_to_ids("A" * 100 + "N" * 100 + "C" * 95 + "N" * 5)
    wins = tile_windows(ids, 100, max_n_frac=0.1)
    assert wins.shape == (2, 100)
    assert set(wins[0]) == {A_ID} and PAD_ID in wins[1]


# ---------------------------------------------------------------------------------------------------------------
# baselines


def test_unigram_and_kmer_baselines_on_toy_sequences():
    periodic = seq_to_ids("ACGT" * 500)
    km = KmerModel(1).fit([periodic])
    probs = km.probs(periodic[None])[0]
    assert (probs[1:-1].argmax(-1) == (periodic[1:-1] - A_ID)).all(), "k=1 context determines an ACGT-periodic base"
    assert probs[1:-1].max(-1).min() > 0.99
    km3 = KmerModel(3).fit([seq_to_ids("ACGTTGCA" * 300)])
    wins = tile_windows(seq_to_ids("ACGTTGCA" * 64), 128)
    data = MaskedSet.build(wins, seed=0)
    counts = unigram_counts([seq_to_ids("AAAC" * 100)])
    assert counts.tolist() == [300, 100, 0, 0]
    res = baseline_metrics(data, counts, [km3])
    assert res["unigram"]["predicts"] == "A"
    target = data.labels[data.labels != IGNORE_INDEX] - A_ID
    assert res["unigram"]["accuracy"] == pytest.approx((target == 0).float().mean().item())
    p = (np.array([300, 100, 0, 0]) + 1) / 404
    assert res["unigram"]["loss"] == pytest.approx(float(-np.log(p[target.numpy()]).mean()))
    assert res["kmer_k3"]["accuracy"] > 0.97  # only window-edge contexts were never seen in training
    assert res["kmer_k3"]["loss"] < 0.15


def test_lr_schedule():
    lrs = [lr_at(s, 100, 1e-2, warmup_frac=0.1, min_lr_ratio=0.05) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-3) and lrs[9] == pytest.approx(1e-2)
    assert max(lrs) == pytest.approx(1e-2)
    assert all(a >= b for a, b in itertools.pairwise(lrs[9:]))
    assert lrs[-1] == pytest.approx(5e-4, rel=0.05)


# ---------------------------------------------------------------------------------------------------------------
# training


def _tiny_run(tmp_path, name: str, steps: int = 40, **kw) -> tuple[PretrainConfig, dict]:
    fasta = tmp_path / "toy.fa"
    if not fasta.exists():
        _fasta(fasta, {"c1": _motif_genome(12_000) + "N" * 500 + _motif_genome(3_000, 1), "c2": _motif_genome(4000, 2)})
    args = dict(
        fasta=str(fasta), out=str(tmp_path / name), d_model=32, n_layer=1, seq_len=64, batch_size=8,
        steps=steps, lr=1e-2, val_region="c2:1-4000", val_windows=16, val_every=steps // 2, seed=0,
    )  # fmt: skip
    args.update(kw)
    cfg = PretrainConfig(**args)
    return cfg, pretrain(cfg)


def test_training_reduces_loss_and_writes_checkpoint(tmp_path):
    _, info = _tiny_run(tmp_path, "ps")
    hist = info["history"]
    assert [h["step"] for h in hist] == [20, 40]
    # untrained loss is ~ln(16); the repeated motif is learnable from context
    assert info["initial"]["val_loss"] > 2.5
    assert hist[-1]["val_loss"] < 1.0 < math.log(4)
    assert hist[-1]["val_accuracy"] > info["val_unigram"]["accuracy"] + 0.2
    assert info["data"]["validation_region"] == "c2:1-4000"
    assert info["data"]["train_bases"] == 15_500
    assert info["model"]["rc_augmentation"] is False
    out = tmp_path / "ps"
    saved = json.loads((out / "training.json").read_text())
    assert saved["final"]["step"] == 40 and saved["settings"]["seq_len"] == 64
    model = from_pretrained(out)
    assert model.config.rcps and model.config.extra["seq_len"] == 64 and model.config.pad_token_id == PAD_ID
    assert not list(out.glob(".*.tmp"))


def test_training_is_deterministic_and_ph_uses_rc_augmentation(tmp_path):
    _tiny_run(tmp_path, "a", steps=6)
    _tiny_run(tmp_path, "b", steps=6)
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()
    _, info = _tiny_run(tmp_path, "ph", steps=6, rcps=False)
    assert info["model"]["variant"] == "Caduceus-Ph" and info["model"]["rc_augmentation"] is True
    assert not from_pretrained(tmp_path / "ph").config.rcps


def test_resumed_run_ends_with_the_weights_of_an_uninterrupted_run(tmp_path):
    _tiny_run(tmp_path, "whole", steps=8, val_every=2, rcps=False)  # Ph: the RC-augmentation draws must resume too
    cfg, info = _tiny_run(tmp_path, "parts", steps=8, val_every=2, rcps=False, stop_at_step=3)
    assert info["complete"] is False and info["final"]["step"] == 3
    with pytest.raises(InputError, match="--resume"):  # never trains over an existing run silently
        pretrain(dataclasses.replace(cfg, stop_at_step=None))
    _, info = _tiny_run(tmp_path, "parts", steps=8, val_every=2, rcps=False, resume=True, threads=2)
    assert info["complete"] is True and [h["step"] for h in info["history"]] == [2, 3, 4, 6, 8]
    assert [s["from_step"] for s in info["sittings"]] == [0, 3]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert (whole / "model.safetensors").read_bytes() == (parts / "model.safetensors").read_bytes()
    with pytest.raises(InputError, match=r"lr=0\.01, now 0\.02"):
        _tiny_run(tmp_path, "parts", steps=8, val_every=2, rcps=False, resume=True, lr=2e-2)
    (parts / "resume.pt").write_bytes(b"truncated")
    with pytest.raises(InputError, match="cannot read"):
        _tiny_run(tmp_path, "parts", steps=8, val_every=2, rcps=False, resume=True)


@pytest.mark.parametrize(
    ("kw", "variant", "causal"),
    [
        ({"rcps": False, "weight_tie": False}, "Caduceus-Ph (untied BiMamba)", False),
        ({"rcps": False, "bidirectional": False}, "Mamba (uni-directional)", False),
        ({"rcps": False, "bidirectional": False, "objective": "ntp"}, "Mamba (uni-directional)", True),
        ({"arch": "hyenadna", "objective": "ntp", "n_layer": 2}, "HyenaDNA", True),
    ],
)
def test_ablation_models_train_and_report_per_window_losses(tmp_path, kw, variant, causal):
    cfg, info = _tiny_run(tmp_path, "m", steps=30, **kw)
    assert info["model"]["variant"] == variant and info["model"]["rc_augmentation"] is True
    assert info["final"]["val_nuc_loss"] < info["initial"]["val_nuc_loss"]
    windows = info["final_window_nuc_loss"]
    assert len(windows) == info["data"]["val_windows"] == 16
    assert np.nanmean(windows) == pytest.approx(info["final"]["val_nuc_loss"], abs=0.05)
    if causal:  # every next base is scored, nothing is masked; the model really is causal
        assert info["data"]["val_masked_positions"] == 16 * 63
        torch.manual_seed(0)
        model = build_model(cfg).eval()
        ids = torch.randint(A_ID, T_ID + 1, (1, 40))
        alt = ids.clone()
        alt[0, 30:] = A_ID + (alt[0, 30:] - A_ID + 1) % 4
        with torch.no_grad():
            assert torch.allclose(lm_logits(model, ids)[0, :30], lm_logits(model, alt)[0, :30], atol=1e-5)
    if kw.get("arch") == "hyenadna":
        from caduceus_plugin.models.hyenadna import from_pretrained as hyena_from_pretrained

        assert hyena_from_pretrained(tmp_path / "m").config.n_layer == 2


def test_ablation_settings_that_cannot_work_are_refused(tmp_path):
    with pytest.raises(InputError, match="causal model"):
        _tiny_run(tmp_path, "x", objective="ntp", rcps=False)  # bi-directional sees the next token
    with pytest.raises(InputError, match="HyenaDNA is causal"):
        _tiny_run(tmp_path, "x", arch="hyenadna")


def test_next_token_labels_skip_pad_and_the_last_position():
    ids = torch.tensor([[A_ID, PAD_ID, T_ID, A_ID + 1]])
    assert next_token_labels(ids).tolist() == [[IGNORE_INDEX, T_ID, A_ID + 1, IGNORE_INDEX]]


def test_checkpoint_round_trip_keeps_seq_len(tmp_path):
    torch.manual_seed(0)
    model = CaduceusForMaskedLM(CaduceusConfig(d_model=16, n_layer=2, rcps=True, extra={"seq_len": 512}))
    save_pretrained(model, tmp_path)
    back = from_pretrained(tmp_path)
    ids = torch.randint(A_ID, T_ID + 1, (2, 40))
    with torch.no_grad():
        assert torch.equal(model.eval()(ids).logits, back(ids).logits)
    assert back.config.extra["seq_len"] == 512


def test_cli_pretrain_bad_input(tmp_path, capsys):
    fasta = _fasta(tmp_path / "x.fa", {"c1": _motif_genome(3000)})
    assert main(["pretrain", "--fasta", fasta, "--out", str(tmp_path / "o"), "--val-region", "c9:1-100"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "c9" in err and "\n" not in err
    assert main(["pretrain", "--fasta", str(tmp_path / "missing.fa"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(["pretrain", "--fasta", fasta, "--out", str(tmp_path / "file")]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert not (tmp_path / "o" / "model.safetensors").exists()
    # the ablation and sitting flags: impossible combinations are one line each, before any file is written
    for extra, needle in ((["--objective", "ntp"], "causal model"), (["--arch", "hyenadna"], "HyenaDNA is causal")):
        argv = ["pretrain", "--fasta", fasta, "--out", str(tmp_path / "o"), *extra]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and needle in err and "\n" not in err
    with pytest.raises(SystemExit) as stop:  # a usage error: argparse's exit, in the same one-line format
        main(["pretrain", "--fasta", fasta, "--out", str(tmp_path / "o"), "--max-minutes", "0"])
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and err.startswith("error: ") and "--max-minutes" in err and "\n" not in err
    assert not (tmp_path / "o").exists()


def test_cli_pretrain_and_eval(tmp_path, capsys):
    fasta = _fasta(tmp_path / "x.fa", {"c1": _motif_genome(6000)})
    out = tmp_path / "run"
    assert main([*argv_train_for(fasta, out), "--steps", "4"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} == {"config.json", "model.safetensors", "training.json", "resume.pt"}
    res_path = tmp_path / "eval.json"
    argv = ["pretrain-eval", "--weights", str(out), "--fasta", fasta, "--region", "c1:1-640", "--windows", "4"]
    assert main([*argv, "--k", "1", "--json", str(res_path)]) == 0
    text = capsys.readouterr().out
    assert "unigram" in text and "kmer_k1" in text and "margin vs unigram" in text
    res = json.loads(res_path.read_text())
    assert res["seq_len"] == 64 and res["n_windows"] == 4 and res["baseline_training_bases"] == 6000 - 640

    # --against: a second checkpoint on the same windows and masked positions, with paired intervals
    other = tmp_path / "run2"
    assert main([*argv_train_for(fasta, other), "--steps", "2", "--seed", "1"]) == 0
    capsys.readouterr()
    assert main([*argv, "--against", str(other), "--against", str(out), "--json", str(res_path)]) == 0
    text = capsys.readouterr().out
    assert f"against {other}" in text and "95% CI" in text
    res = json.loads(res_path.read_text())
    mine = res["model"]
    assert sum(mine["window_n"]) == res["n_masked"]
    assert sum(mine["window_correct"]) == pytest.approx(mine["accuracy"] * res["n_masked"])
    cmp = res["against"][str(other)]
    theirs = cmp["model"]
    assert theirs["window_n"] == mine["window_n"]  # the same masked positions
    loss = cmp["nuc_loss_diff"]
    assert loss["diff"] == pytest.approx(mine["nuc_loss"] - theirs["nuc_loss"])
    assert loss["ci_low"] <= loss["diff"] <= loss["ci_high"]
    assert cmp["accuracy_diff"]["diff"] == pytest.approx(mine["accuracy"] - theirs["accuracy"])
    itself = res["against"][str(out)]  # a model against itself: no difference, and the verdict says so
    assert itself["nuc_loss_diff"]["diff"] == 0.0 and itself["nuc_loss_diff"]["verdict"] == "no detectable difference"


def argv_train_for(fasta: str, out) -> list[str]:
    """A tiny pretrain command line (the one of :func:`test_cli_pretrain_and_eval`)."""
    argv = ["pretrain", "--fasta", fasta, "--out", str(out), "--d-model", "8", "--n-layer", "1", "--seq-len", "64"]
    return [*argv, "--batch-size", "4", "--val-every", "2", "--val-windows", "4", "--val-region", "c1:1-640"]


# ---------------------------------------------------------------------------------------------------------------
# the shipped built-in model


def _same_contig(a: str, b: str) -> bool:
    return a.removeprefix("chr") == b.removeprefix("chr")  # 20 and chr20: GRCh37 and hg19 naming


def test_builtin_is_the_best_shipped_model():
    assert SHIPPED == list(PRETRAINED)  # every pre-trained model ships
    assert builtin_weights().name == BUILTIN_WEIGHTS[0] == list(PRETRAINED)[-1] == "grch37_chr20_ps_2m"


@pytest.mark.parametrize("name", SHIPPED)
def test_builtin_model_files_and_card(name):
    d = shipped_weights(name)
    low, high, size = PRETRAINED[name]
    for f in ("config.json", "model.safetensors", "MODEL_CARD.md", "training.json", "evaluation.json"):
        assert (d / f).is_file(), f
    assert sum(p.stat().st_size for p in d.iterdir()) < size
    model = from_pretrained(d)
    assert model.config.rcps and low < model.num_parameters() < high
    info = json.loads((d / "training.json").read_text())
    # the demo slice is held out from training
    val = parse_region(info["data"]["validation_region"])
    demo = parse_region(REAL_REGION)
    assert _same_contig(val.chrom, demo.chrom) and val.start <= demo.start and demo.end <= val.end


@pytest.mark.parametrize("name", SHIPPED)
def test_builtin_model_beats_unigram_on_held_out_demo_slice(name):
    """The margin over the unigram baseline measured on the held-out demo slice is the one in the model card."""
    d = shipped_weights(name)
    card = (d / "MODEL_CARD.md").read_text()
    check = json.loads((d / "evaluation.json").read_text())["demo_slice_check"]
    stated = check["margin_vs_unigram"]
    stated_mask = check["margin_vs_unigram_mask_only"]
    assert f"{stated:+.4f}" in card and f"{stated_mask:+.4f}" in card, "model card and evaluation.json disagree"
    assert stated > 0.02 and stated_mask > 0.02

    model = from_pretrained(d)
    genome = load_fasta(paths()["fasta"])
    region, demo = parse_region(check["region"]), parse_region(REAL_REGION)
    assert _same_contig(region.chrom, demo.chrom) and (region.start, region.end) == (demo.start, demo.end)
    ids = genome[demo.chrom][demo.start : demo.end]  # the demo FASTA's contig name
    windows = tile_windows(ids, check["seq_len"], check["n_windows"])
    assert len(windows) == check["n_windows"]
    unigram = np.array(json.loads((d / "training.json").read_text())["data"]["unigram_counts_ACGT"], dtype=float)
    res = evaluate_windows(model, windows, unigram, seed=check["mask_seed"])
    assert res["n_masked"] == check["n_masked"]
    tol = 0.005
    assert res["margin_vs_unigram"] >= stated - tol
    assert res["margin_vs_unigram_mask_only"] >= stated_mask - tol
    assert res["model"]["accuracy"] > res["baselines"]["unigram"]["accuracy"]
    # the card's loss claim too: lower cross-entropy than base frequencies
    assert res["model"]["nuc_loss"] < res["baselines"]["unigram"]["loss"]
    assert re.search(r"20:1-4,?000,?000", card)
    if name != ORIGINAL:  # a successor states its paired margin over the model it replaced
        val = json.loads((d / "evaluation.json").read_text())["validation_region"]["against"]["previous"]
        assert val["nuc_loss_diff"]["verdict"] == "better" and f"{val['nuc_loss_diff']['diff']:+.4f}" in card
