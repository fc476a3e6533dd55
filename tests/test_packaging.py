"""What `pip install caduceus-plugin` brings: the core stack, no kipoi; and the wheel carries every data file."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _requirement_names(reqs: list[str]) -> set[str]:
    import re

    return {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].strip().lower() for r in reqs}


def test_core_dependencies_leave_kipoi_to_its_extra() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = _requirement_names(project["dependencies"])
    assert "kipoi" not in core and "setuptools" not in core
    assert {"grelu", "pytorch-lightning", "kipoiseq", "pybigwig", "polars", "pluggy", "hydra-core"} <= core
    assert {"kipoi", "setuptools"} <= _requirement_names(project["optional-dependencies"]["kipoi"])
    assert "entry-points" not in project or "genomic_models" not in project["entry-points"]  # built-ins: direct


@pytest.mark.slow
def test_wheel_metadata_and_data_files(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path),
         str(ROOT)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("caduceus_plugin-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        meta = Parser().parsestr(zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode())
    requires = meta.get_all("Requires-Dist")
    unconditional = [r for r in requires if "extra ==" not in r]
    assert not [r for r in unconditional if r.lower().startswith(("kipoi ", "kipoi=", "setuptools"))], unconditional
    assert any(r.startswith("kipoi") and 'extra == "kipoi"' in r for r in requires)
    for needed in (
        "caduceus_plugin/registry/model_specs/caduceus_ps.json",
        "caduceus_plugin/hosts/grelu/conf/train.yaml",
        "caduceus_plugin/hosts/grelu/conf/model/caduceus_ps.yaml",
        "caduceus_plugin/hosts/kipoi/template/example_files/example.fa",
        "caduceus_plugin/weights/grch37_chr20_ps/model.safetensors",
        "caduceus_plugin/demo_data/tss.bed",
        "caduceus_plugin/ops/numba/simd.py",
    ):
        assert needed in names, needed
    assert not [n for n in names if n.startswith("tests/") or n.startswith("benchmarks/")]
