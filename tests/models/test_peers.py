"""Peer backbones ``enformer`` (gReLU's EnformerTrunk) and ``cnn`` (gReLU's ConvTrunk): weights, parity, gReLU."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("grelu")
pytest.importorskip("enformer_pytorch")

import enformer_pytorch
import grelu.model.models as grelu_models
from grelu.data.dataset import LabeledSeqDataset
from grelu.lightning import LightningModel
from safetensors.torch import save_file

import caduceus_plugin  # noqa: F401  (installs the gReLU import hook)
from caduceus_plugin.errors import CaduceusError, CheckpointError, InputError
from caduceus_plugin.hosts.grelu.models import ComponentModel
from caduceus_plugin.models.peers import (
    FULL_ENFORMER,
    SMALL_CNN,
    SMALL_ENFORMER,
    ConvBackbone,
    EnformerBackbone,
    cnn,
    enformer,
    enformer_pytorch_key,
)
from caduceus_plugin.registry.components import get_registry
from caduceus_plugin.registry.specs import load_specs

LIGHTNING_WARNINGS = [
    pytest.mark.filterwarnings("ignore::UserWarning"),  # Lightning's advice about workers, logging, etc.
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _onehot(n: int, length: int, seed: int, n_columns: int = 0) -> torch.Tensor:
    """Random ACGT one-hot (n, 4, length); the first ``n_columns`` positions are N (all-zero columns)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.one_hot(torch.randint(0, 4, (n, length), generator=g), 4).float().transpose(1, 2)
    x[..., :n_columns] = 0
    return x.contiguous()


def _randomise(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Perturb every parameter and BatchNorm statistic (enformer-pytorch zero-initialises attention outputs and
    uses identity attention pooling at init, which would hide mapping mistakes)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return model.eval()


def _ep_model(seed: int, **hparams) -> torch.nn.Module:
    torch.manual_seed(seed)
    return _randomise(enformer_pytorch.Enformer.from_hparams(output_heads={"human": 4}, **hparams), seed)


def _save_ep(model: torch.nn.Module, path: Path, fmt: str) -> Path:
    if fmt == "bin":  # what Enformer.save_pretrained writes (its safetensors path refuses the _trunk aliases)
        model.save_pretrained(path, safe_serialization=False)
    else:  # config.json + model.safetensors with the aliases dropped
        path.mkdir(parents=True)
        model.config.to_json_file(path / "config.json")
        sd = {k: v.contiguous() for k, v in model.state_dict().items() if not k.startswith("_trunk.")}
        save_file(sd, str(path / "model.safetensors"))
    return path


# --------------------------------------------------------------------------------------------------------------
# enformer-pytorch checkpoints -> our backbone


@pytest.mark.parametrize("fmt", ["bin", "safetensors"])
def test_enformer_pytorch_checkpoint_gives_its_embeddings(tmp_path: Path, fmt: str) -> None:
    """Our output == Enformer(..., return_embeddings=True) embeddings, (B, L, C) -> (N, C, L), target 12 of 16 bins."""
    ep = _ep_model(0, dim=256, depth=2, heads=6, attn_dim_key=32, target_length=12)
    ckpt = _save_ep(ep, tmp_path / "ep", fmt)
    ours = EnformerBackbone(pretrained=str(ckpt), crop_len=2).eval()
    assert ours.config["channels"] == 256 and ours.config["n_transformers"] == 2 and ours.config["n_heads"] == 6
    assert ours.config["ff_dropout"] == 0.4 and ours.out_channels == 512
    x = _onehot(3, 16 * 128, seed=1, n_columns=100)
    with torch.no_grad():
        got = ours(x)
        _, emb = ep(x.transpose(1, 2), return_embeddings=True)
    assert got.shape == (3, 512, 12) and emb.shape == (3, 12, 512)
    err = (got - emb.transpose(1, 2)).abs().max().item()
    print(f"\nenformer-pytorch ({fmt}) -> EnformerBackbone max abs error {err:.3g} (|emb| max {emb.abs().max():.3g})")
    assert err < 1e-5
    assert emb.abs().max() > 0.1  # a non-degenerate comparison


def test_enformer_pytorch_tf_gamma_parity(tmp_path: Path) -> None:
    """use_tf_gamma (the official-rough setting) at 1536 bins: 384 channels / 2 heads = 192 features, 3 halvings."""
    ep = _ep_model(
        2, dim=384, depth=1, heads=2, attn_dim_key=16, num_downsamples=3, target_length=-1, use_tf_gamma=True
    )
    ckpt = _save_ep(ep, tmp_path / "ep", "bin")
    ours = EnformerBackbone(pretrained=str(ckpt)).eval()
    assert ours.use_tf_gamma  # read from config.json
    x = _onehot(1, 1536 * 8, seed=3)
    with torch.no_grad():
        got = ours(x)
        _, emb = ep(x.transpose(1, 2), return_embeddings=True)
        plain = EnformerBackbone(pretrained=str(ckpt), use_tf_gamma=False).eval()(x)
    err = (got - emb.transpose(1, 2)).abs().max().item()
    print(f"\nenformer-pytorch use_tf_gamma -> EnformerBackbone max abs error {err:.3g}")
    assert err < 1e-5
    assert (plain - got).abs().max() > 1e-3  # the option matters
    with pytest.raises(InputError, match="use_tf_gamma works only with 1536 bins"):
        ours(_onehot(1, 1024, seed=4))


def test_key_mapping_covers_enformer_pytorch_and_fills_our_trunk() -> None:
    ep = enformer_pytorch.Enformer.from_hparams(dim=256, depth=3, heads=6, output_heads={"human": 4, "mouse": 2})
    mapped = {enformer_pytorch_key(k) for k in ep.state_dict()} - {None}
    ours = EnformerBackbone(n_transformers=3)
    assert mapped == set(ours.trunk.state_dict())
    assert enformer_pytorch_key("_heads.mouse.0.weight") is None
    with pytest.raises(CheckpointError, match="no counterpart"):
        enformer_pytorch_key("transformer.0.2.weight")


# --------------------------------------------------------------------------------------------------------------
# gReLU state-dict files


def _grelu_model(seed: int, n_transformers: int = 2) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = grelu_models.EnformerModel(
        n_tasks=3,
        n_conv=5,
        channels=256,
        n_transformers=n_transformers,
        n_heads=6,
        key_len=16,
        crop_len=1,
        final_pool_func=None,
    )
    return _randomise(model, seed)


def test_grelu_state_dict_file_loads_exactly(tmp_path: Path) -> None:
    model = _grelu_model(5)
    path = tmp_path / "human_state_dict.h5"
    torch.save(model.state_dict(), path)
    ours = EnformerBackbone(pretrained=str(path), crop_len=1).eval()
    assert {k: ours.config[k] for k in SMALL_ENFORMER} == {
        "n_conv": 5,
        "channels": 256,
        "n_transformers": 2,
        "n_heads": 6,
        "key_len": 16,
    }
    x = _onehot(2, 640, seed=6, n_columns=7)
    with torch.no_grad():
        expected = model.embedding(x)
        torch.testing.assert_close(ours(x), expected, rtol=0, atol=0)
        assert ours(x).shape == (2, 512, 640 // 32 - 2)
        # fewer transformer layers than the file: the first ones are kept (gReLU's EnformerPretrainedModel)
        short = EnformerBackbone(pretrained=str(path), n_transformers=1, crop_len=1).eval()
        model.embedding.transformer_tower.blocks = model.embedding.transformer_tower.blocks[:1]
        torch.testing.assert_close(short(x), model.embedding(x), rtol=0, atol=0)
    # a bare trunk state dict works too
    torch.save(model.embedding.state_dict(), tmp_path / "trunk.pt")
    assert EnformerBackbone(pretrained=str(tmp_path / "trunk.pt")).config["n_transformers"] == 1


def _bad_checkpoint(tmp_path: Path, case: str) -> tuple[str, dict]:
    sd = _grelu_model(7, n_transformers=1).state_dict()
    path = tmp_path / "w.h5"
    kwargs: dict = {}
    if case == "missing":
        return str(tmp_path / "nope.h5"), kwargs
    if case == "corrupt":
        path.write_bytes(b"\x00garbage, not a torch file" * 10)
    elif case == "truncated":
        torch.save(sd, path)
        path.write_bytes(path.read_bytes()[:2000])
    elif case == "not_a_state_dict":
        torch.save([1, 2, 3], path)
    elif case == "pickled_object":
        torch.save({"embedding.conv_tower.x": Path("x")}, path)  # weights_only refuses arbitrary objects
    elif case == "no_trunk_keys":
        torch.save({"foo.weight": torch.zeros(2)}, path)
    elif case == "wrong_shape":
        sd["embedding.transformer_tower.blocks.0.mha.to_v.weight"] = torch.zeros(3, 3)
        torch.save(sd, path)
    elif case == "missing_key":
        del sd["embedding.pointwise_conv.norm.layer.weight"]
        torch.save(sd, path)
    elif case == "conflicting_size":
        torch.save(sd, path)
        kwargs = {"channels": 384, "n_heads": 4}
    elif case == "too_deep":
        torch.save(sd, path)
        kwargs = {"n_transformers": 2}
    elif case in ("dir_no_config", "dir_bad_json", "dir_no_weights", "dir_bad_safetensors"):
        path = tmp_path / "ckpt"
        path.mkdir()
        if case == "dir_bad_json":
            (path / "config.json").write_text("{not json")
        elif case != "dir_no_config":
            (path / "config.json").write_text(json.dumps({"dim": 256, "depth": 1, "heads": 6}))
        if case == "dir_bad_safetensors":
            (path / "model.safetensors").write_bytes(b"\x01\x02 broken")
    return str(path), kwargs


BAD = {
    "missing": "do not exist",
    "corrupt": "cannot read Enformer weights",
    "truncated": "cannot read Enformer weights",
    "not_a_state_dict": "does not hold a state dict",
    "pickled_object": "cannot read Enformer weights",
    "no_trunk_keys": "holds no Enformer trunk weights",
    "wrong_shape": "to_v.weight has shape",
    "missing_key": "1 missing",
    "conflicting_size": "have channels=256 but channels=384 was given",
    "too_deep": "have n_transformers=1 but n_transformers=2",
    "dir_no_config": "has no config.json",
    "dir_bad_json": "is not valid JSON",
    "dir_no_weights": "no model.safetensors or pytorch_model.bin",
    "dir_bad_safetensors": "cannot read",
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_weights_raise_one_line_checkpoint_errors(tmp_path: Path, case: str) -> None:
    path, kwargs = _bad_checkpoint(tmp_path, case)
    with pytest.raises(CheckpointError, match=BAD[case]) as info:
        EnformerBackbone(pretrained=path, **kwargs)
    assert "\n" not in str(info.value)


def test_bad_hyper_parameters_are_clear() -> None:
    with pytest.raises(CaduceusError, match="multiple of 128"):
        enformer(channels=192, n_heads=4)
    with pytest.raises(CaduceusError, match="divisible by 6"):
        enformer(channels=256, n_heads=4)
    with pytest.raises(CaduceusError, match="unknown hyper-parameter 'dim'"):
        enformer(dim=256)
    with pytest.raises(CaduceusError, match="unknown hyper-parameter 'channels'"):
        cnn(channels=8)
    with pytest.raises(CaduceusError, match="use_tf_gamma needs"):
        enformer(use_tf_gamma=True)
    with pytest.raises(InputError, match=r"\(N, 4, L\)"):
        enformer()(torch.zeros(1, 5, 256))
    with pytest.raises(InputError, match="nothing left after cropping"):
        enformer(crop_len=2)(torch.zeros(1, 4, 256))


# --------------------------------------------------------------------------------------------------------------
# defaults, registry, specs


def test_small_defaults_parameter_counts_and_shapes() -> None:
    e, c = enformer(), cnn()
    print(f"\nsmall enformer {_count(e):,} parameters, small cnn {_count(c):,} parameters")
    assert _count(e) == 2_736_128 and e.out_channels == 512 and e.pool_factor == 128
    assert _count(c) == 670_888 and c.out_channels == 250 and c.pool_factor == 16 and c.receptive_field == 360
    x = _onehot(2, 1024, seed=8)
    assert e.eval()(x).shape == (2, 512, 8)
    assert c.eval()(x).shape == (2, 250, 64)
    with torch.device("meta"):
        full = enformer(**FULL_ENFORMER)
    assert _count(full) == 229_845_504 and full.out_channels == 3072


def test_registry_and_specs() -> None:
    registry = get_registry()
    assert {"enformer", "cnn"} <= set(registry.names())
    assert isinstance(registry.build("enformer"), EnformerBackbone)
    assert isinstance(registry.build("cnn", n_conv=3), ConvBackbone)
    specs = load_specs()
    assert {k: specs["enformer"]["config"][k] for k in SMALL_ENFORMER} == SMALL_ENFORMER
    assert {k: specs["enformer"]["full_config"][k] for k in FULL_ENFORMER} == FULL_ENFORMER
    assert specs["cnn"]["config"] == SMALL_CNN and specs["cnn"]["checkpoints"] == []
    grelu_ckpt, ep_ckpt = specs["enformer"]["checkpoints"]
    with torch.device("meta"):
        grelu_full = grelu_models.EnformerModel(n_tasks=grelu_ckpt["n_tasks"])
        ep_full = enformer_pytorch.Enformer.from_hparams()  # human 5313 + mouse 1643 heads
    assert _count(grelu_full) == grelu_ckpt["params"] == 246_172_353
    assert _count(ep_full) == ep_ckpt["params"] == 251_221_292
    assert _count(grelu_full.embedding) == grelu_ckpt["trunk_params"] == ep_ckpt["trunk_params"]


# --------------------------------------------------------------------------------------------------------------
# through gReLU by name

GRELU_SMALL = {
    "enformer": {"n_conv": 4, "channels": 256, "n_transformers": 1, "n_heads": 6, "key_len": 16},
    "cnn": {"n_conv": 3, "channel_init": 32, "stem_channels": 16},
}
SEQ_LEN = 256


def _seqs(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list("ACGT"), SEQ_LEN)) for _ in range(n)]


def test_names_resolve_on_grelu_models() -> None:
    assert issubclass(grelu_models.enformer, ComponentModel) and issubclass(grelu_models.cnn, ComponentModel)
    assert grelu_models.CNNModel is grelu_models.cnn
    assert not issubclass(grelu_models.EnformerModel, ComponentModel)  # gReLU's own class is left alone


@pytest.mark.parametrize("name", ["enformer", "cnn"])
@LIGHTNING_WARNINGS[0]
@LIGHTNING_WARNINGS[1]
@LIGHTNING_WARNINGS[2]
def test_lightning_model_by_name_forward_and_train_step(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # Lightning's default loggers write lightning_logs/ into the working directory
    train_params = {
        "task": "binary",
        "loss": "bce",
        "lr": 1e-3,
        "batch_size": 8,
        "max_epochs": 1,
        "num_workers": 0,
        "devices": "cpu",
        "logger": None,
        "save_dir": str(tmp_path),
        "checkpoint": True,
    }
    model = LightningModel(
        model_params={"model_type": name, "n_tasks": 1, **GRELU_SMALL[name]}, train_params=train_params
    )
    assert model.model.backbone_name == name
    x = _onehot(2, SEQ_LEN, seed=9)
    assert model(x).shape == (2, 1, 1)
    labels = np.array([[[i % 2]] for i in range(8)], dtype=np.float32)
    train = LabeledSeqDataset(_seqs(8, 10), labels, tasks=["t"])
    val = LabeledSeqDataset(_seqs(8, 11), labels, tasks=["t"])
    before = {k: v.clone() for k, v in model.model.state_dict().items()}
    model.train_on_dataset(train, val)
    assert any(not torch.equal(before[k], v) for k, v in model.model.state_dict().items())  # it trained a step
    model.eval()
    assert model.predict_on_seqs(_seqs(2, 12)).shape == (2, 1, 1)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_enformer_track_head_crops_bins_through_grelu() -> None:
    """gReLU's crop convention through ComponentModel: crop_len goes to the track head (L/16 - 2 * crop_len bins)."""
    model = LightningModel(
        model_params={"model_type": "enformer", "n_tasks": 2, "head": "track", "crop_len": 3, **GRELU_SMALL["enformer"]}
    ).eval()
    assert model(_onehot(2, SEQ_LEN, seed=13)).shape == (2, 2, SEQ_LEN // 16 - 6)
