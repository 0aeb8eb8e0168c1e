"""Fill-in-the-middle (FIM) of source code: masked diffusion (sees both sides) and a left-to-right baseline.

Diffusion: the window is `[context before] [hole] [context after]`; context tokens are `Constraints.fixed`,
so `seqdiff.sampling.denoise` never changes them, and `Constraints.allowed` keeps specials out of the hole.
- oracle mode: the hole has exactly the true middle's token count; only content tokens are allowed.
- budget mode: the hole has `budget` tokens and [EOM] is allowed too; the middle is the hole's content tokens
  with every [EOM] dropped (training puts the [EOM] run after the middle, see seqdiff/code/data.py), so the
  model ends the middle early by filling the rest of the hole with [EOM].
Autoregressive: the middle is decoded greedily left to right from the prefix only (KV cache) and stops after
`stop_newlines` newlines or `max_new_tokens` tokens. It never sees the suffix.

Token-level functions work on ids; `infill_lines` works on text and splices whole lines. The BPE tokenizer is
line-aligned (seqdiff/code/tokenizer.py), so prefix + middle + suffix ids of whole lines equal the file's ids.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from seqdiff.device import multinomial
from seqdiff.sampling.autoregressive import decode
from seqdiff.sampling.constraints import SPECIAL_ID_NAMES, Constraints, ordinary_tokens
from seqdiff.sampling.loop import denoise
from seqdiff.sampling.samplers import GridSampler

MODES = ("oracle", "budget")


class ConfidenceSampler(GridSampler):
    """Deterministic greedy unmasking (MaskGIT / LLaDA "low-confidence remasking" without remasking):
    each step writes the argmax at the masked positions where the model is most confident; the number
    unmasked per step follows a linear schedule, so `num_steps` = hole length unmasks one token per step.
    Same interface as `AncestralSampler`; never calls the model."""

    def step(self, log_p_x0: Tensor, xt: Tensor, t: float, s: float, mask_id: int,
             generator: torch.Generator | None = None) -> Tensor:
        masked = xt == mask_id  # (B, L)
        n = masked.sum(-1)  # (B,)
        k = n if s <= 0.0 else torch.round(n * (t - s) / t).clamp_min(1).minimum(n)
        conf, x0 = log_p_x0.max(-1)  # (B, L) each
        conf = conf.masked_fill(~masked, -torch.inf)
        rank = conf.argsort(-1, descending=True).argsort(-1)  # rank of each position by confidence
        return torch.where(masked & (rank < k[:, None]), x0, xt)


@dataclass
class InfillResult:
    middle_ids: list[int]  # generated middle, content tokens only
    nfe: int  # network calls
    seconds: float
    window: Tensor = field(repr=False)  # (L,) final window (diffusion) or context + generated (AR)
    hole: tuple[int, int]  # [start, stop) of the hole (diffusion) or of the generated tokens (AR) in window


def _content_mask(tokenizer, vocab_size: int, allow_eom: bool) -> Tensor:
    """(V,) bool: ordinary tokens (+ [EOM] in budget mode)."""
    allowed = ordinary_tokens(tokenizer, vocab_size, (*SPECIAL_ID_NAMES, "eom_id"))
    if allow_eom:
        allowed[tokenizer.eom_id] = True
    return allowed


def fit_context(left: list[int], right: list[int], room: int) -> tuple[list[int], list[int]]:
    """Keep the end of `left` and the start of `right`, at most `room` tokens together, split evenly unless
    one side is short (the other then gets the rest)."""
    room = max(room, 0)
    a = min(len(left), max(room // 2, room - len(right)))
    b = min(len(right), room - a)
    return left[len(left) - a :], right[:b]


@torch.no_grad()
def infill_diffusion(
    backbone: nn.Module,
    tokenizer,
    prefix_ids: list[int],
    suffix_ids: list[int],
    hole_len: int,
    mode: str = "oracle",
    sampler=None,
    generator: torch.Generator | None = None,
) -> InfillResult:
    """Fill a hole of `hole_len` tokens between prefix and suffix (file-level ids, without [BOS]/[EOS]).

    The file's [BOS]/[EOS] are added when the context reaches the start/end of the file, as in training.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    window = int(backbone.max_len)
    if not 0 < hole_len <= window - 2:
        raise ValueError(f"hole of {hole_len} tokens does not fit a window of {window} (needs 1..{window - 2})")
    left, right = fit_context([tokenizer.bos_id, *prefix_ids], [*suffix_ids, tokenizer.eos_id], window - hole_len)
    device = next(backbone.parameters()).device
    fixed = torch.tensor([*left, *([-1] * hole_len), *right], dtype=torch.long)
    allowed = torch.ones(len(fixed), backbone.vocab_size, dtype=torch.bool)
    allowed[len(left) : len(left) + hole_len] = _content_mask(tokenizer, backbone.vocab_size, mode == "budget")
    constraints = Constraints(fixed, allowed).to(device)
    sampler = sampler or ConfidenceSampler(num_steps=hole_len)
    t0 = time.perf_counter()
    out = denoise(backbone, sampler, constraints.initial(1, tokenizer.mask_id), tokenizer.mask_id, constraints,
                  generator, cache=True)
    seconds = time.perf_counter() - t0
    if not bool(constraints.satisfied(out.tokens)[0]):  # the loop guarantees this; fail loudly if not
        raise RuntimeError("infilling changed a fixed context token")
    hole = out.tokens[0, len(left) : len(left) + hole_len].tolist()
    middle = [t for t in hole if t != tokenizer.eom_id]
    return InfillResult(middle, out.nfe, seconds, out.tokens[0].cpu(), (len(left), len(left) + hole_len))


@torch.no_grad()
def infill_autoregressive(
    backbone: nn.Module,
    tokenizer,
    prefix_ids: list[int],
    max_new_tokens: int,
    stop_newlines: int | None = None,
    temperature: float = 0.0,
    generator: torch.Generator | None = None,
) -> InfillResult:
    """Greedy (temperature 0) or sampled left-to-right middle from the prefix only, with a KV cache.

    Stops after `stop_newlines` generated newlines or `max_new_tokens` tokens. Input layout as in training
    (`ar_nll`): position 0 is [BOS], then the window's tokens (the file's own [BOS] if the prefix reaches it).
    """
    if not getattr(backbone, "causal", False):
        raise ValueError("autoregressive infilling needs a causal backbone (model=transformer_ar)")
    window = int(backbone.max_len)
    if not 0 < max_new_tokens <= window - 1:
        raise ValueError(f"max_new_tokens must be in 1..{window - 1}, got {max_new_tokens}")
    device = next(backbone.parameters()).device
    context, _ = fit_context([tokenizer.bos_id, *prefix_ids], [], window - max_new_tokens)
    allowed = _content_mask(tokenizer, backbone.vocab_size, allow_eom=False).to(device)
    newline = tokenizer.newline_count.to(device) > 0
    lines = 0

    def pick(logits: Tensor, i: int) -> Tensor:  # (1, V) -> (1,): greedy, or a draw at `temperature`
        logits = logits[0].float().masked_fill(~allowed, -torch.inf)
        if temperature > 0:
            return multinomial((logits / temperature).softmax(-1), 1, generator)  # on the generator's device
        return logits.argmax().reshape(1)

    def stop(token: Tensor) -> bool:  # after `stop_newlines` generated newlines
        nonlocal lines
        lines += int(newline[token[0]])
        return stop_newlines is not None and lines >= stop_newlines

    t0 = time.perf_counter()
    out, nfe = decode(backbone, torch.tensor([[tokenizer.bos_id, *context]], device=device), max_new_tokens,
                      pick, stop)
    seconds = time.perf_counter() - t0
    generated = out[0].tolist()
    full = torch.tensor([tokenizer.bos_id, *context, *generated])
    return InfillResult(generated, nfe, seconds, full, (1 + len(context), len(full)))


# ---- text level -------------------------------------------------------------------------------------------
@dataclass
class LineHole:
    prefix: str  # lines before the hole (ends with "\n" or is empty)
    middle: str  # the original lines first..last
    suffix: str  # lines after the hole
    first: int  # 1-based, inclusive
    last: int

    @property
    def n_lines(self) -> int:
        return self.last - self.first + 1


def split_lines(text: str, first: int, last: int) -> LineHole:
    """Cut 1-based inclusive lines first..last out of text. Lines end at "\\n" (a "\\r\\n" stays whole)."""
    lines = _lines(text)
    if not lines:
        raise ValueError("the file is empty: there is no line to fill")
    if last < first:
        raise ValueError(f"empty hole: lines {first}-{last} select no line (need first <= last)")
    if first < 1 or last > len(lines):
        raise ValueError(f"lines {first}-{last} are outside the file, which has lines 1-{len(lines)}")
    return LineHole("".join(lines[: first - 1]), "".join(lines[first - 1 : last]), "".join(lines[last:]),
                    first, last)


def _lines(text: str) -> list[str]:
    # Only "\n" ends a line: str.splitlines would also split on \x0c, \x1c, \u2028, ... which the
    # tokenizer's line alignment (and Python's own line numbering) does not.
    parts = text.split("\n")
    lines = [p + "\n" for p in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


@dataclass
class TextInfill:
    middle: str
    hole: LineHole
    result: InfillResult

    @property
    def text(self) -> str:
        return self.hole.prefix + self.middle + self.hole.suffix


def infill_lines(
    backbone: nn.Module,
    tokenizer,
    objective: str,
    hole: LineHole,
    mode: str = "budget",
    budget_per_line: int = 24,
    sampler=None,
    generator: torch.Generator | None = None,
) -> TextInfill:
    """Regenerate the lines of `hole` with a diffusion (objective "mdlm") or AR (objective "ar") model.

    oracle: diffusion gets a hole of exactly the true middle's token count; AR may generate up to that many
    tokens. budget: both get `budget_per_line * n_lines` tokens (capped at half the window); diffusion may
    end early with [EOM], AR stops at the hole's newline count. The middle always ends with a newline when
    the hole did, so the lines after the hole stay lines.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    window = int(backbone.max_len)
    true_len = len(tokenizer.encode(hole.middle))
    if mode == "oracle":
        length = true_len
        if length > window - 2:
            raise ValueError(f"the hole has {length} tokens, more than the model's window of {window} allows")
    else:
        length = budget_tokens(hole.n_lines, budget_per_line, window)
    prefix_ids, suffix_ids = tokenizer.encode(hole.prefix), tokenizer.encode(hole.suffix)
    if objective == "ar":
        stop = hole.middle.count("\n") or None
        res = infill_autoregressive(backbone, tokenizer, prefix_ids, length, stop_newlines=stop, generator=generator)
    elif objective == "mdlm":
        res = infill_diffusion(backbone, tokenizer, prefix_ids, suffix_ids, length, mode, sampler, generator)
    else:
        raise ValueError(f"unknown objective {objective!r} (expected 'mdlm' or 'ar')")
    middle = tokenizer.decode(res.middle_ids)
    if hole.middle.endswith("\n") and not middle.endswith("\n"):
        middle += "\n"
    return TextInfill(middle, hole, res)


def budget_tokens(n_lines: int, budget_per_line: int, window: int) -> int:
    return min(budget_per_line * n_lines, window // 2)


__all__ = ["ConfidenceSampler", "InfillResult", "LineHole", "TextInfill", "MODES", "fit_context",
           "infill_autoregressive", "infill_diffusion", "infill_lines", "split_lines", "budget_tokens",
           "parse_line_range"]


def parse_line_range(spec: str | int) -> tuple[int, int]:
    """"A-B" or "A" (1-based, inclusive) -> (A, B); a clear ValueError otherwise."""
    text = str(spec).strip()
    first, sep, last = text.partition("-")
    try:
        a = int(first)
        b = int(last) if sep else a
    except ValueError:
        raise ValueError(f"lines must look like A-B or A (1-based line numbers), got {text!r}") from None
    return a, b
