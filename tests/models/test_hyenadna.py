"""HyenaDNA: parity with the authors' model, both checkpoint layouts, parameter counts, trunk, errors, long inputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from caduceus_plugin.errors import CheckpointError, InputError
from caduceus_plugin.models.hyenadna import (
    HyenaDNA,
    HyenaDNAConfig,
    HyenaDNATrunk,
    from_pretrained,
    hyenadna,
    save_pretrained,
)
from caduceus_plugin.models.hyenadna import modeling as hy_modeling
from caduceus_plugin.ops.fftconv import fftconv_fn, fftconv_ref, next_fast_len
from caduceus_plugin.registry.specs import checkpoint_config, load_specs
from caduceus_plugin.sequence import ids_to_onehot, tokenize
from tests.conftest import FIXTURES, perturb_, random_ids, rel_err

REF = FIXTURES / "hyenadna_reference" / "hyenadna_d32_l2"


@pytest.fixture(scope="module")
def ref_model() -> HyenaDNA:
    return from_pretrained(REF)


def _expected() -> dict[str, torch.Tensor]:
    return load_file(str(REF / "expected.safetensors"))


def _tiny(seed: int = 0, **kw: object) -> HyenaDNA:
    kwargs: dict = dict(d_model=8, n_layer=2, l_max=64, embed_dropout=0.0)
    kwargs.update(kw)
    torch.manual_seed(seed)
    return perturb_(HyenaDNA(HyenaDNAConfig(**kwargs)), seed).eval()


def _fixture_state() -> dict[str, torch.Tensor]:
    return torch.load(REF / "weights.ckpt", weights_only=True)["state_dict"]


def _write_original(folder: Path, state: dict[str, torch.Tensor], config: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    cfg = config if config is not None else json.loads((REF / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(cfg))
    torch.save({"state_dict": state}, folder / "weights.ckpt")
    return folder


# (a) parity with the authors' standalone model


def test_parity_with_reference_fixture(ref_model: HyenaDNA) -> None:
    exp = _expected()
    with torch.no_grad():
        out = ref_model(exp["input_ids"])
    err = rel_err(out, exp["hidden_states"])
    print(f"HyenaDNA d32/l2 parity: relative error {err:.3e}")
    assert out.shape == exp["hidden_states"].shape == (2, 100, 32)
    assert err < 1e-4


def test_fixture_config_and_shared_freq(ref_model: HyenaDNA) -> None:
    cfg = ref_model.config
    assert (cfg.d_model, cfg.n_layer, cfg.d_inner, cfg.l_max, cfg.padded_vocab_size) == (32, 2, 128, 258, 16)
    for layer in ref_model.backbone.layers:
        f = layer.mixer.filter_fn.implicit_filter
        assert f[1] is f[3] is f[5]  # one Sin module, one freq tensor
    n_freq = sum(1 for n, _ in ref_model.named_parameters() if n.endswith("freq"))
    assert n_freq == cfg.n_layer


def test_derived_buffers_are_regenerated_when_absent(tmp_path: Path, ref_model: HyenaDNA) -> None:
    """z, t and deltas are deterministic: a file without them loads to the same model (docs §1.4 gotcha b)."""
    state = {k: v for k, v in _fixture_state().items() if not k.endswith(("pos_emb.z", "pos_emb.t", "deltas"))}
    model = from_pretrained(_write_original(tmp_path / "stripped", state))
    for key, value in ref_model.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


# (b) -hf layout round trip; original layout round trip


def test_save_hf_layout_round_trip(tmp_path: Path, ref_model: HyenaDNA) -> None:
    out_dir = save_pretrained(ref_model, tmp_path / "hf", layout="hf")
    assert sorted(p.name for p in out_dir.iterdir()) == ["config.json", "model.safetensors"]
    assert [p.name for p in tmp_path.iterdir()] == ["hf"]  # no temp dirs left behind
    saved = load_file(str(out_dir / "model.safetensors"))
    assert all(k.startswith("hyena.backbone.") for k in saved)
    freq_keys = [k for k in saved if k.endswith(".freq")]
    assert len(freq_keys) == ref_model.config.n_layer  # stored once per layer
    assert all(".implicit_filter.1.freq" in k for k in freq_keys)
    cfg = json.loads((out_dir / "config.json").read_text())
    assert cfg["max_seq_len"] == 258 and "layer" not in cfg
    back = from_pretrained(out_dir)
    for key, value in ref_model.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key
    ids = _expected()["input_ids"]
    with torch.no_grad():
        assert torch.equal(back(ids), ref_model(ids))
    # saving again over the existing directory replaces it whole
    save_pretrained(_tiny(), out_dir)
    assert from_pretrained(out_dir).config.d_model == 8
    assert [p.name for p in tmp_path.iterdir()] == ["hf"]


def test_hf_layout_with_freq_at_another_index_and_lm_head(tmp_path: Path, ref_model: HyenaDNA) -> None:
    """The -hf file may keep the shared freq under any index, and carries an LM head we ignore."""
    state = {"hyena." + k: v.clone() for k, v in ref_model.state_dict().items() if not k.endswith(("1.freq", "3.freq"))}
    state["lm_head.weight"] = torch.zeros(16, 32)
    folder = tmp_path / "hf5"
    folder.mkdir()
    save_file(state, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(ref_model.config.to_hf_dict()))
    back = from_pretrained(folder)
    for key, value in ref_model.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key


def test_save_original_layout_round_trip(tmp_path: Path) -> None:
    model = _tiny(3)
    out_dir = save_pretrained(model, tmp_path / "orig", layout="original")
    cfg = json.loads((out_dir / "config.json").read_text())
    assert cfg["layer"]["l_max"] == 64 and cfg["layer"]["_name_"] == "hyena"
    saved = torch.load(out_dir / "weights.ckpt", weights_only=True)["state_dict"]
    assert all(k.startswith("model.backbone.") for k in saved)
    back = from_pretrained(out_dir)
    for key, value in model.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key


# (c) original layout written with gradient checkpointing


def test_original_layout_with_checkpointing_prefixes(tmp_path: Path, ref_model: HyenaDNA) -> None:
    state = {
        k.replace(".mixer.", ".mixer.layer.").replace(".mlp.", ".mlp.layer."): v for k, v in _fixture_state().items()
    }
    assert sum(".mixer.layer." in k for k in state) > 0 and sum(".mlp.layer." in k for k in state) > 0
    state["model.lm_head.weight"] = torch.zeros(16, 32)  # outside the backbone: ignored
    model = from_pretrained(_write_original(tmp_path / "ckpt", state))
    for key, value in ref_model.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


# (d) parameter counts of the released configurations

# docs/peers-and-benchmarks.md §1.2: "params w/o z" and "z (5*Lmax*n_layer)" columns, as printed (millions)
DOC_TABLE = {
    "tiny_1k": ("0.436", "0.01"),
    "tiny_1k_d256": ("1.64", "0.01"),
    "tiny_16k_d128": ("0.44", "0.16"),
    "small_32k": ("3.28", "0.66"),
    "medium_160k": ("6.55", "6.4"),
    "medium_450k": ("6.55", "18"),
    "large_1m": ("6.55", "40"),
}
CHECKPOINTS = load_specs()["hyenadna"]["checkpoints"]


def _as_printed(n: int, printed: str) -> str:
    decimals = len(printed.split(".")[1]) if "." in printed else 0
    return f"{n / 1e6:.{decimals}f}"


@pytest.mark.parametrize("ckpt", CHECKPOINTS, ids=[c["tag"] for c in CHECKPOINTS])
def test_released_parameter_counts(ckpt: dict) -> None:
    with torch.device("meta"):
        model = HyenaDNA(checkpoint_config("hyenadna", ckpt["tag"]))
    n, with_z = model.num_parameters(), model.num_parameters(include_pos_emb=True)
    assert n == ckpt["params"]
    assert with_z == ckpt["params_with_pos_emb"]
    d, layers, l_max = ckpt["d_model"], ckpt["n_layer"], ckpt["l_max"]
    # from the key shapes of docs §1.4: per layer 12 d^2 + 90 d + 8768 (filter MLP 8704 + one freq 64); 18 d outside
    assert n == layers * (12 * d * d + 90 * d + 8768) + 18 * d
    assert with_z - n == 5 * l_max * layers
    printed, printed_z = DOC_TABLE[ckpt["tag"]]
    assert _as_printed(n, printed) == printed
    assert _as_printed(with_z - n, printed_z) == printed_z


def test_parameter_counts_match_published_cross_checks() -> None:
    by_tag = {c["tag"]: c for c in CHECKPOINTS}
    assert set(by_tag) == set(DOC_TABLE)
    assert round(by_tag["tiny_1k"]["params"] / 1e3) == 436  # Caduceus paper Table 1 "HyenaDNA (436K)"
    assert round(by_tag["tiny_1k_d256"]["params"] / 1e5) / 10 == 1.6  # Table 2 "HyenaDNA (1.6M)"
    assert round(by_tag["large_1m"]["params_with_pos_emb"] / 1e6) == 47  # GUE leaderboard "47M" (with z)


# (e) the trunk


def _onehot_batch(length: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    ids = random_ids(3, length, seed=5)  # A/C/G/T/N
    return ids, ids_to_onehot(ids)  # N -> all-zero column


def test_trunk_onehot_matches_token_ids_and_registry() -> None:
    trunk = HyenaDNATrunk(d_model=16, n_layer=2, l_max=64).eval()
    perturb_(trunk)
    ids, x = _onehot_batch()
    with torch.no_grad():
        out = trunk(x)
        ref = trunk.hyena(ids).transpose(1, 2)
        x_kipoi = x.clone()
        x_kipoi[:, :, (ids[0] == 11).nonzero().flatten()] = 0.25  # kipoiseq writes N as 0.25s
        out_kipoi = trunk(x_kipoi)
    assert out.shape == (3, trunk.out_channels, 40) and trunk.out_channels == 16
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out_kipoi[0], ref[0], rtol=1e-6, atol=1e-6)

    from caduceus_plugin.registry.components import get_registry

    built = get_registry().build("hyenadna", d_model=8, n_layer=1, l_max=32)
    assert isinstance(built, HyenaDNATrunk) and built.out_channels == 8
    assert isinstance(hyenadna(d_model=8, n_layer=1, l_max=32), HyenaDNATrunk)


def test_trunk_default_size() -> None:
    with torch.device("meta"):
        trunk = hyenadna()
    assert (trunk.config.d_model, trunk.config.n_layer, trunk.config.l_max) == (256, 8, 160_002)
    assert trunk.num_parameters() == 6_550_528


def test_trunk_gradients_reach_the_input() -> None:
    trunk = perturb_(HyenaDNATrunk(d_model=16, n_layer=2, l_max=64)).eval()
    _, x = _onehot_batch()
    x.requires_grad_(True)
    trunk(x).square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert x.grad.abs().sum(dim=1).gt(0).float().mean() > 0.5  # most positions get a gradient


def test_trunk_conjoin_is_rc_invariant_after_pooling() -> None:
    trunk = perturb_(HyenaDNATrunk(d_model=16, n_layer=2, l_max=64, conjoin=True)).eval()
    _, x = _onehot_batch()
    with torch.no_grad():
        fwd, rev = trunk(x), trunk(x.flip(1, 2))  # flipping channels and length is the RC of an ACGT one-hot
        torch.testing.assert_close(fwd.mean(-1), rev.mean(-1), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(fwd, rev.flip(-1), rtol=1e-5, atol=1e-6)
        trunk.conjoin = False  # guard: the bare causal model is not RC-invariant
        assert (trunk(x).mean(-1) - trunk(x.flip(1, 2)).mean(-1)).abs().max() > 1e-3


def test_trunk_from_pretrained_fixture(ref_model: HyenaDNA) -> None:
    trunk = HyenaDNATrunk(pretrained=str(REF)).eval()
    ids = tokenize(["ACGTNACGGTTA", "GATTACAGATTA"])  # same length: [PAD] has no one-hot column
    with torch.no_grad():
        torch.testing.assert_close(trunk(ids_to_onehot(ids)), ref_model(ids).transpose(1, 2))
    with pytest.raises(InputError, match="d_model=64 disagrees with the checkpoint"):
        HyenaDNATrunk(pretrained=str(REF), d_model=64)
    with pytest.raises(InputError, match="unknown HyenaDNA option 'width'"):
        HyenaDNATrunk(width=3)


# (f) missing and corrupt files


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg and msg
    return msg


def test_missing_files_are_clear(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist") as err:
        from_pretrained(tmp_path / "nowhere")
    _one_line(err)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"no config\.json") as err:
        from_pretrained(tmp_path / "empty")
    _one_line(err)
    (tmp_path / "noweights").mkdir()
    shutil.copy(REF / "config.json", tmp_path / "noweights" / "config.json")
    with pytest.raises(CheckpointError, match="no weights") as err:
        from_pretrained(tmp_path / "noweights")
    _one_line(err)


def test_corrupt_files_are_clear(tmp_path: Path) -> None:
    bad = tmp_path / "bad_st"
    bad.mkdir()
    shutil.copy(REF / "config.json", bad / "config.json")
    (bad / "model.safetensors").write_bytes(b"\x00\x01garbage")
    with pytest.raises(CheckpointError, match="not a readable safetensors") as err:
        from_pretrained(bad)
    _one_line(err)

    trunc = tmp_path / "trunc"
    trunc.mkdir()
    shutil.copy(REF / "config.json", trunc / "config.json")
    (trunc / "weights.ckpt").write_bytes((REF / "weights.ckpt").read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint") as err:
        from_pretrained(trunc)
    _one_line(err)

    (trunc / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not a readable JSON config") as err:
        from_pretrained(trunc)
    _one_line(err)

    cfg = json.loads((REF / "config.json").read_text())
    cfg["layer"]["order"] = 3
    (trunc / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="hyena_order 2") as err:
        from_pretrained(trunc)
    _one_line(err)


class HyperParameters:  # stands in for the objects of a Lightning checkpoint's hyper_parameters
    pass


def test_pickle_with_more_than_tensors_needs_trust(tmp_path: Path) -> None:
    folder = tmp_path / "pickled"
    folder.mkdir()
    shutil.copy(REF / "config.json", folder / "config.json")

    torch.save({"state_dict": _fixture_state(), "hyper_parameters": HyperParameters()}, folder / "weights.ckpt")
    with pytest.raises(CheckpointError, match="trust_pickle=True") as err:
        from_pretrained(folder)
    _one_line(err)


def test_mismatched_tensors_are_clear(tmp_path: Path) -> None:
    state = _fixture_state()
    missing = {k: v for k, v in state.items() if not k.endswith("layers.1.mlp.fc2.weight")}
    with pytest.raises(CheckpointError, match=r"missing tensor backbone\.layers\.1\.mlp\.fc2\.weight") as err:
        from_pretrained(_write_original(tmp_path / "missing", missing))
    _one_line(err)

    cfg = json.loads((REF / "config.json").read_text())
    cfg["d_inner"] = 64
    with pytest.raises(CheckpointError, match="has shape") as err:
        from_pretrained(_write_original(tmp_path / "shape", state, cfg))
    _one_line(err)

    untied = dict(state)
    key = "model.backbone.layers.0.mixer.filter_fn.implicit_filter.3.freq"
    untied[key] = state[key] + 1
    with pytest.raises(CheckpointError, match="shared Sin frequency") as err:
        from_pretrained(_write_original(tmp_path / "untied", untied))
    _one_line(err)

    with pytest.raises(CheckpointError, match="no HyenaDNA backbone tensors") as err:
        from_pretrained(_write_original(tmp_path / "other", {"model.encoder.weight": torch.zeros(2)}))
    _one_line(err)


# (g) long inputs: FFT convolution against a direct one


def test_next_fast_len_is_smallest_5_smooth() -> None:
    def smooth(m: int) -> bool:
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        return m == 1

    for n in range(1, 3000):
        m = next_fast_len(n)
        assert m >= n and smooth(m) and not any(smooth(j) for j in range(n, m)), n
    assert next_fast_len(2 * 1_000_002 - 1) == 2_025_000


def test_fftconv_matches_direct_convolution_at_length_5000() -> None:
    model = _tiny(1, l_max=5000, n_layer=1)
    f = model.backbone.layers[0].mixer.filter_fn
    length = 5000
    with torch.no_grad():
        k = f.filter(length)
        u = torch.randn(2, 8, length, generator=torch.Generator().manual_seed(0))
        fast, ref = fftconv_fn(u, k, f.bias), fftconv_ref(u, k, f.bias)
        assert rel_err(fast, ref) < 1e-5
        # spot-check the definition itself in float64 at a few positions, the last one included
        u64, k64 = u.double(), k.double()
        for i in (0, 1, 2047, 4999):
            direct = (k64[:, : i + 1] * u64[..., : i + 1].flip(-1)).sum(-1) + f.bias.double() * u64[..., i]
            torch.testing.assert_close(fast[..., i].double(), direct, rtol=1e-5, atol=1e-5)


def test_long_input_end_to_end_matches_direct_convolution(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _tiny(2, l_max=5000)
    ids = random_ids(2, 5000, seed=7)
    with torch.no_grad():
        fast = model(ids)
        monkeypatch.setattr(hy_modeling, "fftconv_fn", fftconv_ref)  # where HyenaOperator looks it up
        direct = model(ids)
    assert fast.shape == (2, 5000, 8)
    assert rel_err(fast, direct) < 1e-5
    with pytest.raises(InputError, match="exceeds this HyenaDNA model's l_max 5000"):
        model(random_ids(1, 5001))
