"""Registry-driven checks: every released configuration builds with exactly the paper's parameter count."""

from __future__ import annotations

import pytest
import torch

from caduceus_plugin import CaduceusForMaskedLM
from caduceus_plugin.errors import CaduceusError
from caduceus_plugin.models.caduceus.checkpoint import _tied_aliases
from caduceus_plugin.registry.specs import checkpoint_config, get_spec, load_specs

RELEASED = [
    (name, c["tag"], c["params"])
    for name, spec in load_specs().items()
    if spec["family"] == "caduceus"  # other families have their own tests (e.g. test_hyenadna.py)
    for c in spec["checkpoints"]
]


def test_registry_lists_both_variants() -> None:
    assert {"caduceus_ps", "caduceus_ph"} <= set(load_specs())
    assert len(RELEASED) == 6


@pytest.mark.parametrize(("name", "tag", "params"), RELEASED, ids=[f"{n}.{t}" for n, t, _ in RELEASED])
def test_released_parameter_counts(name: str, tag: str, params: int) -> None:
    with torch.device("meta"):
        model = CaduceusForMaskedLM(checkpoint_config(name, tag))
    assert model.num_parameters() == params


def test_paper_parameter_counts_are_the_registry_counts() -> None:
    counts = sorted({p for _, _, p in RELEASED})
    assert counts == [470_702, 1_934_592, 7_725_312]


def test_state_dict_element_count_of_ps_131k() -> None:
    """Spec §2.3: the released PS-131k safetensors hold 7,725,344 elements in 276 tensors (aliases dropped)."""
    with torch.device("meta"):
        model = CaduceusForMaskedLM(checkpoint_config("caduceus_ps", "131k_d256_l16"))
    aliases = _tied_aliases(model)
    assert len(aliases) == 2 * 16 + 1  # rev in/out_proj per layer + the LM head
    kept = {k: v for k, v in model.state_dict().items() if k not in aliases}
    assert len(kept) == 276
    assert sum(v.numel() for v in kept.values()) == 7_725_344


def test_unknown_names_are_clear() -> None:
    with pytest.raises(CaduceusError, match="choose one of caduceus_ph, caduceus_ps"):
        get_spec("caduceus_xl")
    with pytest.raises(CaduceusError, match="has no checkpoint"):
        checkpoint_config("caduceus_ps", "2k")
