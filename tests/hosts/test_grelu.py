"""Caduceus (and any registered backbone) as gReLU models, exercised through gReLU's own API."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("grelu")

import grelu.model.models as grelu_models
from grelu.data.dataset import BigWigSeqDataset, LabeledSeqDataset, SeqDataset
from grelu.lightning import LightningModel

import caduceus_plugin  # noqa: F401  (installs the gReLU import hook)
from caduceus_plugin.errors import CaduceusError
from caduceus_plugin.hosts.grelu.models import ComponentModel, class_name
from tests.conftest import CADUCEUS_FIXTURES

pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning"),  # Lightning's advice about workers, logging, etc.
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]

SEQ_LEN = 64


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # Lightning's default loggers write lightning_logs/ into the working directory
TINY = {"d_model": 16, "n_layer": 2}


def _seqs(n: int, seed: int, length: int = SEQ_LEN) -> list[str]:
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list("ACGT"), length)) for _ in range(n)]


def _labelled(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """Label 1 when a 'GATA' motif is present: learnable, not random."""
    seqs = _seqs(n, seed)
    for i in range(0, n, 2):
        seqs[i] = seqs[i][:30] + "GATAGATA" + seqs[i][38:]
    labels = np.array([[["GATA" in s]] for s in seqs], dtype=np.float32)
    return seqs, labels


def _train_params(tmp_path: Path, **extra) -> dict:
    params = {"task": "binary", "loss": "bce", "lr": 3e-3, "batch_size": 8, "max_epochs": 1, "num_workers": 0,
              "devices": "cpu", "logger": None, "save_dir": str(tmp_path), "checkpoint": True}
    params.update(extra)
    return params


def _onehot(seqs: list[str]) -> torch.Tensor:
    idx = torch.tensor([["ACGT".index(c) for c in s] for s in seqs])
    return torch.nn.functional.one_hot(idx, 4).float().transpose(1, 2)


def test_names_resolve_on_grelu_models() -> None:
    assert grelu_models.caduceus_ps is grelu_models.CaduceusPSModel
    assert grelu_models.caduceus_ph is grelu_models.CaduceusPhModel
    assert issubclass(grelu_models.caduceus_ps, grelu_models.BaseModel)
    assert class_name("caduceus_ps") == "CaduceusPSModel" and class_name("toy_cnn") == "ToyCNNModel"
    assert not issubclass(grelu_models.EnformerModel, ComponentModel)  # gReLU's own classes are left alone
    assert not hasattr(grelu_models, "definitely_not_a_model")


@pytest.mark.parametrize("name", ["caduceus_ps", "caduceus_ph"])
def test_train_save_reload_in_fresh_process_predicts_identically(name: str, tmp_path: Path) -> None:
    seqs, labels = _labelled(32, seed=1)
    train = LabeledSeqDataset(seqs, labels, tasks=["gata"])
    val = LabeledSeqDataset(*_labelled(16, seed=2), tasks=["gata"])
    model = LightningModel(
        model_params={"model_type": name, "n_tasks": 1, **TINY}, train_params=_train_params(tmp_path)
    )
    before = {k: v.clone() for k, v in model.model.state_dict().items()}
    trainer = model.train_on_dataset(train, val)
    assert any(not torch.equal(before[k], v) for k, v in model.model.state_dict().items())  # it trained
    metrics = model.test_on_dataset(val, batch_size=8, num_workers=0)
    assert {"test_accuracy", "test_auroc"} <= set(metrics.columns)
    ckpt = tmp_path / "model.ckpt"
    trainer.save_checkpoint(ckpt)
    query = _seqs(4, seed=3)
    model.eval()
    expected = model.predict_on_seqs(query)
    np.save(tmp_path / "expected.npy", expected)
    script = f"""
import numpy as np, caduceus_plugin
from grelu.lightning import LightningModel
m = LightningModel.load_from_checkpoint({str(ckpt)!r}, weights_only=False).eval()
assert m.model_params["model_type"] == {name!r}
np.save({str(tmp_path / "got.npy")!r}, m.predict_on_seqs({query!r}))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    np.testing.assert_array_equal(np.load(tmp_path / "got.npy"), expected)


def test_predict_on_dataset_with_rc_augmentation_ps_is_invariant(tmp_path: Path) -> None:
    model = LightningModel(model_params={"model_type": "caduceus_ps", "n_tasks": 2, **TINY},
                           train_params=_train_params(tmp_path)).eval()
    seqs = _seqs(6, seed=4)
    plain = model.predict_on_dataset(SeqDataset(seqs), batch_size=6, num_workers=0)
    augmented = model.predict_on_dataset(SeqDataset(seqs, rc=True), batch_size=6, num_workers=0)
    assert plain.shape == (6, 2, 1)
    np.testing.assert_allclose(augmented, plain, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["caduceus_ps", "caduceus_ph"])
def test_pooled_head_is_rc_invariant(name: str) -> None:
    model = grelu_models.__getattr__(class_name(name))(n_tasks=3, **TINY).eval()
    x = _onehot(_seqs(3, seed=5))
    x[:, :, :5] = 0  # N / padding positions are excluded from the mean
    with torch.no_grad():
        torch.testing.assert_close(model(x.flip(1, 2)), model(x), rtol=1e-5, atol=1e-6)


def test_track_head_is_rc_equivariant_and_follows_grelu_lengths() -> None:
    model = grelu_models.caduceus_ps(n_tasks=2, head="track", bin_size=8, crop_len=1, **TINY).eval()
    x = _onehot(_seqs(2, seed=6))
    with torch.no_grad():
        y = model(x)
        assert y.shape == (2, 2, SEQ_LEN // 8 - 2)
        torch.testing.assert_close(model(x.flip(1, 2)), y.flip(-1), rtol=1e-5, atol=1e-6)


def _genome(tmp_path: Path, length: int = 4000, seed: int = 7) -> Path:
    fasta = tmp_path / "genome.fa"
    seq = _seqs(1, seed, length)[0]
    fasta.write_text(">chr1\n" + "\n".join(seq[i : i + 60] for i in range(0, length, 60)) + "\n")
    (tmp_path / "genome.fa.sizes").write_text(f"chr1\t{length}\n")
    return fasta


def test_bigwig_dataset_trains_track_head(tmp_path: Path) -> None:
    import pandas as pd
    import pyBigWig

    fasta = _genome(tmp_path)
    bw_path = tmp_path / "signal.bw"
    bw = pyBigWig.open(str(bw_path), "w")
    bw.addHeader([("chr1", 4000)])
    values = (np.sin(np.arange(4000) / 50.0) + 1.5).astype(float)
    bw.addEntries("chr1", 0, values=values.tolist(), span=1, step=1)
    bw.close()
    starts = np.arange(100, 3500, 97)
    intervals = pd.DataFrame({"chrom": "chr1", "start": starts, "end": starts + SEQ_LEN, "strand": "+"})
    kw = {"seq_len": SEQ_LEN, "label_len": SEQ_LEN - 16, "bin_size": 8, "label_aggfunc": "mean", "genome": str(fasta)}
    train = BigWigSeqDataset(intervals.iloc[:24], [str(bw_path)], **kw)
    val = BigWigSeqDataset(intervals.iloc[24:].reset_index(drop=True), [str(bw_path)], **kw)
    model = LightningModel(
        model_params={"model_type": "CaduceusPSModel", "n_tasks": 1, "head": "track", "bin_size": 8, "crop_len": 1,
                      **TINY},
        train_params=_train_params(tmp_path, task="regression", loss="mse"),
    )
    model.train_on_dataset(train, val)
    preds = model.predict_on_dataset(val, batch_size=8, num_workers=0)
    assert preds.shape == (len(val), 1, 6) and np.isfinite(preds).all()
    assert model.data_params["train"]["bin_size"] == 8


@pytest.mark.parametrize("freeze", [True, False])
def test_tune_on_dataset_with_pretrained_backbone(freeze: bool, tmp_path: Path) -> None:
    pretrained = str(CADUCEUS_FIXTURES / "ps_d32_l2_fused")
    model = LightningModel(
        model_params={"model_type": "caduceus_ps", "n_tasks": 1, "pretrained": pretrained},
        train_params=_train_params(tmp_path),
    )
    from caduceus_plugin.models.caduceus.checkpoint import from_pretrained

    reference = from_pretrained(pretrained).caduceus.state_dict()
    loaded = model.model.embedding.caduceus.state_dict()
    assert all(torch.equal(loaded[k], reference[k]) for k in reference)
    seqs, labels = _labelled(24, seed=8)
    two = np.concatenate([labels, 1 - labels], axis=1)
    model.tune_on_dataset(LabeledSeqDataset(seqs, two, tasks=["a", "b"]),
                          LabeledSeqDataset(seqs[:8], two[:8], tasks=["a", "b"]),
                          final_pool_func="avg", freeze_embedding=freeze)
    assert model.model.head.n_tasks == 2
    after = model.model.embedding.caduceus.state_dict()
    unchanged = all(torch.equal(after[k], reference[k]) for k in reference)
    assert unchanged is freeze
    # the tuned model (gReLU ConvHead, final_pool_func in model_params) reloads
    path = tmp_path / "tuned.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                "data_params": model.data_params, "performance": {}, "pytorch-lightning_version": "2.0.0"}, path)
    again = LightningModel.load_from_checkpoint(path, weights_only=False).eval()
    model.eval()
    x = _onehot(seqs[:3])
    torch.testing.assert_close(again(x), model(x))


def test_predict_variant_effects_and_saliency(tmp_path: Path) -> None:
    import pandas as pd
    from grelu.interpret.score import get_attributions
    from grelu.variant import predict_variant_effects

    fasta = _genome(tmp_path)
    model = LightningModel(model_params={"model_type": "caduceus_ps", "n_tasks": 1, **TINY},
                           train_params=_train_params(tmp_path)).eval()
    seq = fasta.read_text().split("\n", 1)[1].replace("\n", "")
    positions = [500, 1200, 2500]  # 1-based
    alts = [next(b for b in "ACGT" if b != seq[p - 1]) for p in positions]
    variants = pd.DataFrame({"chrom": "chr1", "pos": positions, "ref": [seq[p - 1] for p in positions], "alt": alts})
    effects = predict_variant_effects(variants, model, seq_len=SEQ_LEN, genome=str(fasta), num_workers=0,
                                      batch_size=4, compare_func="subtract", return_ad=False, rc=True)
    assert effects.shape == (3, 1, 1) and np.isfinite(effects).all() and np.abs(effects).max() > 0
    attrs = get_attributions(model, _seqs(2, seed=9), method="saliency")
    assert attrs.shape == (2, 4, SEQ_LEN) and np.isfinite(attrs).all() and np.abs(attrs).sum() > 0


def test_bad_names_and_hyperparameters_are_clear(tmp_path: Path) -> None:
    with pytest.raises(CaduceusError, match="did you mean 'caduceus_ps'"):
        LightningModel(model_params={"model_type": "caduceus_pz", "n_tasks": 1}, train_params=_train_params(tmp_path))
    with pytest.raises(CaduceusError, match="d_modle"):
        LightningModel(model_params={"model_type": "caduceus_ps", "n_tasks": 1, "d_modle": 8},
                       train_params=_train_params(tmp_path))
    with pytest.raises(CaduceusError, match="n_tasks must be a positive integer"):
        grelu_models.caduceus_ps(n_tasks=0, **TINY)
    with pytest.raises(CaduceusError, match="unknown head 'nope'"):
        grelu_models.caduceus_ph(n_tasks=1, head="nope", **TINY)
    with pytest.raises(CaduceusError, match="does not take crop_len"):
        grelu_models.caduceus_ps(n_tasks=1, head="pooled", crop_len=2, **TINY)
    json.dumps({"model_type": "caduceus_ps", "n_tasks": 2, "head": "track", "bin_size": 8, "crop_len": 1, **TINY})


def test_third_party_backbone_trains_in_grelu_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fake distribution (dist-info + entry point on sys.path, nothing installed) is a gReLU model_type."""
    from caduceus_plugin.registry.components import reset_registry
    from tests.registry.test_plugins import TOY, _fake_distribution

    _fake_distribution(tmp_path / "site", "fakegrelu", "fake_grelu_toy", TOY)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delenv("CADUCEUS_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    reset_registry()
    try:
        assert grelu_models.ToyCNNModel is grelu_models.toy_cnn
        seqs, labels = _labelled(16, seed=10)
        model = LightningModel(model_params={"model_type": "toy_cnn", "n_tasks": 1, "channels": 4},
                               train_params=_train_params(tmp_path))
        before = [p.detach().clone() for p in model.model.embedding.parameters()]
        model.train_on_dataset(LabeledSeqDataset(seqs, labels, tasks=["gata"]),
                               LabeledSeqDataset(seqs[:8], labels[:8], tasks=["gata"]))
        assert any(not torch.equal(b, a) for b, a in zip(before, model.model.embedding.parameters()))
    finally:
        sys.modules.pop("fake_grelu_toy", None)
        reset_registry()
