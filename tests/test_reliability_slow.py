"""Reliability, the real thing: `python scripts/train.py ...` SIGKILLed after its step-N checkpoint, re-run with the
same command and hydra.run.dir, must end where an uninterrupted run ends (same losses, weights, optimizer).

Slow: three interpreter starts. The in-process version is test_reliability.py::test_resume_after_crash_...
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from helpers import ROOT, subprocess_env
from helpers.reliability import kill_when, load_state, tiny_overrides, train_losses

N = 4


def command(run_dir, cache, extra=()):
    over = [o for o in tiny_overrides(run_dir, cache, 2 * N, N) if not o.startswith("run_dir=")]
    return [sys.executable, str(ROOT / "scripts" / "train.py"), *over, f"hydra.run.dir={run_dir}", *extra]


@pytest.mark.slow
def test_sigkill_after_checkpoint_then_same_command_resumes_exactly(tmp_path):
    cache = tmp_path / "cache"
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    env = subprocess_env()
    ref = subprocess.run(command(straight, cache), env=env, capture_output=True, text=True, timeout=900)
    assert ref.returncode == 0, ref.stderr[-3000:]

    # The node "dies" after step N: HangAfterStep blocks once the step-N checkpoint is on disk; we SIGKILL it.
    marker = tmp_path / "hung"
    cmd = command(killed, cache, ["+callbacks.hang._target_=helpers.reliability.HangAfterStep",
                                  f"+callbacks.hang.step={N}", f"+callbacks.hang.marker={marker}"])
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    waited = kill_when(marker, proc)
    assert proc.returncode == -9
    at_kill = load_state(killed / "checkpoints/last.ckpt")
    assert at_kill["global_step"] == N
    print(f"\nSIGKILL after {waited:.1f} s, at step {N}; last.ckpt global_step={at_kill['global_step']}")

    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)  # the very same command
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Restored all states" in again.stderr + again.stdout or "resuming from" in again.stderr + again.stdout

    a, b = train_losses(killed), train_losses(straight)
    assert [a[s] for s in range(N, 2 * N)] == pytest.approx([b[s] for s in range(N, 2 * N)], rel=1e-6, abs=1e-7)
    sa, sb = load_state(killed / "checkpoints/last.ckpt"), load_state(straight / "checkpoints/last.ckpt")
    assert sa["global_step"] == sb["global_step"] == 2 * N
    for k, v in sb["state_dict"].items():
        if not k.startswith("ema."):  # EMA: see EMA_ONE_UPDATE_LATE in test_reliability.py
            torch.testing.assert_close(sa["state_dict"][k], v, atol=1e-6, rtol=0, msg=k)
    assert sa["lr_schedulers"] == sb["lr_schedulers"]
    print(f"final loss straight {b[2 * N - 1]:.6f} vs killed+resumed {a[2 * N - 1]:.6f}")
