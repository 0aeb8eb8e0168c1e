"""Fill-in-the-middle evaluation on held-out Python files: exact match, `ast.parse` validity, time per line.

Holes are whole lines of held-out (test split) files: single-line holes and multi-line holes of
2..`max_lines` lines, drawn with a seeded RNG; the first hole line is never blank and the true middle must fit
the length budget (so both modes can, in principle, be exact). Methods: a masked diffusion checkpoint, an
autoregressive checkpoint of the same size (prefix only), and the trivial fill `pass` (indented like the
hole's first line). Metrics per (method, mode, hole kind):
- exact: the middle equals the truth after whitespace normalisation (each line's runs of whitespace collapsed
  and ends stripped, blank lines dropped);
- valid: `ast.parse(prefix + middle + suffix)` succeeds (every original file parses);
- blank: the middle is whitespace only (a blank fill keeps many files parsable, like `pass`);
- seconds per infilled line (wall time of the model calls, on this machine's shared CPU).
"""

from __future__ import annotations

import ast
import random
import time
import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from torch import nn

from seqdiff.code.fim import LineHole, budget_tokens, infill_lines, split_lines


def normalize_ws(code: str) -> str:
    return "\n".join(" ".join(line.split()) for line in code.split("\n") if line.strip())


def exact_match(pred: str, truth: str) -> bool:
    return normalize_ws(pred) == normalize_ws(truth)


def parses(code: str) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SyntaxWarning for odd escapes in stdlib strings
        try:
            ast.parse(code)
        except (SyntaxError, ValueError):  # ValueError: null bytes
            return False
    return True


def pass_fill(hole: LineHole) -> str:
    """The trivial fill: `pass` at the indentation of the hole's first line."""
    first = hole.middle.split("\n", 1)[0]
    return first[: len(first) - len(first.lstrip())] + "pass\n"


@dataclass
class HoleTask:
    file: str  # name for reports (relative path)
    kind: str  # "single" | "multi"
    hole: LineHole


def make_holes(
    files: dict[str, str],
    tokenizer,
    n_single: int,
    n_multi: int,
    max_lines: int = 4,
    budget_per_line: int = 24,
    window: int = 256,
    seed: int = 0,
) -> list[HoleTask]:
    """Draw holes from `files` (name -> source that parses). Deterministic given the seed and files."""
    rng = random.Random(seed)
    names = sorted(n for n, text in files.items() if text.strip())
    if not names:
        raise ValueError("no non-empty files to draw holes from")
    tasks: list[HoleTask] = []
    seen: set[tuple[str, int, int]] = set()
    for kind, count in (("single", n_single), ("multi", n_multi)):
        made, tries = 0, 0
        while made < count:
            tries += 1
            if tries > 200 * max(count, 1):
                raise ValueError(f"could not draw {count} {kind}-line holes from {len(names)} files")
            name = rng.choice(names)
            lines = files[name].split("\n")
            n = 1 if kind == "single" else rng.randint(2, max_lines)
            if len(lines) <= n:
                continue
            first = rng.randint(1, len(lines) - n)
            if not lines[first - 1].strip() or (name, first, first + n - 1) in seen:
                continue
            hole = split_lines(files[name], first, first + n - 1)
            if len(tokenizer.encode(hole.middle)) > budget_tokens(n, budget_per_line, window):
                continue
            seen.add((name, first, first + n - 1))
            tasks.append(HoleTask(name, kind, hole))
            made += 1
    return tasks


@dataclass
class Record:
    method: str
    mode: str
    kind: str
    file: str
    first: int
    last: int
    exact: bool
    valid: bool
    seconds: float
    nfe: int
    middle: str
    truth: str


def evaluate_infilling(
    models: dict[str, tuple[nn.Module, object, str]],
    tasks: Sequence[HoleTask],
    modes: Sequence[str] = ("oracle", "budget"),
    budget_per_line: int = 24,
    include_pass: bool = True,
    progress: bool = False,
) -> list[Record]:
    """models: method name -> (backbone, tokenizer, objective "mdlm" | "ar"). One Record per (method, mode,
    hole); the `pass` fill does not depend on the mode and is recorded under mode "-"."""
    records: list[Record] = []

    def add(method: str, mode: str, task: HoleTask, middle: str, seconds: float, nfe: int) -> None:
        h = task.hole
        records.append(Record(method, mode, task.kind, task.file, h.first, h.last, exact_match(middle, h.middle),
                              parses(h.prefix + middle + h.suffix), seconds, nfe, middle, h.middle))

    for i, task in enumerate(tasks):
        if include_pass:
            add("pass", "-", task, pass_fill(task.hole), 0.0, 0)
        for method, (backbone, tokenizer, objective) in models.items():
            for mode in modes:
                t0 = time.perf_counter()
                out = infill_lines(backbone, tokenizer, objective, task.hole, mode, budget_per_line)
                add(method, mode, task, out.middle, time.perf_counter() - t0, out.result.nfe)
        if progress and (i + 1) % 10 == 0:
            print(f"  {i + 1}/{len(tasks)} holes", flush=True)
    return records


def summarize(records: Sequence[Record]) -> list[dict]:
    """One row per (method, mode): exact and valid per hole kind, seconds and network calls per line."""
    groups: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for r in records:
        groups[(r.method, r.mode)].append(r)
    rows = []
    for (method, mode), rs in groups.items():
        row: dict = {"method": method, "mode": mode, "holes": len(rs)}
        for kind in ("single", "multi"):
            k = [r for r in rs if r.kind == kind]
            row[f"{kind}_n"] = len(k)
            row[f"{kind}_exact"] = sum(r.exact for r in k) / len(k) if k else float("nan")
            row[f"{kind}_valid"] = sum(r.valid for r in k) / len(k) if k else float("nan")
        row["blank"] = sum(not r.middle.strip() for r in rs) / len(rs)  # whitespace-only middles
        lines = sum(r.last - r.first + 1 for r in rs)
        row["seconds_per_line"] = sum(r.seconds for r in rs) / lines
        row["nfe_per_line"] = sum(r.nfe for r in rs) / lines
        rows.append(row)
    return rows


def markdown_table(rows: Sequence[dict], bits: dict[str, dict] | None = None) -> str:
    """The results table (plus bits/token per method when given)."""
    head = ("| method | mode | single-line exact | single-line valid | multi-line exact | multi-line valid "
            "| blank middle | s / line | NFE / line | bits / token |")
    out = [head, "|" + "---|" * 10]
    for r in rows:
        b = (bits or {}).get(r["method"])
        bt = f"{b['bits_per_token']:.3f} ± {b['stderr']:.3f}{' (bound)' if b.get('bound') else ''}" if b else "-"
        out.append(f"| {r['method']} | {r['mode']} | {r['single_exact']:.1%} | {r['single_valid']:.1%} | "
                   f"{r['multi_exact']:.1%} | {r['multi_valid']:.1%} | {r['blank']:.1%} | "
                   f"{r['seconds_per_line']:.3f} | "
                   f"{r['nfe_per_line']:.1f} | {bt} |")
    return "\n".join(out) + "\n"


def records_as_dicts(records: Sequence[Record]) -> list[dict]:
    return [asdict(r) for r in records]
