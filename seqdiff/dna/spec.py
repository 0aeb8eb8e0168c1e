"""Design specifications that compile to `Constraints`: fixed spans, IUPAC templates, JASPAR motifs, length.

    spec = (Design(length=1000)
            .fix(0, left_flank).fix(1000 - len(right_flank), right_flank)   # or .flanks(left, right)
            .template("NNNNRYNNNN", position=100)                             # R/Y restrict the alphabet
            .motif("MA0108.2", position=400, strand="-", mode="sample", generator=g))
    compiled = spec.compile()                  # every contradiction raises ValueError here, before sampling
    constraints = compiled.constraints(tokenizer)

Positions are 0-based on the + strand; a motif at `position` covers position .. position + width - 1 and,
on the - strand, reads as the reverse complement of the matrix there. Rules combine by intersecting the
allowed bases at each position, so a template `R` under a fixed `A` is fine and a fixed `A` under a fixed
`G` is a contradiction. Motifs are placed after spans and templates: a consensus base must agree with what is
already there; a sampled motif draws each column from the PWM restricted to the bases still allowed.
Designed bases are A, C, G, T only: free positions never receive N or a special token.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from seqdiff.device import rand
from seqdiff.dna.tokenizer import COMPLEMENT
from seqdiff.sampling.constraints import Constraints

BASES = "ACGT"
IUPAC: dict[str, str] = {
    "A": "A", "C": "C", "G": "G", "T": "T", "U": "T",
    "R": "AG", "Y": "CT", "S": "CG", "W": "AT", "K": "GT", "M": "AC",
    "B": "CGT", "D": "AGT", "H": "ACT", "V": "ACG", "N": "ACGT",
}
_BIT = {b: 1 << i for i, b in enumerate(BASES)}  # allowed sets as 4-bit masks: A=1 C=2 G=4 T=8
_CODE = {letter: sum(_BIT[b] for b in bases) for letter, bases in IUPAC.items()}
_LETTER = {code: letter for letter, code in _CODE.items() if letter != "U"}  # mask -> IUPAC letter
DEFAULT_JASPAR_RELEASE = "JASPAR2024"


def reverse_complement(seq: str) -> str:
    return seq.translate(COMPLEMENT)[::-1]


def iupac_masks(template: str, what: str = "template") -> list[int]:
    """IUPAC string -> per-position 4-bit allowed masks; unknown letters raise ValueError naming them."""
    masks = []
    for i, ch in enumerate(template.upper()):
        if ch not in _CODE:
            raise ValueError(f"unknown IUPAC letter {ch!r} at position {i} of {what} "
                             f"(expected one of {''.join(sorted(_CODE))})")
        masks.append(_CODE[ch])
    return masks


# ---- JASPAR ------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=8)
def _jaspar_db(release: str) -> Any:
    from pyjaspar import jaspardb

    if release not in jaspardb().get_releases():
        raise ValueError(f"unknown JASPAR release {release!r}; pyjaspar ships {jaspardb().get_releases()}")
    return jaspardb(release=release)


@functools.lru_cache(maxsize=256)
def load_jaspar_motif(key: str, release: str = DEFAULT_JASPAR_RELEASE) -> Any:
    """A Bio.motifs.jaspar.Motif by matrix ID (`MA0108.2`, or `MA0108` for the latest version) or by TF
    name (`TBP`, case-insensitive), from pyjaspar's offline SQLite. A name matching several matrices picks
    vertebrate CORE first, then the lowest base ID (the oldest, canonical profile, e.g. MA0139 for CTCF)."""
    db = _jaspar_db(release)
    with warnings.catch_warnings():  # pyjaspar warns (and returns None / []) on unknown keys
        warnings.simplefilter("ignore")
        if key[:2].upper() in ("MA", "PB", "PF", "PH", "PL", "CN", "UN") and any(c.isdigit() for c in key):
            motif = db.fetch_motif_by_id(key.upper())
            if motif is None:
                raise ValueError(f"unknown JASPAR matrix ID {key!r} in {release}")
            return motif
        found = db.fetch_motifs_by_name(key)
    if not found:
        raise ValueError(f"no JASPAR motif named {key!r} in {release} (give a matrix ID like MA0108.2 or a "
                         "TF name like TBP)")
    return min(found, key=lambda m: (m.tax_group != "vertebrates", m.collection != "CORE", m.matrix_id))


def motif_probabilities(motif: Any, pseudocount: float = 0.0) -> np.ndarray:
    """(W, 4) column probabilities in A C G T order from a Bio.motifs motif's counts."""
    counts = np.array([[motif.counts[b][j] for b in BASES] for j in range(motif.length)], dtype=np.float64)
    counts += pseudocount
    return counts / counts.sum(1, keepdims=True)


# ---- rules and the builder ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class MotifPlacement:
    """Where a motif ended up in a compiled design (+ strand coordinates, [start, end))."""

    matrix_id: str
    name: str
    start: int
    end: int
    strand: str
    sequence: str  # the placed bases as read on the + strand
    mode: str


@dataclass
class _Span:
    position: int
    masks: list[int]
    label: str


@dataclass
class _MotifRule:
    key: str
    position: int
    strand: str
    mode: str
    generator: torch.Generator | None
    release: str
    pseudocount: float
    motif: Any = field(repr=False)


class Design:
    """Builder for constrained designs; every method validates its input at once and returns self."""

    def __init__(self, length: int) -> None:
        if not isinstance(length, int | np.integer) or length <= 0:
            raise ValueError(f"design length must be a positive integer, got {length!r}")
        self.length = int(length)
        self._spans: list[_Span] = []
        self._motifs: list[_MotifRule] = []

    @classmethod
    def from_template(cls, template: str, length: int | None = None) -> Design:
        """A design from one IUPAC template placed at 0; `length` (default len(template)) may exceed it."""
        return cls(len(template) if length is None else length).template(template)

    def _check_range(self, position: int, width: int, label: str) -> None:
        if position < 0 or position + width > self.length:
            raise ValueError(f"{label} covers positions {position}..{position + width - 1}, outside the design "
                             f"(length {self.length}, positions 0..{self.length - 1})")

    def template(self, template: str, position: int = 0, label: str | None = None) -> Design:
        """IUPAC template at `position`: N free, A/C/G/T fixed, R Y S W K M B D H V restrict the alphabet."""
        label = label or f"template at {position}"
        masks = iupac_masks(template, label)
        self._check_range(position, len(masks), label)
        self._spans.append(_Span(position, masks, label))
        return self

    def fix(self, position: int, sequence: str, label: str | None = None) -> Design:
        """Fixed bases (A C G T only) at position .. position + len(sequence) - 1."""
        label = label or f"fixed span at {position}"
        bad = [(i, c) for i, c in enumerate(sequence.upper()) if c not in BASES]
        if bad:
            i, c = bad[0]
            raise ValueError(f"{label}: fixed spans take A, C, G, T only; got {c!r} at offset {i} "
                             "(use .template() for IUPAC ambiguity codes)")
        return self.template(sequence, position, label)

    def flanks(self, left: str = "", right: str = "") -> Design:
        """Fix `left` at the start and `right` at the end: the middle is infilled, whatever the lengths."""
        if left:
            self.fix(0, left, "left flank")
        if right:
            self.fix(self.length - len(right), right, "right flank")
        return self

    def motif(self, motif: str, position: int, strand: str = "+", mode: str = "consensus",
              generator: torch.Generator | None = None, release: str = DEFAULT_JASPAR_RELEASE,
              pseudocount: float = 0.0) -> Design:
        """A JASPAR motif (matrix ID or TF name) at `position` on `strand` ('+' or '-'), as its consensus or
        sampled column by column from its PWM (using `generator`, redrawn at every `compile`)."""
        if strand not in ("+", "-"):
            raise ValueError(f"motif strand must be '+' or '-', got {strand!r}")
        if mode not in ("consensus", "sample"):
            raise ValueError(f"motif mode must be 'consensus' or 'sample', got {mode!r}")
        if pseudocount < 0:
            raise ValueError(f"motif pseudocount must be >= 0, got {pseudocount}")
        m = load_jaspar_motif(motif, release)
        self._check_range(position, m.length, f"motif {m.matrix_id} ({m.name}) at {position}")
        self._motifs.append(_MotifRule(motif, position, strand, mode, generator, release, pseudocount, m))
        return self

    def compile(self, generator: torch.Generator | None = None) -> CompiledDesign:
        """Intersect every rule into per-position allowed sets; contradictions raise ValueError."""
        masks = np.full(self.length, _CODE["N"], dtype=np.int64)
        source: list[str | None] = [None] * self.length
        for span in self._spans:
            for off, m in enumerate(span.masks):
                i = span.position + off
                _intersect(masks, source, i, m, span.label)
        placements = []
        for rule in self._motifs:
            m = rule.motif
            probs = motif_probabilities(m, rule.pseudocount)  # (W, 4) on the matrix's own strand
            if rule.strand == "-":
                probs = probs[::-1, ::-1]  # reverse columns; A C G T -> T G C A complements each column
            label = f"motif {m.matrix_id} ({m.name}, {rule.strand} strand) at {rule.position}"
            placed = []
            for j in range(m.length):
                i = rule.position + j
                if rule.mode == "consensus":
                    base = BASES[int(np.argmax(probs[j]))]
                else:
                    allowed = np.array([(masks[i] >> b) & 1 for b in range(4)], dtype=bool)
                    p = np.where(allowed, probs[j], 0.0)
                    if p.sum() <= 0:
                        raise ValueError(f"{label}: the PWM gives zero probability to every base allowed at "
                                         f"position {i} ({_LETTER[int(masks[i])]}, from {source[i]})")
                    g = generator or rule.generator
                    u = float(rand((), g, dtype=torch.float64))  # on the generator's device
                    base = BASES[int(np.searchsorted(np.cumsum(p / p.sum()), u, side="right").clip(0, 3))]
                _intersect(masks, source, i, _CODE[base], label)
                placed.append(base)
            placements.append(MotifPlacement(m.matrix_id, m.name, rule.position, rule.position + m.length,
                                             rule.strand, "".join(placed), rule.mode))
        return CompiledDesign(masks, source, placements)


def _intersect(masks: np.ndarray, source: list[str | None], i: int, m: int, label: str) -> None:
    new = int(masks[i]) & m
    if new == 0:
        raise ValueError(f"contradictory constraints at position {i}: {label} requires {_LETTER[m]} but "
                         f"{source[i]} requires {_LETTER[int(masks[i])]}")
    if new != masks[i] and source[i] is None:
        source[i] = label
    elif new != masks[i]:
        source[i] = f"{source[i]} and {label}"
    masks[i] = new


# ---- the compiled design -----------------------------------------------------------------------------------
@dataclass
class CompiledDesign:
    """Per-base allowed sets (4-bit masks over A C G T) with their provenance and the placed motifs."""

    masks: np.ndarray  # int64[L] in 1..15
    sources: list[str | None]  # which rule(s) restricted each position; None = free
    motifs: list[MotifPlacement]

    @property
    def length(self) -> int:
        return len(self.masks)

    @property
    def template(self) -> str:
        """The compiled design as one IUPAC string (N = free)."""
        return "".join(_LETTER[int(m)] for m in self.masks)

    @property
    def fixed(self) -> np.ndarray:
        """bool[L]: positions with exactly one allowed base."""
        return np.isin(self.masks, [1, 2, 4, 8])

    @property
    def constrained(self) -> np.ndarray:
        """bool[L]: positions any rule restricted (fixed or a reduced alphabet)."""
        return self.masks != _CODE["N"]

    def allowed_bases(self) -> np.ndarray:
        """bool[L, 4] over A C G T."""
        return ((self.masks[:, None] >> np.arange(4)) & 1).astype(bool)

    def violations(self, seq: str) -> list[int]:
        """Positions of `seq` that break the design (a length mismatch counts every missing position)."""
        seq = seq.upper()
        bad = [i for i, (c, m) in enumerate(zip(seq, self.masks, strict=False))
               if c not in _BIT or not (_BIT[c] & int(m))]
        return bad + list(range(min(len(seq), self.length), max(len(seq), self.length)))

    def satisfied(self, seq: str) -> bool:
        return not self.violations(seq)

    def constraints(self, tokenizer: Any) -> Constraints:
        """Token-level Constraints for a nucleotide tokenizer (1 or k bases per token).

        A token is allowed at token position p iff its k bases are all in the allowed sets of the bases it
        covers; it is fixed when exactly one token is allowed. N and special tokens are never allowed.
        """
        k = int(getattr(tokenizer, "bases_per_token", 1))
        if self.length % k:
            raise ValueError(f"design length {self.length} is not a multiple of the tokenizer's {k} bases/token")
        V, n_tok = tokenizer.vocab_size, self.length // k
        base_ok = torch.from_numpy(self.allowed_bases())  # (L, 4)
        allowed = torch.zeros(n_tok, V, dtype=torch.bool)
        for tid in range(V):
            s = tokenizer.decode([tid])
            if len(s) != k or any(c not in _BIT for c in s):
                continue  # specials, N-containing and short tail tokens never appear in a design
            cols = torch.tensor([BASES.index(c) for c in s])
            ok = base_ok.view(n_tok, k, 4)[:, torch.arange(k), cols]  # (n_tok, k)
            allowed[:, tid] = ok.all(-1)
        n_allowed = allowed.sum(-1)
        if (n_allowed == 0).any():
            p = int((n_allowed == 0).nonzero()[0])
            raise ValueError(f"tokenizer {tokenizer!r} has no token for design positions {p * k}..{p * k + k - 1}")
        fixed = torch.where(n_allowed == 1, allowed.float().argmax(-1), torch.full((n_tok,), -1))
        return Constraints(fixed.long(), allowed)


def design_from_options(length: int | None, template: str | None = None, flanks: Sequence[str] = ("", ""),
                        fixed: dict[int, str] | None = None, motif: str | None = None,
                        motif_position: int | None = None, motif_strand: str = "+",
                        motif_mode: str = "consensus", generator: torch.Generator | None = None,
                        release: str = DEFAULT_JASPAR_RELEASE) -> Design:
    """One flat set of options (the CLI's) -> Design. length defaults to the template's length."""
    if length is None:
        if not template:
            raise ValueError("give a length, a template, or both")
        length = len(template)
    spec = Design(int(length))
    if template:
        spec.template(template)
    spec.flanks(*flanks)
    for pos, seq in (fixed or {}).items():
        spec.fix(int(pos), seq)
    if motif:
        if motif_position is None:
            raise ValueError("motif given without motif_position")
        spec.motif(motif, int(motif_position), motif_strand, motif_mode, generator, release)
    return spec
