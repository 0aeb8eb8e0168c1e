"""Reliability, fast part: exact resume, atomic checkpoints, non-finite guard, same seed -> same run.

All runs are real: the tiny transformer (tests/helpers) on 64-base windows of the chr20 fixture, a few steps each.
The SIGKILL versions of the resume test and the DDP test are in test_reliability_slow.py / _ddp.py.
"""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from seqdiff.diffusion import DiffusionLM
from seqdiff.reliability import AtomicCheckpointIO, NonFiniteGuard, NonFiniteLossError
from seqdiff.train import train

from helpers import compose, subprocess_env
from helpers.reliability import load_state, tiny_overrides, train_losses

N = 3  # steps before the interruption; every run goes to 2N steps with a checkpoint every N


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("genome_cache")


def run(run_dir, cache, extra=()):
    return train(compose("train", tiny_overrides(run_dir, cache, 2 * N, N) + list(extra)))


@pytest.fixture(scope="module")
def straight(tmp_path_factory, cache):
    run_dir = tmp_path_factory.mktemp("straight")
    run(run_dir, cache)
    return run_dir


def assert_same_state(a: dict, b: dict, atol: float = 0.0, ema: bool = True) -> None:
    """Weights, EMA, optimizer moments, LR schedule and loop counters of two Lightning checkpoints."""
    assert a["global_step"] == b["global_step"]
    assert a["state_dict"].keys() == b["state_dict"].keys()
    assert any(k.startswith("ema.") for k in a["state_dict"])
    for k in a["state_dict"]:
        if ema or not k.startswith("ema."):
            torch.testing.assert_close(a["state_dict"][k], b["state_dict"][k], atol=atol, rtol=0, msg=k)
    states_a, states_b = a["optimizer_states"][0]["state"], b["optimizer_states"][0]["state"]
    for sa, sb in zip(states_a.values(), states_b.values(), strict=True):
        for k in sa:
            torch.testing.assert_close(sa[k], sb[k], atol=atol, rtol=0)
    assert a["lr_schedulers"] == b["lr_schedulers"]


def test_same_seed_same_losses_and_weights(straight, cache, tmp_path):
    run(tmp_path, cache)
    assert train_losses(tmp_path) == train_losses(straight)  # bitwise, all 2N steps
    assert_same_state(load_state(tmp_path / "checkpoints/last.ckpt"), load_state(straight / "checkpoints/last.ckpt"))


def test_resume_after_crash_matches_straight_run(straight, cache, tmp_path):
    crash = ["+callbacks.crash._target_=helpers.reliability.CrashAfterStep", f"+callbacks.crash.step={N}",
             f"+callbacks.crash.marker={tmp_path / 'crashed'}"]
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(tmp_path, cache, crash)
    assert load_state(tmp_path / "checkpoints/last.ckpt")["global_step"] == N
    metrics = run(tmp_path, cache, crash)  # the same command again: resumes from last.ckpt
    assert metrics["global_step"] == 2 * N
    losses, ref = train_losses(tmp_path), train_losses(straight)
    assert [losses[s] for s in range(N, 2 * N)] == pytest.approx([ref[s] for s in range(N, 2 * N)], rel=1e-6, abs=1e-7)
    resumed, ref_state = load_state(tmp_path / "checkpoints/last.ckpt"), load_state(straight / "checkpoints/last.ckpt")
    assert_same_state(resumed, ref_state, atol=1e-6, ema=False)
    assert_same_state(resumed, ref_state, atol=1e-6)  # EMA included: updated in optimizer_step, before saving




@pytest.fixture
def nan_at_step(monkeypatch):
    """Make the loss of the batch at optimizer step N NaN (as a diverging model would)."""
    orig = DiffusionLM.token_nats

    def token_nats(self, backbone, x0, q=None):
        nats = orig(self, backbone, x0, q)
        return nats * math.nan if self.training and self.trainer.global_step == N else nats

    monkeypatch.setattr(DiffusionLM, "token_nats", token_nats)


def test_nonfinite_stop_keeps_last_good_state_then_skip_resumes(straight, cache, tmp_path, nan_at_step):
    with pytest.raises(NonFiniteLossError, match=f"non-finite loss .* at step {N}.*last.ckpt"):
        run(tmp_path, cache)
    saved = load_state(tmp_path / "checkpoints/last.ckpt")
    # The update computed from the NaN batch was never applied: the saved state is exactly the straight run's
    # state after N good steps.
    ref_n = load_state(straight / f"checkpoints/step{N}.ckpt")
    assert_same_state(saved, ref_n, ema=False)
    # Re-run with action=skip: resumes from that state, drops the bad batch, finishes with finite weights.
    metrics = run(tmp_path, cache, ["callbacks.nonfinite.action=skip"])
    assert metrics["global_step"] == 2 * N and math.isfinite(metrics["train/loss"])
    final = load_state(tmp_path / "checkpoints/last.ckpt")
    assert all(torch.isfinite(v).all() for v in final["state_dict"].values())
    assert final["callbacks"]["NonFiniteGuard"]["skipped"] == 1
    assert_same_state(saved, ref_n)


def test_nonfinite_guard_rejects_unknown_action():
    with pytest.raises(ValueError, match="stop' or 'skip"):
        NonFiniteGuard(action="ignore")


def test_atomic_checkpoint_io_roundtrip_permissions_and_stale_temps(tmp_path):
    io, path = AtomicCheckpointIO(), tmp_path / "ckpts" / "last.ckpt"
    (tmp_path / "ckpts").mkdir()
    stale = tmp_path / "ckpts" / ".last.ckpt.abc123.tmp"  # what a killed save leaves behind
    stale.write_bytes(b"partial")
    io.save_checkpoint({"w": torch.arange(5)}, path)
    assert torch.equal(io.load_checkpoint(path)["w"], torch.arange(5))
    assert not stale.exists() and sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]
    assert path.stat().st_mode & 0o044  # group/other readable like any file torch.save would write


# Child process: for each writer, save checkpoint v1, then (in a thread per writer) save v2 through a slow disk
# (1 MiB chunks) that touches `<dir>/marker` after 3 MiB and stalls; the parent then SIGKILLs the process.
# "atomic" = our plugin (temp file beside the target). "lightning_default" = Lightning's TorchCheckpointIO, whose
# fsspec transaction writes a temp file in $TMPDIR and then moves it: with TMPDIR on another filesystem (as on a
# cluster: local /tmp, shared run dir) the move is a copy into the truncated target, and that copy is slowed.
_KILL_MID_SAVE = textwrap.dedent("""
    import io, shutil, sys, threading, time, torch
    from pathlib import Path
    from lightning.pytorch.plugins.io import TorchCheckpointIO
    from seqdiff.reliability import AtomicCheckpointIO
    writers = {"atomic": AtomicCheckpointIO(), "lightning_default": TorchCheckpointIO()}
    dirs = {impl: Path(d) for impl, d in zip(sys.argv[1::2], sys.argv[2::2])}
    for impl, d in dirs.items():
        writers[impl].save_checkpoint({"version": 1, "w": torch.ones(1_000_000)}, d / "last.ckpt")

    def slow_write(f, data, marker):
        data = memoryview(data)
        for i in range(0, len(data), 1 << 20):
            f.write(data[i : i + (1 << 20)])
            f.flush()
            if i >= 3 << 20:
                Path(marker).touch()
                time.sleep(600)

    save = torch.save
    def slow_save(obj, f, *a, **k):  # our plugin torch.saves into the temp file object beside the target
        if isinstance(f, io.BytesIO):  # Lightning's writer serialises to memory first
            return save(obj, f, *a, **k)
        buf = io.BytesIO(); save(obj, buf, *a, **k); slow_write(f, buf.getbuffer(), dirs["atomic"] / "marker")
    def slow_copyfile(src, dst, *, follow_symlinks=True):  # shutil.move across filesystems
        with open(src, "rb") as fs, open(dst, "wb") as fd:
            slow_write(fd, fs.read(), Path(dst).parent / "marker")
        return dst
    torch.save, shutil.copyfile = slow_save, slow_copyfile
    for impl, d in dirs.items():
        threading.Thread(target=writers[impl].save_checkpoint,
                         args=({"version": 2, "w": torch.zeros(2_000_000)}, d / "last.ckpt"), daemon=True).start()
    time.sleep(600)
""")


def test_kill_mid_save_leaves_previous_checkpoint_readable(tmp_path):
    other_fs = Path("/dev/shm")  # Lightning's temp files go here: another filesystem than tmp_path
    contrast = other_fs.is_dir() and other_fs.stat().st_dev != tmp_path.stat().st_dev
    impls = ["atomic"] + (["lightning_default"] if contrast else [])
    args = []
    for impl in impls:
        (tmp_path / impl).mkdir()
        args += [impl, str(tmp_path / impl)]
    shm_before = set(other_fs.iterdir()) if contrast else set()
    proc = subprocess.Popen([sys.executable, "-c", _KILL_MID_SAVE, *args], stderr=subprocess.PIPE, text=True,
                            env=subprocess_env() | ({"TMPDIR": str(other_fs)} if contrast else {}))
    t0 = time.monotonic()
    try:
        while not all((tmp_path / impl / "marker").exists() for impl in impls):
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.monotonic() - t0 < 240, "timed out waiting for the saves to start"
            time.sleep(0.05)
    finally:
        proc.kill()  # SIGKILL, mid-save
        proc.wait()
        for leftover in (set(other_fs.iterdir()) - shm_before) if contrast else ():
            leftover.unlink(missing_ok=True)
    d = tmp_path / "atomic"
    ckpt = AtomicCheckpointIO().load_checkpoint(d / "last.ckpt")
    assert ckpt["version"] == 1 and torch.equal(ckpt["w"], torch.ones(1_000_000))
    assert len(list(d.glob(".last.ckpt.*.tmp"))) == 1  # the half-written v2, removed by the next save
    if contrast:  # the failure the plugin exists for: Lightning's default leaves a truncated last.ckpt
        size = (tmp_path / "lightning_default" / "last.ckpt").stat().st_size
        with pytest.raises(RuntimeError):  # PytorchStreamReader failed reading zip archive
            TorchCheckpointIO().load_checkpoint(tmp_path / "lightning_default" / "last.ckpt")
        print(f"lightning default writer killed mid-copy: last.ckpt truncated to {size} bytes")


def test_config_type_check_accepts_every_shipped_config():
    """No false alarms: every option of every config group (and every experiment) passes check_config_types."""
    from seqdiff.reliability import check_config_types

    configs = Path(__file__).resolve().parents[1] / "configs"
    for group in ("data", "tokenizer", "model", "noise", "objective", "trainer", "experiment"):
        for option in sorted(p.stem for p in (configs / group).glob("*.yaml")):
            check_config_types(compose("train", [f"{group}={option}"], run_dir="/tmp/unused"))


def test_config_type_check_names_the_key():
    from seqdiff.reliability import check_config_types

    with pytest.raises(ValueError, match=r"trainer\.max_steps='abc': expected int, got str"):
        check_config_types(compose("train", ["trainer.max_steps=abc"], run_dir="/tmp/unused"))
    with pytest.raises(ValueError, match=r"callbacks\.nonfinite\.action='ignore': expected one of 'stop', 'skip'"):
        check_config_types(compose("train", ["callbacks.nonfinite.action=ignore"], run_dir="/tmp/unused"))


def test_same_seed_same_samples(straight, tmp_path):
    from seqdiff.sample import sample

    def draw(seed: int, name: str) -> str:
        out = tmp_path / name
        sample(compose("sample", [f"checkpoint={straight / 'checkpoints/last.ckpt'}", f"out={out}", "num_samples=4",
                          "steps=16", f"seed={seed}", "progress=false"]))
        return out.read_text()

    a, b, c = draw(0, "a.fa"), draw(0, "b.fa"), draw(1, "c.fa")
    assert a == b and a.count(">") == 4
    assert a != c
