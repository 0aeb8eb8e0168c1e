"""`benchmark_design(cfg)` (scripts/benchmark_design.py, configs/benchmark_design.yaml): constrained design.

k-mer JS divergence to held-out DNA for unconstrained vs constrained samples vs a dinucleotide-shuffled
baseline, and wall time per sequence for each sampler. Writes JSON:

    python scripts/benchmark_design.py checkpoint=PATH [num_samples=64 length=1000 steps=128 out=FILE.json]
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from seqdiff.checkpoint import load
from seqdiff.dna import metrics as ev
from seqdiff.dna.spec import Design, load_jaspar_motif
from seqdiff.evaluation.likelihood import nelbo_bits_per_base
from seqdiff.io import atomic_write
from seqdiff.sampling import sample


def benchmark_design(cfg: DictConfig) -> dict:
    model = load(cfg.checkpoint)
    tok, L, n, bs = model.tokenizer, int(cfg.length), int(cfg.num_samples), int(cfg.batch_size)
    rng = np.random.default_rng(int(cfg.seed))
    dm = model.datamodule()
    reference = ev.real_windows(dm.split_arrays("test"), L, int(cfg.reference_windows), rng)  # test split
    real = ev.real_windows(dm.split_arrays("valid"), L, n + 1, rng)  # valid split, same size as a sample set
    source, real = real[0], real[1:]
    motif = load_jaspar_motif(str(cfg.motif))
    compiled = (Design(L).flanks(source[: cfg.flank], source[-cfg.flank :])
                .motif(str(cfg.motif), L // 2 - motif.length // 2, str(cfg.motif_strand)).compile())
    constraints = compiled.constraints(tok)
    # "Unconstrained" = no positional constraint, but bases only: a bare `sample` may also emit N or special
    # tokens (pad, bos, ...), which a barely trained model does, and which are not DNA to compare.
    bases_only = Design(L).compile().constraints(tok)

    sets: dict[str, list[str]] = {"real_heldout": real, "dinucleotide_shuffle": ev.shuffled_baseline(real, rng),
                                  "dinucleotide_shuffle_constrained": ev.shuffled_baseline(real, rng, compiled)}
    # Generated sets are saved as they finish and reused on a re-run with the same settings, so a crash (or a
    # killed process) during scoring does not cost the sampling again.
    cache_path = Path(cfg.samples_cache or f"{cfg.out}.samples.json")
    key_cfg = {k: OmegaConf.to_container(cfg, resolve=True)[k] for k in
               ("checkpoint", "length", "num_samples", "batch_size", "steps", "flank", "motif", "motif_strand",
                "samplers", "seed")}
    saved = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    saved = saved if saved.get("settings") == key_cfg else {"settings": key_cfg, "sets": {}, "timing": {}}
    timing: dict[str, dict] = saved["timing"]
    for name, spec in cfg.samplers.items():
        for which in spec.sets:
            if f"{name}_{which}" in saved["sets"]:
                sets[f"{name}_{which}"] = saved["sets"][f"{name}_{which}"]
                continue
            if which not in ("unconstrained", "constrained"):
                raise ValueError(f"samplers.{name}.sets: expected unconstrained | constrained, got {which!r}")
            constrained = which == "constrained"
            sampler = instantiate(spec.sampler, schedule=model.schedule)
            g = torch.Generator().manual_seed(int(cfg.seed))
            seqs, nfe, t0 = [], 0, time.perf_counter()
            for a in range(0, n, bs):
                out = sample(model.backbone, tok.mask_id, min(bs, n - a), L, sampler,
                             constraints=constraints if constrained else bases_only, generator=g,
                             cache=bool(spec.cache))
                seqs += [tok.decode(x) for x in out.tokens]
                nfe += out.nfe
            sec = time.perf_counter() - t0
            key = f"{name}_{which}"
            sets[key] = saved["sets"][key] = seqs
            timing[key] = {"seconds_per_sequence": sec / n, "network_calls_per_batch": nfe / -(-n // bs),
                           "batch_size": bs}
            with atomic_write(cache_path) as f:
                f.write(json.dumps(saved) + "\n")
            print(f"{key}: {sec / n:.2f} s/sequence, {nfe} network calls", flush=True)

    results = {name: ev.summarize(seqs, reference, compiled=compiled, motifs=[motif]) for name, seqs in sets.items()}
    for name, seqs in sets.items():
        x = torch.tensor([tok.encode(s) for s in seqs])
        bits = nelbo_bits_per_base(model.backbone, x, model.schedule, tok.mask_id, tok.pad_id,
                                   int(getattr(tok, "bases_per_token", 1)), int(cfg.nelbo_samples),
                                   torch.Generator().manual_seed(0))
        results[name]["nelbo_bits_per_base"] = float(bits.mean())
    if cfg.memorisation:  # one streaming pass over the whole training split for every set at once
        names = list(sets)
        nn = ev.nearest_neighbour_identity([s for k in names for s in sets[k]], dm.split_arrays("train"))
        for i, k in enumerate(names):
            part = nn[i * n : (i + 1) * n]
            results[k].update({"nn_identity_max": float(np.nanmax(part)) if np.isfinite(part).any() else None,
                               "nn_identity_ge_0.9": float(np.mean(np.nan_to_num(part) >= 0.9))})
    out = {"config": OmegaConf.to_container(cfg, resolve=True), "design_template": compiled.template,
           "timing": timing, "sets": results,
           "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                       "load_average": os.getloadavg(), "platform": platform.platform()}}
    with atomic_write(cfg.out) as f:
        f.write(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: {m: round(v, 4) for m, v in r.items() if m.startswith("js_k")} for k, r in results.items()}))
    return out
