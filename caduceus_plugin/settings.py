"""Every ``CADUCEUS_*`` environment variable, parsed and validated in one place.

Each is read when asked for (so a test's ``monkeypatch.setenv`` or a shell ``export`` between two calls counts),
and a bad value raises :class:`~caduceus_plugin.errors.InputError` with one line that names the variable, what it
accepts and what it got. ``caduceus info`` prints :func:`describe`.

=================================== ========================================================= ====================
variable                            meaning                                                   default
=================================== ========================================================= ====================
``CADUCEUS_SCAN_BACKEND``           selective-scan backend: auto, ref, chunked, numba,        auto
                                    mamba_ssm
``CADUCEUS_MATMUL_DTYPE``           Caduceus inference projections: fp32/float32, bf16        (tensor dtype)
``CADUCEUS_CPU_GEMM``               float32 CPU projections: auto, onednn, torch              auto
``CADUCEUS_CHUNK_LEN``              longest streaming inference chunk (positions, >= 1)       2048
``CADUCEUS_STASH_GB``               streaming inference stash budget (GiB, >= 0)              1.75
``CADUCEUS_MALLOC_TUNE``            glibc malloc reuse during CPU inference (boolean)         on
``CADUCEUS_NUMBA_AVX512``           numba CPU kernels in 512-bit vectors where the CPU has    on
                                    AVX-512 (boolean; off: LLVM's tuning, 256-bit on Intel)
``CADUCEUS_DISABLE_PLUGIN_AUTOLOAD`` skip third-party ``genomic_models`` plugins (boolean)    off
``CADUCEUS_DATA_DIR``               cache of real data                                        ~/.cache/caduceus-plugin
``CADUCEUS_DATA_SEARCH``            ``os.pathsep``-separated folders searched before fetching  (none)
``CADUCEUS_OFFLINE``                never call a package client (boolean)                     off
``CADUCEUS_FETCH_TIMEOUT``          seconds per package-client call (> 0)                     900
=================================== ========================================================= ====================

Booleans accept ``1/0``, ``true/false``, ``yes/no``, ``on/off`` (any case); an empty value is the default.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from caduceus_plugin.errors import InputError

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class Setting:
    """One variable: its name, default (as the parsed value), parser and a one-line description."""

    name: str
    default: Any
    parse: Callable[[str, str], Any]
    help: str

    def get(self) -> Any:
        raw = os.environ.get(self.name, "").strip()
        return self.default if not raw else self.parse(self.name, raw)


def _bad(name: str, want: str, raw: str) -> InputError:
    return InputError(f"${name} must be {want}, got {raw!r}; fix or unset it")


def _choice(*choices: str) -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        value = raw.lower()
        if value not in choices:
            raise _bad(name, "one of " + ", ".join(choices), raw)
        return value

    return parse


def _bool(name: str, raw: str) -> bool:
    value = raw.lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise _bad(name, "a boolean (1/0, true/false, yes/no, on/off)", raw)


def _positive_int(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise _bad(name, "a positive integer", raw) from None
    if value < 1:
        raise _bad(name, "a positive integer", raw)
    return value


def _number(minimum: float, strict: bool) -> Callable[[str, str], float]:
    want = f"a number {'>' if strict else '>='} {minimum:g}"

    def parse(name: str, raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise _bad(name, want, raw) from None
        if not (value > minimum if strict else value >= minimum) or value != value or value == float("inf"):
            raise _bad(name, want, raw)
        return value

    return parse


def _path(name: str, raw: str) -> Path:
    return Path(raw).expanduser()


def _paths(name: str, raw: str) -> list[Path]:
    return [Path(p).expanduser() for p in raw.split(os.pathsep) if p.strip()]


SCAN_BACKENDS = ("auto", "ref", "chunked", "numba", "mamba_ssm")
CPU_GEMMS = ("auto", "onednn", "torch")
MATMUL_DTYPES = ("fp32", "float32", "bf16", "bfloat16")

SCAN_BACKEND = Setting("CADUCEUS_SCAN_BACKEND", "auto", _choice(*SCAN_BACKENDS), "selective-scan backend")
MATMUL_DTYPE = Setting("CADUCEUS_MATMUL_DTYPE", None, _choice(*MATMUL_DTYPES), "Caduceus inference projections dtype")
CPU_GEMM = Setting("CADUCEUS_CPU_GEMM", "auto", _choice(*CPU_GEMMS), "float32 CPU projections library")
CHUNK_LEN = Setting("CADUCEUS_CHUNK_LEN", 2048, _positive_int, "longest streaming inference chunk")
STASH_GB = Setting("CADUCEUS_STASH_GB", 1.75, _number(0, strict=False), "streaming inference stash budget (GiB)")
MALLOC_TUNE = Setting("CADUCEUS_MALLOC_TUNE", True, _bool, "glibc malloc reuse during CPU inference")
NUMBA_AVX512 = Setting("CADUCEUS_NUMBA_AVX512", True, _bool, "numba CPU kernels in 512-bit vectors on AVX-512")
DISABLE_PLUGIN_AUTOLOAD = Setting(
    "CADUCEUS_DISABLE_PLUGIN_AUTOLOAD", False, _bool, "skip third-party genomic_models plugins"
)
DATA_DIR = Setting("CADUCEUS_DATA_DIR", Path("~/.cache/caduceus-plugin").expanduser(), _path, "real-data cache")
DATA_SEARCH = Setting("CADUCEUS_DATA_SEARCH", [], _paths, "folders searched before fetching")
OFFLINE = Setting("CADUCEUS_OFFLINE", False, _bool, "never call a package client")
FETCH_TIMEOUT = Setting("CADUCEUS_FETCH_TIMEOUT", 900.0, _number(0, strict=True), "seconds per package-client call")

ALL = (
    SCAN_BACKEND, MATMUL_DTYPE, CPU_GEMM, CHUNK_LEN, STASH_GB, MALLOC_TUNE, NUMBA_AVX512, DISABLE_PLUGIN_AUTOLOAD,
    DATA_DIR, DATA_SEARCH, OFFLINE, FETCH_TIMEOUT,
)  # fmt: skip


def validate_all() -> None:
    """Parse every variable that is set; raises :class:`InputError` for the first bad one."""
    for setting in ALL:
        setting.get()


def describe() -> list[str]:
    """``NAME=value`` for each variable that is set (validated), for ``caduceus info``."""
    return [f"{s.name}={os.environ[s.name].strip()}" for s in ALL if os.environ.get(s.name, "").strip() and
            s.get() is not None]
