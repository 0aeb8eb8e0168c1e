"""`sample(cfg)`: sample sequences from a checkpoint and write them as FASTA (scripts/sample.py)."""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

from Bio.Seq import Seq
from Bio.SeqIO import write as write_fasta
from Bio.SeqRecord import SeqRecord
from omegaconf import DictConfig

import seqdiff
from seqdiff import sampling
from seqdiff.device import make_generator, resolve_device
from seqdiff.io import atomic_write
from seqdiff.precision import with_precision
from seqdiff.sampling.families import FamilySampler

log = logging.getLogger("seqdiff.sample")


def sample(cfg: DictConfig) -> dict:
    device = resolve_device(cfg.device)
    model = seqdiff.load(cfg.checkpoint, device=device)
    if model.objective not in ("mdlm", "family"):
        raise ValueError(f"{cfg.checkpoint} is an '{model.objective}' model; scripts/sample.py samples "
                         "diffusion models")
    tok = model.tokenizer
    backbone = with_precision(model.backbone, str(cfg.precision))
    bpt = getattr(tok, "bases_per_token", 1)
    length = int(cfg.length) if cfg.length is not None else model.window * bpt
    if length <= 0 or cfg.num_samples <= 0:
        raise ValueError(f"length and num_samples must be positive, got length={length}, num_samples={cfg.num_samples}")
    n_tokens = math.ceil(length / bpt)
    # MDLM: the ancestral sampler; other families (uniform noise, SEDD): their own reverse step
    sampler = sampling.AncestralSampler(model.schedule, num_steps=int(cfg.steps)) if model.family is None \
        else FamilySampler(model.family, num_steps=int(cfg.steps))
    g = make_generator(int(cfg.seed), device)  # on the model's device: every draw happens there
    records, nfe, t0 = [], 0, time.perf_counter()
    for start in range(0, cfg.num_samples, cfg.batch_size):
        b = min(cfg.batch_size, cfg.num_samples - start)
        out = sampling.sample(backbone, tok.mask_id, b, n_tokens, sampler, generator=g, cache=bool(cfg.cache),
                              constraints=sampling.no_special_tokens(tok, n_tokens, model.backbone.vocab_size),
                              stride=cfg.stride, progress=bool(cfg.progress))
        nfe += out.nfe
        for j, ids in enumerate(out.tokens.tolist()):
            seq = tok.decode(ids)[:length]
            i = start + j
            records.append(SeqRecord(Seq(seq), id=f"seqdiff_{i}",
                                     description=f"length={len(seq)} steps={cfg.steps} seed={cfg.seed}"))
    seconds = time.perf_counter() - t0
    with atomic_write(cfg.out) as f:
        write_fasta(records, f, "fasta")
    summary = {"out": str(Path(cfg.out).resolve()), "num_samples": len(records), "length": length,
               "network_calls": nfe, "seconds": round(seconds, 3), "checkpoint": str(cfg.checkpoint),
               "precision": "bf16" if backbone is not model.backbone else "fp32"}
    print(json.dumps(summary))
    return summary
