"""`infill(cfg)` (scripts/infill.py, configs/infill.yaml): fill in lines of a Python file.

    python scripts/infill.py checkpoint=PATH file=PATH lines=A-B

Prints the file with lines A..B regenerated (stdout); timing goes to stderr. Diffusion checkpoints see the
code before and after the hole; autoregressive ones only the code before it.
"""

import logging
import sys

from omegaconf import DictConfig

from seqdiff.checkpoint import load
from seqdiff.code.data import read_source
from seqdiff.code.fim import infill_lines, parse_line_range, split_lines
from seqdiff.device import make_generator, resolve_device


def infill(cfg: DictConfig) -> str:
    """Print (and return) the file, or only the regenerated lines with show=middle."""
    logging.getLogger("seqdiff").setLevel(logging.WARNING)
    text = infill_file(cfg)
    sys.stdout.write(text)
    return text


def infill_file(cfg: DictConfig) -> str:
    first, last = parse_line_range(cfg.lines)
    hole = split_lines(read_source(cfg.file), first, last)  # errors before the (slow) checkpoint load
    device = resolve_device(cfg.device)
    model = load(cfg.checkpoint, device=device)
    gen = make_generator(int(cfg.seed), device)
    out = infill_lines(model.backbone, model.tokenizer, model.objective, hole, cfg.mode, cfg.budget_per_line,
                       generator=gen)
    r = out.result
    print(f"[{model.objective}, {cfg.mode}] lines {first}-{last}: {len(r.middle_ids)} tokens, {r.nfe} network "
          f"calls, {r.seconds:.2f} s", file=sys.stderr)
    if cfg.show not in ("file", "middle"):
        raise ValueError(f"show must be 'file' or 'middle', got {cfg.show!r}")
    return out.text if cfg.show == "file" else out.middle
