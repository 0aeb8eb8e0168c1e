"""Reliability of distributed training: Lightning DDP on CPU (gloo), sharding of training windows across ranks and
DataLoader workers, and the resume offset under DDP.

The fast tests check the sharding itself (the same DistributedSamplerWrapper Lightning puts around the
datamodule's EpochSampler); the slow test runs `scripts/train.py trainer=ddp_cpu` as 2 real processes.
"""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict

import pytest
import torch
from lightning.fabric.utilities.distributed import DistributedSamplerWrapper

from seqdiff.dna.datamodule import GenomeDataModule
from seqdiff.dna.tokenizer import NucleotideTokenizer
from seqdiff.dna.windows import EpochSampler

from helpers import CHR20, CHR20_BED, ROOT, subprocess_env
from helpers.reliability import tiny_overrides


def shard(sampler, world: int) -> dict[int, list[int]]:
    return {r: list(DistributedSamplerWrapper(sampler, num_replicas=world, rank=r, shuffle=False))
            for r in range(world)}


@pytest.mark.parametrize("world", [2, 4])
def test_ranks_get_disjoint_windows_and_resume_continues_each_rank(world):
    n, batch, done = 96, 4, 3  # windows per epoch, per-rank batch, batches each rank finished before the kill
    straight = shard(EpochSampler(n), world)
    seen = [i for r in straight for i in straight[r]]
    assert sorted(seen) == list(range(n))  # every window once, on exactly one rank
    # Resumed after `done` batches per rank: each rank continues with exactly its own next windows.
    resumed = shard(EpochSampler(n, epoch=0, skip=done * batch * world), world)
    for r in range(world):
        left = len(straight[r]) - done * batch
        assert resumed[r][:left] == straight[r][done * batch :]
    # The shift applies to the resumed epoch only.
    s = EpochSampler(n, epoch=0, skip=done * batch * world)
    s.set_epoch(1)
    assert list(s) == list(range(n, 2 * n))


def test_dataloader_workers_do_not_duplicate_windows(tmp_path):
    dm = GenomeDataModule(NucleotideTokenizer(), genome=None, fasta=CHR20, bed=CHR20_BED, cache_dir=tmp_path, window=64,
                          batch_size=4, train_windows_per_epoch=32, num_workers=0)
    serial = torch.cat([b["x0"] for b in dm.train_dataloader()])
    dm.num_workers = 2
    parallel = torch.cat([b["x0"] for b in dm.train_dataloader()])
    assert torch.equal(serial, parallel)  # same windows, same order, none twice
    assert len({tuple(x.tolist()) for x in serial}) == len(serial)


@pytest.mark.slow
def test_ddp_cpu_two_ranks_see_different_data_and_loss_falls(tmp_path):
    steps, batch = 40, 8
    over = tiny_overrides(tmp_path / "run", tmp_path / "cache", steps, steps)
    over = [o for o in over if not o.startswith("run_dir=")] + [
        "trainer=ddp_cpu", f"hydra.run.dir={tmp_path / 'run'}", f"data.batch_size={batch}", "objective.warmup_steps=2",
        "objective.lr=4e-3",
        "+callbacks.probe._target_=helpers.reliability.BatchProbe", f"+callbacks.probe.out={tmp_path / 'probe'}",
    ]
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), *over], cwd=tmp_path,
                          env=subprocess_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows: dict[int, list[tuple[int, float, str]]] = defaultdict(list)
    for r in (0, 1):
        for line in (tmp_path / "probe" / f"rank{r}.tsv").read_text().splitlines():
            step, loss, window = line.split("\t")
            rows[r].append((int(step), float(loss), window))
    assert len(rows[0]) == len(rows[1]) == steps * batch
    w0, w1 = {w for *_, w in rows[0]}, {w for *_, w in rows[1]}
    assert not w0 & w1, "a window was trained on by both ranks"
    # The loss of the global batch (mean over the two ranks) falls: first 10 steps vs last 10.
    per_rank = [[loss for _, loss, _ in rows[r][::batch]] for r in (0, 1)]
    glob = [(a + b) / 2 for a, b in zip(*per_rank, strict=True)]
    first, last = sum(glob[:10]) / 10, sum(glob[-10:]) / 10
    print(f"\nDDP 2x CPU: mean loss steps 1-10 {first:.3f} -> steps {steps - 9}-{steps} {last:.3f}")
    assert last < first - 0.05, glob
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file() and (tmp_path / "run" / "metrics.json").is_file()
