"""The job runner: shards, --resume after SIGKILL, the one-process loop against Lightning, DDP over 2 CPU processes,
progress lines, Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from caduceus_plugin.cli import main
from caduceus_plugin.errors import InputError
from caduceus_plugin.jobs.predict import predict
from caduceus_plugin.jobs.runner import Devices, Shards, run_job
from caduceus_plugin.registry.pretrained import shipped_weights
from tests.genomic_data import SLICE, real_data, write_lines

TINY = str(shipped_weights("tiny_ps"))
SEQ_LEN = 128


def _tiled_bed(path: Path, n: int, step: int = 50) -> Path:
    lo = SLICE[0] + 1000
    return write_lines(path, [f"20\t{lo + i * step}\t{lo + i * step + 20}\tw{i}\t0\t{'+-'[i % 2]}" for i in range(n)])


def _cli(*args: str, env: dict[str, str] | None = None, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "caduceus_plugin.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=600, **kw)


def _predict_args(files: dict[str, Path], bed: Path, out: Path, *extra: str) -> list[str]:
    return ["predict", "--fasta", str(files["fasta"]), "--bed", str(bed), "--out", str(out), "--weights", TINY,
            "--seq-len", str(SEQ_LEN), *extra]


def test_shards_gather_in_row_order_dropping_sampler_padding(tmp_path: Path) -> None:
    shards = Shards(tmp_path / "x.parts", {"job": "t"})
    shards.prepare(resume=False)
    shards.write({"index": np.array([2, 0]), "v": np.array([20.0, 0.0])}, rank=0)
    shards.write({"index": np.array([1, 2]), "v": np.array([10.0, 20.0])}, rank=1)  # 2 again: DistributedSampler pad
    assert shards.done() == {0, 1, 2}
    np.testing.assert_array_equal(shards.gather(3)["v"], [0.0, 10.0, 20.0])
    with pytest.raises(InputError, match="1 of 4 rows have no result"):
        shards.gather(4)


def test_leftover_shards_need_resume_and_the_same_job(tmp_path: Path) -> None:
    Shards(tmp_path / "x.parts", {"job": "a", "options": {"seq_len": 128}}).prepare(resume=False)
    with pytest.raises(InputError, match="pass --resume to continue it, or delete the folder"):
        Shards(tmp_path / "x.parts", {"job": "a", "options": {"seq_len": 128}}).prepare(resume=False)
    with pytest.raises(InputError, match=r"written by a different job \(differs in: options"):
        Shards(tmp_path / "x.parts", {"job": "a", "options": {"seq_len": 256}}).prepare(resume=True)
    Shards(tmp_path / "x.parts", {"job": "a", "options": {"seq_len": 128}}).prepare(resume=True)


def test_predict_streams_shards_and_cleans_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = real_data(tmp_path)
    bed = _tiled_bed(tmp_path / "w.bed", 12)
    seen: list[int] = []
    real_write = Shards.write

    def spy(self, arrays, rank):  # each batch goes to disk as it finishes: never more than one batch in memory
        seen.append(len(arrays["index"]))
        return real_write(self, arrays, rank)

    monkeypatch.setattr(Shards, "write", spy)
    out = tmp_path / "p.parquet"
    res = predict(files["fasta"], bed, out, weights=TINY, seq_len=SEQ_LEN, batch_size=5, device="cpu")
    assert seen == [5, 5, 2]
    assert pl.read_parquet(out).height == 12 and res.values.shape == (12, 32)
    assert not (tmp_path / "p.parquet.parts").exists()


def test_resume_after_sigkill_gives_the_same_output(tmp_path: Path) -> None:
    files = real_data(tmp_path)
    bed = _tiled_bed(tmp_path / "w.bed", 400, step=7)
    ref = tmp_path / "ref.parquet"
    assert _cli(*_predict_args(files, bed, ref, "--batch-size", "8")).returncode == 0
    out = tmp_path / "p.parquet"
    parts = tmp_path / "p.parquet.parts"
    proc = subprocess.Popen([sys.executable, "-m", "caduceus_plugin.cli",
                             *_predict_args(files, bed, out, "--batch-size", "1")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None and len(list(parts.glob("part-*.npz"))) < 20:
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed: make the job longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    n_done = len(list(parts.glob("part-*.npz")))
    assert 20 <= n_done < 400
    again = _cli(*_predict_args(files, bed, out, "--batch-size", "1"))
    assert again.returncode == 2 and "--resume" in again.stderr and again.stderr.count("\n") == 1
    resumed = _cli(*_predict_args(files, bed, out, "--batch-size", "8", "--resume"))  # the batch size may change
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = pl.read_parquet(ref), pl.read_parquet(out)
    assert a.columns == b.columns and a.height == b.height == 400
    emb = [c for c in a.columns if c.startswith("emb_")]
    np.testing.assert_allclose(b.select(emb).to_numpy(), a.select(emb).to_numpy(), rtol=1e-5, atol=1e-6)
    assert a.drop(emb).equals(b.drop(emb))
    assert not parts.exists()


def test_one_process_loop_equals_lightnings_one_device_run(tmp_path: Path) -> None:
    files = real_data(tmp_path)
    bed = _tiled_bed(tmp_path / "w.bed", 13)
    kw = dict(weights=TINY, seq_len=SEQ_LEN, batch_size=4)
    loop = predict(files["fasta"], bed, tmp_path / "a.parquet", devices=Devices(), **kw)
    lit = predict(files["fasta"], bed, tmp_path / "b.parquet", devices=Devices(lightning=True), **kw)
    np.testing.assert_array_equal(loop.values, lit.values)  # same batches, same ops: bit for bit
    assert pl.read_parquet(tmp_path / "a.parquet").equals(pl.read_parquet(tmp_path / "b.parquet"))


class _Probe(torch.nn.Module):
    """Records its mode and grad state per call; a BatchNorm child checks that children go to eval mode too."""

    def __init__(self) -> None:
        super().__init__()
        self.lin, self.norm = torch.nn.Linear(2, 1), torch.nn.BatchNorm1d(2)
        self.seen: list[tuple[bool, bool, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append((self.training, self.norm.training, torch.is_inference_mode_enabled()))
        return self.lin(self.norm(x))


class _Items(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 7

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"index": torch.tensor(i), "x": torch.tensor([float(i), 1.0 - i])}


@pytest.mark.parametrize("lightning", [False, True], ids=["loop", "lightning"])
def test_job_runs_in_eval_and_inference_mode_and_gives_the_modules_back_as_they_were(lightning: bool,
                                                                                     tmp_path: Path) -> None:
    probe = _Probe().train()
    probe.norm.eval()  # a child in its own mode must get it back
    shards = Shards(tmp_path / "x.parts", {"job": "t"})
    out = run_job(_Items(), lambda b: {"y": probe(b["x"])}, {"m": probe}, shards, batch_size=3,
                  devices=Devices(lightning=lightning))
    assert probe.seen == [(False, False, True)] * 3  # batches of 3, 3, 1
    assert probe.training and not probe.norm.training and probe.lin.training
    with torch.no_grad():
        want = probe.eval()(torch.stack([_Items()[i]["x"] for i in range(7)]))
    np.testing.assert_allclose(out["y"], want.numpy(), rtol=1e-6)


def test_a_one_process_job_does_not_import_lightning(tmp_path: Path) -> None:
    files = real_data(tmp_path)
    bed = _tiled_bed(tmp_path / "w.bed", 3)
    code = ("import sys; from caduceus_plugin.cli import main; rc = main(sys.argv[1:]); "
            "print('LOADED', sorted(m for m in sys.modules if m.split('.')[0] in "
            "('pytorch_lightning', 'lightning', 'lightning_fabric', 'torchmetrics'))); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, *_predict_args(files, bed, tmp_path / "p.parquet")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split("LOADED")[-1].strip() == "[]"


def test_ddp_over_two_cpu_processes_equals_one_process(tmp_path: Path) -> None:
    files = real_data(tmp_path)
    bed = _tiled_bed(tmp_path / "w.bed", 21)  # odd: the distributed sampler pads one rank with a repeated row
    one, two = tmp_path / "one.parquet", tmp_path / "two.parquet"
    assert _cli(*_predict_args(files, bed, one, "--batch-size", "4")).returncode == 0
    proc = _cli(*_predict_args(files, bed, two, "--batch-size", "4", "--accelerator", "cpu", "--devices", "2"),
                cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("wrote 21 rows") == 1  # rank 0 reports, rank 1 is quiet
    a, b = pl.read_parquet(one), pl.read_parquet(two)
    emb = [c for c in a.columns if c.startswith("emb_")]
    np.testing.assert_allclose(b.select(emb).to_numpy(), a.select(emb).to_numpy(), rtol=1e-5, atol=1e-6)
    assert a.drop(emb).equals(b.drop(emb))


def test_progress_lines_when_stderr_is_not_a_terminal(tmp_path: Path) -> None:
    files = real_data(tmp_path)
    bed = _tiled_bed(tmp_path / "w.bed", 10)
    proc = _cli(*_predict_args(files, bed, tmp_path / "p.parquet", "--batch-size", "2", "--log-every", "0"))
    assert proc.returncode == 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("predict: ")]
    assert len(lines) == 5 and lines[-1].startswith("predict: 10/10 windows (100%)") and "ETA" in lines[-1]
    assert "GPU available" not in proc.stderr + proc.stdout  # Lightning's banner is not for our users


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupt_is_one_line_no_output_and_keeps_finished_batches(signum: int, tmp_path: Path) -> None:
    """Ctrl-C exits 130 and SIGTERM (a scheduler's stop) 143, each with one line; no output file, shards kept."""
    files = real_data(tmp_path)
    bed = _tiled_bed(tmp_path / "w.bed", 600, step=7)
    out = tmp_path / "p.parquet"
    proc = subprocess.Popen([sys.executable, "-m", "caduceus_plugin.cli",
                             *_predict_args(files, bed, out, "--batch-size", "1")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    parts = tmp_path / "p.parquet.parts"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None and len(list(parts.glob("part-*.npz"))) < 5:
        time.sleep(0.02)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, err[-2000:]
    assert err.count("\n") == 1 and err.startswith("error: interrupted") and "--resume" in err
    assert f"interrupted ({signal.Signals(signum).name})" in err
    assert not out.exists() and len(list(parts.glob("part-*.npz"))) >= 5


def test_bad_devices_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = real_data(tmp_path)
    argv = _predict_args(files, files["bed"], tmp_path / "p.parquet")
    assert main([*argv, "--accelerator", "gpu"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err
    with pytest.raises(InputError, match="--devices must be a positive integer"):
        Devices(devices=0).check()


def _peak_rss_mb(args: list[str]) -> float:
    code = ("import resource, sys; from caduceus_plugin.cli import main; rc = main(sys.argv[1:]); "
            "print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return float(proc.stdout.split("PEAK")[-1])


@pytest.mark.slow
def test_peak_memory_is_bounded_by_a_batch_not_the_number_of_intervals(tmp_path: Path) -> None:
    files = real_data(tmp_path)
    peaks = []
    for n in (2_000, 20_000):
        bed = _tiled_bed(tmp_path / f"w{n}.bed", n, step=9)
        out = tmp_path / f"p{n}.parquet"
        args = _predict_args(files, bed, out, "--batch-size", "128")
        args[args.index("--seq-len") + 1] = "64"
        peaks.append(_peak_rss_mb(args))
        assert pl.read_parquet(out).height == n
    assert peaks[1] < 1.5 * peaks[0], peaks
