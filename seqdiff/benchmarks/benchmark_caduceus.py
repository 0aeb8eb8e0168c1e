"""`benchmark_caduceus(cfg)` (scripts/benchmark_caduceus.py, configs/benchmark_caduceus.yaml): the Caduceus
backbones on CPU: selective-scan variants, model throughput/memory, bits/base.

    python scripts/benchmark_caduceus.py                        # scans + models, writes benchmarks/caduceus.json
    python scripts/benchmark_caduceus.py parts=[scan] scans=[fused,unbind]
    python scripts/benchmark_caduceus.py parts=[train] train_steps=300   # equal-budget bits/base on chr20

Every measurement runs in its own subprocess (`python -m seqdiff.benchmarks.benchmark_caduceus SPEC`) so that
its peak RSS (memory per token) is its own.
- scan:   forward+backward tokens/s of each `selective_scan` implementation, B=8, L=1024, D=128, N=16.
- models: forward+backward tokens/s and peak memory per token of BiMamba, Caduceus-PS and the Transformer
          at about equal parameter count, L=1024 (B=8) and L=4096 (B=2).
- train:  `scripts/train.py model=... trainer.max_steps=N` for each model, same data/steps/batch; held-out
          bits/base from each run's metrics.json.
Results merge into the JSON file (parts not run keep their previous entries).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

from omegaconf import DictConfig

from seqdiff.io import write_text

ROOT = Path(__file__).resolve().parents[2]
V = 10  # char DNA vocabulary
COMPLEMENT = [3, 2, 1, 0, 4, 5, 6, 7, 8, 9]

# About equal parameter counts (~1.1M): Caduceus-PS d_model counts both strands (a 128-wide shared trunk).
MODELS = {
    "transformer": ("seqdiff.backbones.transformer.Transformer", dict(d_model=128, n_layers=4, n_heads=4)),
    "bimamba": ("seqdiff.backbones.caduceus.BiMamba", dict(d_model=128, n_layers=8)),
    "caduceus_ps": ("seqdiff.backbones.caduceus.CaduceusPS", dict(d_model=256, n_layers=8, complement_ids=COMPLEMENT)),
}


def _maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _time_fwd_bwd(step, reps: int) -> tuple[float, float]:
    """Run step() once (warm-up, also sets the peak memory) then `reps` times; returns (first, best) seconds."""
    t0 = time.perf_counter()
    step()
    first = time.perf_counter() - t0
    best = first
    for _ in range(reps):
        t0 = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - t0)
    return first, best


def worker_scan(impl: str, B: int, L: int, D: int, N: int, reps: int) -> dict:
    import torch

    from seqdiff.backbones.mamba import selective_scan
    from seqdiff.device import rand, randn

    g = torch.Generator().manual_seed(0)
    u = randn((B, D, L), g).requires_grad_()
    delta = (rand((B, D, L), g) * 0.1).requires_grad_()
    A = (-torch.arange(1, N + 1, dtype=torch.float32).repeat(D, 1)).requires_grad_()
    Bm = randn((B, 1, N, L), g).requires_grad_()
    Cm = randn((B, 1, N, L), g).requires_grad_()
    rss0 = _maxrss_bytes()

    def step():
        selective_scan(u, delta, A, Bm, Cm, impl=impl).sum().backward()

    first, best = _time_fwd_bwd(step, reps)
    return {"impl": impl, "B": B, "L": L, "D": D, "N": N, "seconds": best, "first_seconds": first,
            "tokens_per_s": B * L / best, "peak_bytes_per_token": (_maxrss_bytes() - rss0) / (B * L)}


def worker_model(name: str, B: int, L: int, reps: int) -> dict:
    import torch
    from hydra.utils import get_class

    from seqdiff.device import randint

    target, kwargs = MODELS[name]
    model = get_class(target)(vocab_size=V, max_len=L, **kwargs)
    x = randint(4, (B, L), torch.Generator().manual_seed(0))
    t = torch.rand(B)
    rss0 = _maxrss_bytes()

    def step():
        model.zero_grad(set_to_none=True)
        model(x, t).logsumexp(-1).mean().backward()

    first, best = _time_fwd_bwd(step, reps)
    return {"model": name, "parameters": sum(p.numel() for p in model.parameters()), "B": B, "L": L,
            "seconds": best, "first_seconds": first, "tokens_per_s": B * L / best,
            "peak_bytes_per_token": (_maxrss_bytes() - rss0) / (B * L)}


def run_worker(kind: str, **kwargs) -> dict:
    """Run one measurement in a fresh interpreter; returns its JSON result (or the error)."""
    cmd = [sys.executable, "-m", "seqdiff.benchmarks.benchmark_caduceus", json.dumps({"kind": kind, **kwargs})]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode:
        return {**kwargs, "error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["peak_kib_per_token"] = result["peak_bytes_per_token"] / 1024
    return result


def run_train(name: str, steps: int, extra: list[str]) -> dict:
    run_dir = ROOT / "outputs" / "benchmark_caduceus" / f"{name}_{steps}"
    cmd = [sys.executable, str(ROOT / "scripts" / "train.py"), f"model={name}", f"trainer.max_steps={steps}",
           f"run_dir={run_dir}", "resume=false", *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    metrics_file = run_dir / "metrics.json"
    if proc.returncode or not metrics_file.is_file():
        return {"model": name, "command": " ".join(cmd[1:]), "error": (proc.stderr or "").strip()[-500:]}
    metrics = json.loads(metrics_file.read_text())
    return {"model": name, "command": "python " + " ".join(str(c) for c in cmd[1:]), "wall_seconds": wall,
            "metrics": metrics}


def fmt_table(rows: list[dict], cols: list[tuple[str, str, str]]) -> str:
    head = " | ".join(h for h, _, _ in cols)
    lines = [f"| {head} |", "|" + "|".join("---" for _ in cols) + "|"]
    for r in rows:
        cells = []
        for _, key, f in cols:
            v = r.get(key)
            cells.append("error: " + r["error"][:60] if v is None and "error" in r and key == cols[-1][1]
                         else ("-" if v is None else format(v, f)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


PARTS = ("scan", "models", "train")


def benchmark_caduceus(cfg: DictConfig) -> dict:
    unknown = [p for p in cfg.parts if p not in PARTS] + [m for m in cfg.models if m not in MODELS]
    if unknown:
        raise ValueError(f"unknown part(s)/model(s) {unknown}: parts are {list(PARTS)}, models {list(MODELS)}")
    import torch

    out_path = Path(cfg.out)
    out = json.loads(out_path.read_text()) if out_path.is_file() else {}
    out["machine"] = {"processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                      "torch": torch.__version__, "threads": torch.get_num_threads(),
                      "load_average_at_start": os.getloadavg()[0]}
    command = "python scripts/benchmark_caduceus.py " + " ".join(sys.argv[1:])
    out.setdefault("commands", {}).update({part: command for part in cfg.parts})  # what produced each part
    if "scan" in cfg.parts:
        rows = []
        for impl in cfg.scans:
            reps = 0 if impl == "naive" else cfg.reps  # the naive scan takes about a minute: time it once
            rows.append(run_worker("scan", impl=impl, B=8, L=1024, D=128, N=16, reps=reps))
            print(f"scan {impl}: {rows[-1].get('seconds', rows[-1].get('error'))}", file=sys.stderr)
        out["scan"] = rows
        print("\nSelective scan, forward+backward, B=8 L=1024 D=128 N=16 (fp32)")
        print(fmt_table(rows, [("impl", "impl", "s"), ("seconds", "seconds", ".3f"),
                               ("tokens/s", "tokens_per_s", ",.0f"), ("KiB/token", "peak_kib_per_token", ".1f")]))
    if "models" in cfg.parts:
        rows = []
        for L in cfg.lengths:
            for name in cfg.models:
                rows.append(run_worker("model", name=name, B=max(1, cfg.tokens // L), L=L, reps=cfg.reps))
                print(f"model {name} L={L}: {rows[-1].get('seconds', rows[-1].get('error'))}", file=sys.stderr)
        out["models"] = rows
        print("\nBackbones, forward+backward (fp32), peak RSS growth per token")
        print(fmt_table(rows, [("model", "model", "s"), ("params", "parameters", ","), ("L", "L", "d"), ("B", "B", "d"),
                               ("seconds", "seconds", ".3f"), ("tokens/s", "tokens_per_s", ",.0f"),
                               ("KiB/token", "peak_kib_per_token", ".1f")]))
    if "train" in cfg.parts:
        rows = [run_train(name, cfg.train_steps, list(cfg.train_args)) for name in cfg.models]
        out["train"] = rows
        print(f"\nEqual training budget: {cfg.train_steps} steps")
        for r in rows:
            m = r.get("metrics", {})
            keys = {k: v for k, v in m.items() if "bpb" in k or "bits" in k or k in ("parameters", "fit_seconds")}
            print(f"{r['model']}: {keys or r.get('error')}")
    write_text(out_path, json.dumps(out, indent=2) + "\n")
    print(f"\nwrote {out_path}")
    return out


if __name__ == "__main__":  # one measurement in a fresh interpreter (run_worker): print its JSON result
    spec = json.loads(sys.argv[1])
    kind = spec.pop("kind")
    print(json.dumps(worker_scan(**spec) if kind == "scan" else worker_model(**spec)))
