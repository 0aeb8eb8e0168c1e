"""`profile_step(cfg)`: where one training step's time goes (scripts/profile_step.py).

Builds the configured model and data exactly as `scripts/train.py` does (same config, same overrides) and times
the training step outside the Trainer: loss (forward), backward, gradient clipping, AdamW, EMA - once per
precision in `precisions`. Then `torch.profiler` over a few steps gives the operator table (self CPU time).
For a `Transformer`, also the model FLOP utilisation: training matmul FLOPs per step (`seqdiff.benchmarks.flops`)
per second of step, over the measured square-GEMM peak of the precision used and over the best peak of any
precision (bf16 where the machine has it).
Writes `<out>.json` (step times, tokens/s, MFU, top operators) and `<out>.md` (the tables).
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from seqdiff.backbones.transformer import Transformer
from seqdiff.benchmarks.flops import TransformerShape, measure_matmul_throughput, transformer_train_flops
from seqdiff.io import atomic_write
from seqdiff.train import build_backbone, build_module, fit_ngram_prior

log = logging.getLogger("seqdiff.profile_step")
AUTOCAST = {"fp32": None, "bf16": torch.bfloat16}


def _step_fn(module, opt, dtype: torch.dtype | None, clip: float):
    backbone = module.backbone
    params = list(backbone.parameters())

    def step(batch: dict) -> None:
        with torch.autocast("cpu", dtype=dtype) if dtype is not None else nullcontext():
            loss, _ = module._mean_nats(backbone, batch["x0"], batch.get("q"))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if module.ema is not None:
            with torch.no_grad():
                torch._foreach_lerp_(list(module.ema.parameters()), [p.detach() for p in params],
                                     1.0 - module.ema_decay)

    return step


def profile_step(cfg: DictConfig) -> dict:
    from hydra import compose

    torch.manual_seed(int(cfg.seed))
    tcfg = compose("train", overrides=[*cfg.overrides, "run_dir=."])  # exactly what scripts/train.py builds
    tokenizer = instantiate(tcfg.tokenizer)
    dm = instantiate(tcfg.data, tokenizer=tokenizer)
    dm.setup("fit")
    backbone, _ = build_backbone(tcfg.model, tokenizer, dm.window, dm)
    fit_ngram_prior(backbone, tokenizer, dm, resumed=False)
    module = build_module(tcfg, backbone, tokenizer)
    module.train()
    loader = iter(dm.train_dataloader())
    batches = [next(loader) for _ in range(int(cfg.warmup) + int(cfg.steps))]
    tokens = batches[0]["x0"].numel()
    t0 = time.perf_counter()
    for _ in range(int(cfg.steps)):
        next(loader)
    data_seconds = (time.perf_counter() - t0) / int(cfg.steps)
    result: dict = {"tokens_per_step": tokens, "data_seconds_per_step": data_seconds, "precisions": {}}
    step_flops, peaks = None, {}
    if isinstance(backbone, Transformer):
        step_flops = transformer_train_flops(TransformerShape.of(backbone), *batches[0]["x0"].shape)
        peaks = {name: measure_matmul_throughput(AUTOCAST[name] or torch.float32,
                                                     seconds=float(cfg.get("peak_seconds", 2.0))).flops_per_second
                 for name in ("fp32", "bf16")}
        result.update(model_flops_per_step=step_flops, matmul_peak_flops_per_second=peaks)
    md = []
    for name in cfg.precisions:
        opt = torch.optim.AdamW(backbone.parameters(), lr=1e-4)
        step = _step_fn(module, opt, AUTOCAST[name], float(tcfg.trainer.get("gradient_clip_val") or 1e9))
        for b in batches[: int(cfg.warmup)]:
            step(b)
        t0 = time.perf_counter()
        for b in batches[int(cfg.warmup):]:
            step(b)
        sec = (time.perf_counter() - t0) / int(cfg.steps)
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for b in batches[int(cfg.warmup): int(cfg.warmup) + int(cfg.profiled_steps)]:
                step(b)
        avg = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in avg) or 1.0
        top = sorted(avg, key=lambda e: e.self_cpu_time_total, reverse=True)[: int(cfg.top)]
        ops = [{"op": e.key, "self_percent": 100.0 * e.self_cpu_time_total / total, "calls": e.count}
               for e in top]
        result["precisions"][name] = {"seconds_per_step": sec, "tokens_per_second": tokens / sec, "top_ops": ops}
        mfu = ""
        if step_flops is not None:
            own, best = step_flops / sec / peaks[name], step_flops / sec / max(peaks.values())
            result["precisions"][name].update(mfu_own_peak=own, mfu_best_peak=best)
            mfu = (f"; {step_flops / sec / 1e12:.3f} TFLOP/s of model matmuls = MFU {100 * own:.1f}% of the "
                   f"{name} peak ({peaks[name] / 1e12:.2f} TFLOP/s), {100 * best:.1f}% of the best peak")
        md += [f"### {name}: {sec * 1000:.0f} ms/step, {tokens / sec:,.0f} tokens/s{mfu}", "",
               "| operator | self CPU % | calls |", "|---|---|---|"]
        md += [f"| `{o['op'][:60]}` | {o['self_percent']:.1f} | {o['calls']} |" for o in ops] + [""]
        log.info("%s: %.0f ms/step, %.0f tokens/s", name, sec * 1000, tokens / sec)
    md.append(f"Data loading (num_workers={dm.num_workers}): {data_seconds * 1000:.1f} ms per batch.")
    out = Path(cfg.out)
    with atomic_write(out.with_suffix(".json")) as f:
        f.write(json.dumps(result, indent=1) + "\n")
    with atomic_write(out.with_suffix(".md")) as f:
        f.write("\n".join(md) + "\n")
    print("\n".join(md))
    return result
