"""The numba kernels' disk cache follows every kernel module's source, not only the decorated function's own file.

numba keys a cached function on its own file, so a kernel of ``stream.py`` that inlines a helper of ``simd.py`` kept
loading its old machine code after ``simd.py`` changed (seen in this repository: a ``simd.py`` whose every decay was
0 left a cached stream scan's output unchanged).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from caduceus_plugin.ops.numba import mixer, scan, simd, stream

PACKAGE = Path(simd.__file__).resolve().parents[2]


@pytest.mark.parametrize("kernel", [stream._scan_kernel, stream._conv_kernel, scan._fwd_kernel, mixer._scan_bwd_kernel])
def test_cached_kernels_are_stamped_with_every_kernel_source(kernel) -> None:
    locator = kernel._cache._impl.locator
    assert type(locator).__name__.startswith("Stamped")
    assert locator.get_source_stamp()[1] == simd.KERNEL_SOURCES_DIGEST
    # numba's own locators given back after decorating: other numba code in the process is not touched
    impl, _ = simd._LOCATORS
    assert impl._locator_classes and not any(c.__name__.startswith("Stamped") for c in impl._locator_classes)


_RUN = """
import caduceus_plugin, torch
assert caduceus_plugin.__file__.startswith(%r), caduceus_plugin.__file__
from caduceus_plugin.ops.numba import stream
g = torch.Generator().manual_seed(0)
out, _ = stream.conv_silu(torch.randn(1, 40, 16, generator=g), torch.randn(16, 4, generator=g), None, None, False)
print(repr(float(out.sum())))
"""


@pytest.mark.slow
def test_a_changed_helper_module_recompiles_the_kernels_that_inline_it(tmp_path: Path) -> None:
    """A copy of the package, its kernel cache warm; then ``simd.vexp`` (inlined by the conv kernel of
    ``stream.py``, whose file does not change) returns twice its value: the next run recompiles and sees it."""
    pkg = tmp_path / "pkg"
    shutil.copytree(PACKAGE, pkg / "caduceus_plugin", ignore=shutil.ignore_patterns("__pycache__", "weights"))
    env = {**os.environ, "PYTHONPATH": str(pkg), "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    script = _RUN % str(pkg)

    def run() -> float:
        res = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True,
                             timeout=600)  # cwd: not the repository, whose package would shadow the copy
        assert res.returncode == 0, res.stderr
        return float(res.stdout.strip())

    first = run()
    assert run() == first  # from the cache
    simd_py = pkg / "caduceus_plugin" / "ops" / "numba" / "simd.py"
    text = simd_py.read_text()
    old = "    return y if x >= _EXP_LO else ZERO\n"
    assert text.count(old) == 1
    simd_py.write_text(text.replace(old, "    return _TWO * y if x >= _EXP_LO else ZERO\n"))
    assert run() != first
