"""Goals and the RESULTS.md rendering of a benchmark results dict (see seqdiff.benchmarks.benchmark)."""

from __future__ import annotations

import math


def _primary_k(gen: dict) -> int:
    return gen["goal_k"]


def _b16(row: dict, batch: int) -> dict | None:
    return next((t for t in row["timings"] if t["batch"] == batch), None)


def _cost(t: dict) -> float:
    """The time a goal compares: CPU seconds (robust to other jobs on a shared machine) when recorded."""
    return t.get("cpu_seconds", t["seconds"])


def goals(res: dict) -> dict:
    """The benchmark's three goals (NELBO within 2% of AR, diffusion as fast as AR with a KV cache at equal
    k-mer JS, MFU >= 50%), each with its measured value and whether it is met."""
    lik, gen, tr = res["likelihood"], res["generation"], res["training"]
    k, big = _primary_k(gen), max(gen["batch_sizes"])
    ar_row = next(r for r in gen["rows"] if r["name"].startswith("AR"))
    ar_sec, ar_js = _cost(_b16(ar_row, big)), ar_row["js"][str(k)] if str(k) in ar_row["js"] else ar_row["js"][k]
    diff = [r for r in gen["rows"] if r is not ar_row and _b16(r, big)]

    def js(r: dict) -> float:
        return r["js"][k] if k in r["js"] else r["js"][str(k)]

    as_good = [r for r in diff if js(r) <= ar_js]
    best = min(as_good, key=lambda r: _cost(_b16(r, big))) if as_good else None
    fastest = min(diff, key=lambda r: _cost(_b16(r, big))) if diff else None
    mfu = tr["models"]["mdlm"]["mfu"]
    return {
        "likelihood_within_2pct": {"mdlm_over_ar": lik["mdlm_over_ar"], "met": lik["mdlm_over_ar"] <= 0.02},
        "diffusion_as_fast_as_ar_kv": {
            "batch": big, "k": k, "ar_seconds": ar_sec, "ar_js": ar_js,
            "best_at_equal_js": None if best is None else
            {"name": best["name"], "steps": best["steps"], "seconds": _cost(_b16(best, big)), "js": js(best)},
            "fastest_diffusion": None if fastest is None else
            {"name": fastest["name"], "steps": fastest["steps"], "seconds": _cost(_b16(fastest, big)),
             "js": js(fastest)},
            "met": best is not None and _cost(_b16(best, big)) <= ar_sec,
        },
        # model FLOP/s >= 40% of the bf16 matmul peak where bf16 is used (else of the fp32 peak)
        "mfu_at_least_40pct_of_ceiling": {"mfu": mfu, "precision": tr["precision"], "met": mfu >= 0.4},
    }


def _f(x: float | None, fmt: str = ".3f") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def render(res: dict) -> str:
    lik, gen, tr, b, m = res["likelihood"], res["generation"], res["training"], res["budget"], res["model"]
    k = _primary_k(gen)
    ks = gen["ks"]

    def js(r: dict, kk: int) -> float:
        return r["js"][kk] if kk in r["js"] else r["js"][str(kk)]

    lines = [
        f"# seqdiff benchmark ({res['profile']} profile)",
        "",
        f"Run {res['started']}, {res['seconds'] / 60:.1f} min; {res['machine']['cpu_count']} CPU cores, torch "
        f"{res['machine']['torch']} ({res['machine']['torch_threads']} threads); load average "
        f"{res['load_average']['start'][0]:.1f} at start, {res['load_average']['end'][0]:.1f} at end (the machine "
        "is shared: timings are comparable within this run, less so across runs).",
        "",
        f"Model: Transformer d_model={m['d_model']}, {m['n_layers']} layers, {m['n_heads']} heads "
        f"({m['parameters'] / 1e6:.2f}M parameters), the same for MDLM (bidirectional) and AR (causal). Budget: "
        f"{b['steps']} steps x {b['batch']} windows x {b['window_tokens']} tokens = {b['train_bases'] / 1e6:.2f}M "
        "training bases for each model.",
        "",
        "## Likelihood (held-out test windows, bits/base, lower is better)",
        "",
        "| model | bits/base | stderr | notes |",
        "|---|---|---|---|",
        f"| MDLM (NELBO, upper bound) | {_f(lik['mdlm']['bits_per_base'], '.4f')} | "
        f"{_f(lik['mdlm']['stderr'], '.4f')} | {lik['mdlm']['timestep_samples']} timestep samples per window |",
        f"| AR transformer (exact NLL) | {_f(lik['ar']['bits_per_base'], '.4f')} | "
        f"{_f(lik['ar']['stderr'], '.4f')} | |",
        f"| best Markov (order {lik['markov']['order']}) | {_f(lik['markov']['bits_per_base'], '.4f')} | "
        f"{_f(lik['markov']['stderr'], '.4f')} | fitted on {lik['markov']['train_bases'] / 1e6:.2f}M training bases |",
        "",
        f"{lik['windows']} test windows of {lik['window_bases']} bp. MDLM / AR - 1 = "
        f"{100 * lik['mdlm_over_ar']:+.1f}%.",
        "",
        f"## Generation ({gen['length']} bp, {gen['dtype']})",
        "",
        "| sampler | steps | " + " | ".join(f"B={bs} wall s | B={bs} CPU s | B={bs} calls | B={bs} tok/CPU s"
                                            for bs in gen["batch_sizes"])
        + " | " + " | ".join(f"JS k={kk}" for kk in ks) + " | AR bits/base |",
        "|---|---|" + "---|---|---|---|" * len(gen["batch_sizes"]) + "---|" * len(ks) + "---|",
    ]
    for r in gen["rows"]:
        cells = []
        for bs in gen["batch_sizes"]:
            t = _b16(r, bs)
            cells += ["-"] * 4 if t is None else [
                _f(t["seconds"], ".2f"), _f(t.get("cpu_seconds"), ".2f"), str(t["nfe"]),
                _f(t.get("tokens_per_cpu_second", t["tokens_per_second"]), ".0f")]
        steps = "-" if r["steps"] is None else str(r["steps"])
        name = r["name"] + (" (bf16)" if r.get("dtype") == "bfloat16" else "")
        lines.append(f"| {name} | {steps} | " + " | ".join(cells) + " | "
                     + " | ".join(_f(js(r, kk), ".4f") for kk in ks) + f" | {_f(r['ar_bits_per_base'])} |")
    fl = gen["floor"]
    lines.append(f"| {fl['name']} | - | " + " | ".join(["-"] * 4 * len(gen["batch_sizes"])) + " | "
                 + " | ".join(_f(js(fl, kk), ".4f") for kk in ks) + f" | {_f(fl['ar_bits_per_base'])} |")
    lines += [
        "",
        f"JS: Jensen-Shannon divergence (bits) between the k-mer spectrum of all samples of a row (batch sizes "
        f"pooled) and {gen['reference_windows']} held-out test windows; the floor row is real held-out DNA of "
        "the same size, so it shows the finite-sample bias. AR bits/base: the samples scored by the AR model "
        "(for the AR row this is its own likelihood, so it is optimistic). CPU s: this process's CPU time (one "
        "thread unless threads= is set), which other jobs on a shared machine do not inflate; the speed goal "
        "compares CPU seconds.",
        "",
        "## Training",
        "",
        f"Measured matmul throughput ({tr['matmul']['dtype']}, best square GEMM, n={tr['matmul']['size']}): "
        f"{tr['matmul']['flops_per_cpu_second'] / 1e9:.1f} GFLOP per CPU-second "
        f"({tr['matmul']['flops_per_second'] / 1e9:.1f} GFLOP/s wall); a GEMM of the model's MLP shape "
        f"{tuple(tr['model_shape_gemm'])}: {tr['model_shape_gemm_flops_per_cpu_second'] / 1e9:.1f} GFLOP per "
        f"CPU-second. Precision {tr['precision']}"
        + (f"; bf16 peak {tr['peaks']['bfloat16']['flops_per_cpu_second'] / 1e9:.1f}, fp32 peak "
           f"{tr['peaks']['float32']['flops_per_cpu_second'] / 1e9:.1f} GFLOP per CPU-second" if "peaks" in tr else "")
        + ". MFU = model FLOPs (matmuls only, backward = 2x forward, "
        "causal attention at half) per CPU-second of a median training step / GEMM FLOPs per CPU-second; the "
        "wall-clock and whole-fit versions are affected by other jobs on the machine.",
        "",
        "| model | tokens/s (median step, wall) | tokens per CPU-second | tokens/s (whole fit) | "
        "model GFLOP per CPU-s | MFU | MFU vs bf16 peak | MFU (wall) | MFU (fit) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, t in tr["models"].items():
        vs_bf16 = f"{100 * t['mfu_vs_bf16_peak']:.1f}%" if "mfu_vs_bf16_peak" in t else "-"
        lines.append(f"| {name.upper()} | {t['tokens_per_second']:.0f} | {t['tokens_per_cpu_second']:.0f} | "
                     f"{_f(t['fit_tokens_per_second'], '.0f')} | {t['model_flops_per_cpu_second'] / 1e9:.1f} | "
                     f"{100 * t['mfu']:.1f}% | {vs_bf16} | {100 * t['mfu_wall']:.1f}% | {100 * t['mfu_fit']:.1f}% |")
    g = res["goals"]
    sp = g["diffusion_as_fast_as_ar_kv"]
    best = sp["best_at_equal_js"]
    fastest = sp["fastest_diffusion"]
    lines += [
        "",
        "## Goals",
        "",
        f"- MDLM within 2% of AR bits/base: **{'met' if g['likelihood_within_2pct']['met'] else 'not met'}** "
        f"({100 * g['likelihood_within_2pct']['mdlm_over_ar']:+.1f}%).",
        f"- Best diffusion sampler at least as fast as AR + KV cache at B={sp['batch']} with JS k={k} no worse: "
        f"**{'met' if sp['met'] else 'not met'}** (CPU seconds; AR {sp['ar_seconds']:.2f} s, JS {sp['ar_js']:.4f}; "
        + (f"best diffusion at equal JS: {best['name']} {best['steps']} steps, {best['seconds']:.2f} s, "
           f"JS {best['js']:.4f}" if best else "no diffusion row reaches AR's JS")
        + (f"; fastest diffusion: {fastest['name']} {fastest['steps']} steps, {fastest['seconds']:.2f} s, "
           f"JS {fastest['js']:.4f}" if fastest else "") + ").",
        "- Training model FLOP/s >= 40% of the measured matmul peak of the precision used "
        f"({g['mfu_at_least_40pct_of_ceiling']['precision']}): "
        f"**{'met' if g['mfu_at_least_40pct_of_ceiling']['met'] else 'not met'}**"
        f" (MDLM MFU {100 * g['mfu_at_least_40pct_of_ceiling']['mfu']:.1f}%).",
        "",
    ]
    return "\n".join(lines)
