"""Downstream genomic classification: tasks, a pooled classifier over any seqdiff denoiser, baselines, protocol.

`python scripts/finetune.py task=splice checkpoint=PATH [freeze=true]`;
`python scripts/benchmark_downstream.py task=splice checkpoint=PATH` (pretrained vs scratch vs k-mer LR vs CNN).
"""

from seqdiff.dna.downstream.classifier import SequenceClassifier
from seqdiff.dna.downstream.encoders import BackboneEncoder, CNNEncoder
from seqdiff.dna.downstream.metrics import classification_metrics, score
from seqdiff.dna.downstream.protocol import CNNMethod, Context, DenoiserMethod, KmerLRMethod, run_seeds
from seqdiff.dna.downstream.tasks import (
    Task,
    genomic_benchmarks_task,
    labeled_task,
    read_labeled,
    splice_task,
)

__all__ = [
    "Task", "splice_task", "genomic_benchmarks_task", "labeled_task", "read_labeled", "SequenceClassifier",
    "BackboneEncoder", "CNNEncoder", "classification_metrics", "score", "Context", "DenoiserMethod", "CNNMethod",
    "KmerLRMethod", "run_seeds",
]
