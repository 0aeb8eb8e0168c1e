"""`design(cfg)`: constrained sequence design from a checkpoint -> FASTA + TSV (scripts/design.py).

Every constraint is compiled (and every contradiction reported) before the model is even loaded; the FASTA
and the TSV are both written atomically, and only once every sequence is designed and checked.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from Bio.Seq import Seq
from Bio.SeqIO import write as write_fasta
from Bio.SeqRecord import SeqRecord
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from seqdiff.checkpoint import load as load_model
from seqdiff.device import make_generator, resolve_device
from seqdiff.diffusion.families import family_of
from seqdiff.dna.metrics import gc_content
from seqdiff.dna.spec import CompiledDesign, design_from_options
from seqdiff.evaluation.likelihood import nelbo_bits_per_base
from seqdiff.io import atomic_write
from seqdiff.precision import with_precision
from seqdiff.sampling import AncestralSampler, sample
from seqdiff.sampling.families import FamilySampler
from seqdiff.sampling.guidance import check_interval


def compile_design(cfg: DictConfig, generator: torch.Generator | None = None) -> CompiledDesign:
    fixed = OmegaConf.to_container(cfg.fixed) if cfg.fixed else {}
    spec = design_from_options(cfg.length, cfg.template, (cfg.left_flank or "", cfg.right_flank or ""),
                               fixed, cfg.motif, cfg.motif_position, str(cfg.motif_strand), str(cfg.motif_mode),
                               generator, str(cfg.jaspar_release))
    return spec.compile()


def design(cfg: DictConfig) -> dict:
    if int(cfg.num_samples) <= 0 or int(cfg.batch_size) <= 0:
        raise ValueError(f"num_samples and batch_size must be positive, got {cfg.num_samples}, {cfg.batch_size}")
    device = resolve_device(cfg.device)
    g = make_generator(int(cfg.seed), device)  # on the model's device: every draw happens there
    first = compile_design(cfg, g)  # every contradiction surfaces here, before loading the model
    model = load_model(cfg.checkpoint, device=device)
    if model.objective not in ("mdlm", "family"):
        raise ValueError(f"{cfg.checkpoint} is an '{model.objective}' model; design needs a diffusion model")
    tok = model.tokenizer
    bpt = int(getattr(tok, "bases_per_token", 1))
    if not hasattr(tok, "complement_ids"):
        raise ValueError(f"{cfg.checkpoint} was not trained on DNA (tokenizer {tok!r})")
    first.constraints(tok)  # the tokenizer can express the design (k-mer models need length % k == 0)
    sampler = design_sampler(cfg, model)
    backbone = with_precision(model.backbone, str(cfg.precision))
    resample_motif = cfg.motif is not None and cfg.motif_mode == "sample"

    records, rows, nfe, t0 = [], [], 0, time.perf_counter()
    n, bs = int(cfg.num_samples), int(cfg.batch_size)
    for start in range(0, n, bs):
        b = min(bs, n - start)
        # A sampled motif gets a fresh PWM draw per sequence, so those sequences are designed one at a time.
        groups = [[first if start + j == 0 else compile_design(cfg, g)] for j in range(b)] if resample_motif \
            else [[first] * b]
        for group in groups:
            compiled = group[0]
            out = sample(backbone, tok.mask_id, len(group), compiled.length // bpt, sampler,
                         constraints=compiled.constraints(tok), generator=g, cache=bool(cfg.cache),
                         stride=cfg.stride, progress=bool(cfg.progress))
            nfe += out.nfe
            bits = nelbo_bits_per_base(backbone, out.tokens, model.schedule, tok.mask_id, tok.pad_id, bpt,
                                       int(cfg.nelbo_samples), g, model.family)
            for ids, bpb in zip(out.tokens, bits.tolist(), strict=True):
                rows.append(_row(len(rows), tok.decode(ids), compiled, bpb))
    seconds = time.perf_counter() - t0

    for r in rows:
        desc = " ".join(f"{k}={r[k]}" for k in ("length", "bits_per_base", "constraints", "gc", "motif") if r[k])
        records.append(SeqRecord(Seq(r.pop("sequence")), id=r["id"], description=desc))
    out_path = Path(cfg.out)
    tsv_path = Path(cfg.summary) if cfg.summary else out_path.with_suffix(".tsv")
    with atomic_write(out_path) as fa, atomic_write(tsv_path) as tsv:  # neither appears unless both are written
        write_fasta(records, fa, "fasta")
        cols = list(rows[0])
        tsv.write("\t".join(cols) + "\n")
        tsv.writelines("\t".join(str(r[c]) for c in cols) + "\n" for r in rows)
    summary = {"out": str(out_path.resolve()), "summary": str(tsv_path.resolve()), "num_samples": len(rows),
               "length": first.length, "template": first.template if len(first.template) <= 120 else None,
               "satisfied": sum(r["constraints"] == "ok" for r in rows) / len(rows),
               "mean_bits_per_base": sum(r["bits_per_base"] for r in rows) / len(rows),
               "network_calls": nfe, "seconds": round(seconds, 3),
               "precision": "bf16" if backbone is not model.backbone else "fp32",
               "sampler": OmegaConf.to_container(cfg.sampler)["_target_"], "checkpoint": str(cfg.checkpoint),
               "guide": None if cfg.get("guide") is None else OmegaConf.to_container(cfg.guide)["_target_"],
               "class": cfg["class"],
               "guidance_scale": float(cfg.guidance_scale) if cfg.get("guide") is not None else None,
               "guidance_interval": list(check_interval(cfg.get("guidance_interval"))) if cfg.get("guide") else None}
    print(json.dumps(summary))
    return summary


def design_sampler(cfg: DictConfig, model):
    """MDLM without guidance: cfg.sampler as configured. Other families (uniform noise, SEDD) and guided design:
    the family's own reverse step (`FamilySampler`) with cfg.sampler.num_steps and the guide."""
    # `guide: null` in the defaults list leaves no `guide` key at all, hence cfg.get
    configured = instantiate(cfg.sampler, schedule=model.schedule)
    if model.family is None and cfg.get("guide") is None:
        return configured
    if not isinstance(configured, AncestralSampler):
        raise ValueError(f"sampler={cfg.sampler['_target_']} works only for unguided MDLM checkpoints; guided or "
                         "non-MDLM design uses sampler=ancestral (the family's own reverse step)")
    guide = None
    if cfg.get("guide") is not None:
        if cfg["class"] is None:
            raise ValueError("guide=... needs class=NAME (the class to design for)")
        # a partial, so the loaded model is passed as is (instantiate would try to turn dataclasses into configs)
        guide = instantiate(cfg.guide, _partial_=True)(denoiser=model, class_name=cfg["class"],
                                                       scale=float(cfg.guidance_scale),
                                                       interval=cfg.get("guidance_interval"))
    return FamilySampler(family_of(model), num_steps=configured.num_steps, guide=guide)


def _row(i: int, seq: str, compiled: CompiledDesign, bits_per_base: float) -> dict:
    bad = compiled.violations(seq)
    motif = ",".join(f"{m.matrix_id}:{m.start}:{m.strand}:{m.sequence}" for m in compiled.motifs)
    return {"id": f"design_{i}", "length": len(seq), "bits_per_base": round(bits_per_base, 4),
            "constraints": "ok" if not bad else f"violated@{bad[:5]}", "gc": round(float(gc_content([seq])[0]), 4),
            "motif": motif, "sequence": seq}
