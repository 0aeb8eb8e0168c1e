"""Benchmarks: orchestration that trains and compares models (benchmark, benchmark_caduceus, benchmark_design,
benchmark_downstream), sampler runners (generation), FLOP counting (flops), step timing (timing) and the
RESULTS.md renderer (report). Benchmarks may import every other package; nothing imports them."""
