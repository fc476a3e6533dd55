"""The genomic_models plugin registry: discovery through entry points, laziness, isolation of broken plugins."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from caduceus_plugin.errors import CaduceusError
from caduceus_plugin.registry.components import PluginWarning, get_registry, reset_registry

TOY = """
import torch
from torch import nn
from caduceus_plugin import hookimpl

LOADS = []


class ToyCNN(nn.Module):
    def __init__(self, channels=8):
        super().__init__()
        self.conv = nn.Conv1d(4, channels, 5, padding=2)
        self.out_channels = channels

    def forward(self, x):
        return self.conv(x)


@hookimpl
def register_components(registry):
    LOADS.append(1)
    registry.register_backbone("toy_cnn", ToyCNN)
"""


def _fake_distribution(root: Path, dist: str, module: str, source: str, entry: str | None = None) -> None:
    """A dist-info with an entry point in group genomic_models, and its module, on a sys.path folder."""
    info = root / f"{dist}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[genomic_models]\n{entry or dist} = {module}\n")
    (root / f"{module}.py").write_text(textwrap.dedent(source))


@pytest.fixture
def plugin_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("CADUCEUS_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    reset_registry()
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("fake_")]:
        del sys.modules[name]
    reset_registry()


def test_builtin_components_register_through_the_hook(plugin_path: Path) -> None:
    registry = get_registry()
    assert {"caduceus_ps", "caduceus_ph"} <= set(registry.names())
    assert registry.get("caduceus_ps").distribution == "caduceus-plugin"
    trunk = registry.build("caduceus_ps", d_model=8, n_layer=1)
    x = torch.nn.functional.one_hot(torch.randint(0, 4, (2, 15)), 4).float().transpose(1, 2)
    with torch.no_grad():
        y = trunk(x)
        assert y.shape == (2, trunk.out_channels, 15)
        # RC-invariant per-position features: rc(x) gives the same features, length-flipped
        torch.testing.assert_close(trunk(x.flip(1, 2)), y.flip(2), rtol=1e-4, atol=1e-5)
    hidden = registry.build("caduceus_ps", d_model=8, n_layer=1, features="hidden")
    with torch.no_grad():
        h = hidden(x)
        assert h.shape == (2, 16, 15) == (2, hidden.out_channels, 15)
        torch.testing.assert_close(hidden(x.flip(1, 2)), h.flip(1, 2), rtol=1e-4, atol=1e-5)  # both strands


def test_third_party_plugin_is_discovered_once(plugin_path: Path) -> None:
    _fake_distribution(plugin_path, "fakemodels", "fake_toy", TOY)
    registry = get_registry()
    assert "toy_cnn" in registry.names()
    comp = registry.get("toy_cnn")
    assert (comp.distribution, comp.plugin) == ("fakemodels", "fakemodels")
    model = registry.build("toy_cnn", channels=3)
    assert model(torch.zeros(1, 4, 10)).shape == (1, 3, 10)
    assert get_registry() is registry
    assert sys.modules["fake_toy"].LOADS == [1]  # idempotent: the hook ran once


def test_broken_plugin_warns_and_the_rest_still_load(plugin_path: Path) -> None:
    _fake_distribution(plugin_path, "brokenmodels", "fake_broken", "raise RuntimeError('boom at import')\n")
    _fake_distribution(plugin_path, "fakemodels", "fake_toy", TOY)
    with pytest.warns(PluginWarning, match=r"plugin 'brokenmodels' from brokenmodels .* RuntimeError: boom at import"):
        registry = get_registry()
    assert {"toy_cnn", "caduceus_ps"} <= set(registry.names())


def test_plugin_whose_hook_raises_is_skipped(plugin_path: Path) -> None:
    source = (
        "from caduceus_plugin import hookimpl\n\n"
        "@hookimpl\ndef register_components(registry):\n    raise ValueError('bad')\n"
    )
    _fake_distribution(plugin_path, "hookfail", "fake_hookfail", source)
    with pytest.warns(PluginWarning, match="hookfail"):
        assert "caduceus_ps" in get_registry().names()


def test_autoload_can_be_switched_off(plugin_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_distribution(plugin_path, "fakemodels", "fake_toy", TOY)
    monkeypatch.setenv("CADUCEUS_DISABLE_PLUGIN_AUTOLOAD", "1")
    # like PYTEST_DISABLE_PLUGIN_AUTOLOAD: third-party plugins are skipped, our own components stay
    assert get_registry().names() == ["caduceus_ph", "caduceus_ps", "cnn", "enformer", "hyenadna"]
    assert get_registry().names("head") == ["mlm", "pooled", "track"]
    assert "fake_toy" not in sys.modules
    reset_registry()
    monkeypatch.setenv("CADUCEUS_DISABLE_PLUGIN_AUTOLOAD", "0")  # "0" means off, not "set"
    assert "toy_cnn" in get_registry().names()


def test_our_components_are_not_an_entry_point() -> None:
    """Built-ins are registered directly (not through an entry point that autoload could switch off)."""
    import importlib.metadata as md

    assert not [ep for ep in md.entry_points(group="genomic_models") if ep.value.startswith("caduceus_plugin")]
    comp = get_registry().get("caduceus_ps")
    assert (comp.plugin, comp.distribution) == ("caduceus", "caduceus-plugin")


def test_a_bad_setting_is_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from caduceus_plugin.cli import main

    monkeypatch.setenv("CADUCEUS_DISABLE_PLUGIN_AUTOLOAD", "maybe")
    assert main(["list"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "$CADUCEUS_DISABLE_PLUGIN_AUTOLOAD must be a boolean" in err


def test_unknown_and_duplicate_names_are_clear(plugin_path: Path) -> None:
    registry = get_registry()
    with pytest.raises(CaduceusError, match="available backbones are caduceus_ph, caduceus_ps"):
        registry.get("caduceus_xl")
    with pytest.raises(CaduceusError, match="registered twice"):
        registry.register_backbone("caduceus_ps", "elsewhere:Model")
    with pytest.raises(CaduceusError, match="identifier"):
        registry.register_head("my-head", "x:y")


def test_listing_imports_no_model_code() -> None:
    code = (
        "import sys; from caduceus_plugin.registry.components import get_registry; names = get_registry().names(); "
        "assert 'caduceus_ps' in names, names; "
        "assert not any(m.startswith('caduceus_plugin.models') for m in sys.modules), "
        "[m for m in sys.modules if m.startswith('caduceus_plugin.models')]"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_list_shows_third_party_components(plugin_path: Path) -> None:
    _fake_distribution(plugin_path, "fakemodels", "fake_toy", TOY)
    import io
    from contextlib import redirect_stdout

    from caduceus_plugin.cli import main

    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(["list"]) == 0
    assert "backbone toy_cnn (from fakemodels)" in buf.getvalue()
    assert "backbone caduceus_ps (from caduceus-plugin)" in buf.getvalue()


SPEC_TOY = TOY.replace(
    'registry.register_backbone("toy_cnn", ToyCNN)',
    'registry.register_backbone("toy_cnn", ToyCNN, spec={"description": "a toy CNN", "input": {"onehot_layout": '
    '"(N, 4, L)"}, "output": {"features": "(N, channels, L)"}, "config": {"channels": 8}})',
)


def test_third_party_spec_is_validated_and_printed(plugin_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from caduceus_plugin.cli import main

    _fake_distribution(plugin_path, "fakespec", "fake_spec", SPEC_TOY)
    assert main(["info", "toy_cnn"]) == 0
    out = capsys.readouterr().out
    assert "backbone toy_cnn (from fakespec" in out and "description: a toy CNN" in out and '"channels": 8' in out
    assert main(["list"]) == 0
    assert "backbone toy_cnn (from fakespec): a toy CNN" in capsys.readouterr().out


def test_malformed_third_party_spec_skips_that_plugin_with_a_warning(plugin_path: Path) -> None:
    bad = TOY.replace('registry.register_backbone("toy_cnn", ToyCNN)',
                      'registry.register_backbone("toy_cnn", ToyCNN, spec={"description": "no contracts"})')
    _fake_distribution(plugin_path, "fakebadspec", "fake_badspec", bad)
    with pytest.warns(PluginWarning, match=r"fakebadspec.*lacks field 'input'"):
        registry = get_registry()
    assert "toy_cnn" not in registry.names() and "caduceus_ps" in registry.names()


def test_info_of_unknown_component_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    from caduceus_plugin.cli import main

    assert main(["info", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown backbone 'nope'" in err and "caduceus_ps" in err
