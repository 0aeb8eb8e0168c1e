"""Caduceus denoisers: BiMamba, Caduceus-PS (reverse-complement equivariant) and Caduceus-Ph (conjoined).

All three satisfy the backbone interface: built with `vocab_size`, `max_len` (+ `complement_ids` for the RC
models); `forward(x: LongTensor[B, L], t: FloatTensor[B] | None) -> logits FloatTensor[B, L, V]`.

RC of tokens: rc(x) = complement[x].flip(L). RC of logits: rc(logits)[l, v] = logits[L-1-l, complement[v]].

Caduceus-PS (Schiff et al. 2024) keeps a hidden state of width d_model laid out as [h_fwd | flip_{L,C}(h_rc)]
and applies every sub-module with shared weights to h_fwd and to the flipped-back h_rc; its RC-equivariant
embedding puts e(x) in the first half and flip_{L,C}(e(rc(x))) in the second, and its LM head is
W h_fwd + W[complement] flip_C(h_rc). Nothing ever mixes the two halves, so the network is exactly a
d_model/2-wide trunk g applied to x and to rc(x), with logits g(x) + rc(g(rc(x))). That is how it is
computed here: both strands run as one batch of 2B through the shared trunk (same parameters, same maths as
the RCPS modules, no channel flips). Time conditioning is identical for both strands, so it keeps the
equivariance. Caduceus-Ph is a full-width BiMamba trained with RC augmentation whose eval-mode logits are
the average (g(x) + rc(g(rc(x)))) / 2.

The complement map must be an involution of the vocabulary (complement[complement[v]] == v). That is all
equivariance needs, and it holds for the char tokenizer (A<->T, C<->G, specials fixed) and for a k-mer
vocabulary closed under reverse complement (token -> its reverse-complement k-mer), for which the token-level
RC is also `complement[x].flip(L)`. Maps that are not involutions (e.g. a BPE vocabulary whose RC of a token
is not a token) are refused at construction.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from seqdiff.backbones.mamba import SCAN_IMPLS, MambaMixer
from seqdiff.backbones.transformer import modulate, timestep_embedding


def check_complement(complement_ids: Sequence[int] | Tensor | None, vocab_size: int, model: str) -> Tensor:
    """Validate a token -> complement-token map; returns it as LongTensor[V]. Raises ValueError."""
    if complement_ids is None:
        raise ValueError(
            f"{model} needs complement_ids (token -> complement token, length vocab_size={vocab_size}); "
            "pass complement_ids=tokenizer.complement_ids.tolist() from a nucleotide tokenizer"
        )
    comp = torch.as_tensor(complement_ids, dtype=torch.long).flatten()
    if comp.numel() != vocab_size:
        raise ValueError(f"{model}: complement_ids has {comp.numel()} entries, vocab_size is {vocab_size}")
    if (comp < 0).any() or (comp >= vocab_size).any():
        raise ValueError(f"{model}: complement_ids has entries outside [0, {vocab_size})")
    bad = (comp[comp] != torch.arange(vocab_size)).nonzero().flatten()
    if bad.numel():
        raise ValueError(
            f"{model}: complement_ids is not an involution (complement of complement of token {bad[0].item()} "
            f"is {comp[comp[bad[0]]].item()}); reverse-complement equivariance needs a vocabulary closed under "
            "the complement, one token to one token (char or full k-mer vocabularies, not BPE)"
        )
    return comp


def reverse_complement(x: Tensor, complement: Tensor) -> Tensor:
    """Tokens (B, L) -> complement[x] flipped along L."""
    return complement[x].flip(-1)


def reverse_complement_logits(logits: Tensor, complement: Tensor) -> Tensor:
    """Logits (B, L, V) -> out[:, l, v] = logits[:, L-1-l, complement[v]]."""
    return logits.flip(1).index_select(-1, complement)


class MambaBlock(nn.Module):
    """Pre-norm residual block h + mixer(norm(h)); with conditioning c, adaLN shift/scale/gate as the
    transformer's Block: h + (1 + gate) * mixer(modulate(norm(h))), zero-initialised (not adaLN-Zero)."""

    def __init__(self, d_model: int, d_cond: int | None, **mixer_kwargs) -> None:
        super().__init__()
        self.norm = nn.RMSNorm(d_model)
        self.mixer = MambaMixer(d_model, **mixer_kwargs)
        self.ada = None
        if d_cond is not None:
            self.ada = nn.Linear(d_cond, 3 * d_model)
            nn.init.zeros_(self.ada.weight)
            nn.init.zeros_(self.ada.bias)

    def forward(self, h: Tensor, c: Tensor | None) -> Tensor:
        if self.ada is None or c is None:
            return h + self.mixer(self.norm(h))
        shift, scale, gate = self.ada(c).chunk(3, dim=-1)  # each (B, D)
        return h + (1.0 + gate[:, None]) * self.mixer(modulate(self.norm(h), shift, scale))


class BiMamba(nn.Module):
    """Bidirectional Mamba denoiser: (x: LongTensor[B, L], t: FloatTensor[B] | None) -> logits[B, L, V].

    Token embedding -> n_layers pre-norm BiMamba blocks -> RMSNorm -> linear head. No position embedding
    (the scans are position-aware). time_conditioning=True embeds t (sinusoidal -> MLP, as the transformer)
    and modulates every block adaLN style ((1 + gate), zero-initialised); False ignores t and builds no
    conditioning weights.
    """

    causal = False

    def __init__(
        self,
        vocab_size: int,
        max_len: int,
        d_model: int = 128,
        n_layers: int = 4,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        tie: bool = True,
        d_cond: int = 128,
        time_conditioning: bool = False,
        scan_impl: str = "fused",
    ) -> None:
        super().__init__()
        for name, value in [("vocab_size", vocab_size), ("max_len", max_len), ("d_model", d_model),
                            ("n_layers", n_layers), ("d_state", d_state), ("d_conv", d_conv), ("expand", expand)]:
            if value < 1:
                raise ValueError(f"{type(self).__name__}: {name} must be >= 1, got {value}")
        if scan_impl not in SCAN_IMPLS:
            raise ValueError(f"unknown scan_impl {scan_impl!r}; choose from {SCAN_IMPLS}")
        self.vocab_size, self.max_len, self.d_model = vocab_size, max_len, d_model
        self.time_conditioning, self.d_cond = time_conditioning, d_cond
        cond = d_cond if time_conditioning else None
        self.embed = nn.Embedding(vocab_size, d_model)
        nn.init.normal_(self.embed.weight, std=0.02)
        self.cond = nn.Sequential(nn.Linear(d_cond, d_cond), nn.SiLU(), nn.Linear(d_cond, d_cond)) if cond else None
        self.blocks = nn.ModuleList(
            MambaBlock(d_model, cond, d_state=d_state, d_conv=d_conv, expand=expand, tie=tie, scan_impl=scan_impl)
            for _ in range(n_layers)
        )
        for block in self.blocks:  # GPT-2/Mamba: shrink residual-branch outputs with depth
            nn.init.normal_(block.mixer.out_proj.weight, std=0.02 / (2 * n_layers) ** 0.5)
        self.norm_out = nn.RMSNorm(d_model)
        self.ada_out = None
        if cond:
            self.ada_out = nn.Linear(d_cond, 2 * d_model)
            nn.init.zeros_(self.ada_out.weight)
            nn.init.zeros_(self.ada_out.bias)
        self.head = nn.Linear(d_model, vocab_size)

    def check_input(self, x: Tensor) -> None:
        if x.dim() != 2:
            raise ValueError(f"expected tokens of shape (B, L), got {tuple(x.shape)}")
        if x.shape[1] > self.max_len:
            raise ValueError(f"sequence length {x.shape[1]} exceeds the model's max_len={self.max_len}")

    def conditioning(self, t: Tensor | None, batch_size: int, device: torch.device) -> Tensor | None:
        if self.cond is None:
            return None
        if t is None:
            t = torch.zeros(batch_size, device=device)
        return self.cond(timestep_embedding(t.to(device).expand(batch_size), self.d_cond))  # (B, d_cond)

    def trunk(self, x: Tensor, c: Tensor | None) -> Tensor:
        """Tokens (B, L) and conditioning (B, d_cond) | None -> logits (B, L, V), no strand handling."""
        h = self.embed(x)  # (B, L, D)
        for block in self.blocks:
            h = block(h, c)
        h = self.norm_out(h)
        if self.ada_out is not None and c is not None:
            shift, scale = self.ada_out(c).chunk(2, dim=-1)
            h = modulate(h, shift, scale)
        return self.head(h)

    def forward(self, x: Tensor, t: Tensor | None = None) -> Tensor:
        self.check_input(x)
        return self.trunk(x, self.conditioning(t, x.shape[0], x.device))


class CaduceusPh(BiMamba):
    """BiMamba trained with RC augmentation, conjoined over both strands in eval mode.

    Training mode (rc_augment=True): each sequence is fed as itself or, with probability 1/2, as its reverse
    complement, and the logits are reverse-complemented back, which equals training on RC-augmented data
    (masking is per position and the mask token is its own complement). Eval mode: logits are
    (g(x) + rc(g(rc(x)))) / 2, strand-symmetric by construction. Takes the BiMamba arguments plus
    `complement_ids` (required) and `rc_augment`.
    """

    def __init__(
        self, vocab_size: int, max_len: int, complement_ids: Sequence[int] | None = None,
        rc_augment: bool = True, **kwargs,
    ) -> None:
        comp = check_complement(complement_ids, vocab_size, type(self).__name__)
        super().__init__(vocab_size, max_len, **kwargs)
        self.rc_augment = rc_augment
        self.register_buffer("complement", comp)

    def conjoin(self, x: Tensor, c: Tensor | None) -> Tensor:
        """Average of the logits for x and the RC'd logits for rc(x), both strands in one batch of 2B."""
        B = x.shape[0]
        both = self.trunk(torch.cat([x, reverse_complement(x, self.complement)]), None if c is None else c.repeat(2, 1))
        return 0.5 * (both[:B] + reverse_complement_logits(both[B:], self.complement))

    def forward(self, x: Tensor, t: Tensor | None = None) -> Tensor:
        self.check_input(x)
        c = self.conditioning(t, x.shape[0], x.device)
        if not self.training:
            return self.conjoin(x, c)
        if not self.rc_augment:
            return self.trunk(x, c)
        flip = torch.rand(x.shape[0], device=x.device) < 0.5  # (B,) which sequences to feed as their RC
        logits = self.trunk(torch.where(flip[:, None], reverse_complement(x, self.complement), x), c)
        return torch.where(flip[:, None, None], reverse_complement_logits(logits, self.complement), logits)


class CaduceusPS(BiMamba):
    """Reverse-complement-equivariant Caduceus by parameter sharing: logits(rc(x)) == rc(logits(x)).

    `d_model` is the width of the RCPS hidden state (both strands), so it must be even; the shared trunk is
    d_model/2 wide, which gives this model about the parameters of a d_model/2 BiMamba and the compute of a
    d_model/2 BiMamba on 2B sequences. Logits are g(x) + rc(g(rc(x))) for the shared trunk g (see the module
    docstring for the equivalence with the channel-flip formulation). Takes the BiMamba arguments plus
    `complement_ids` (required).
    """

    def __init__(
        self, vocab_size: int, max_len: int, d_model: int = 256, complement_ids: Sequence[int] | None = None,
        **kwargs,
    ) -> None:
        if d_model % 2:
            raise ValueError(f"CaduceusPS splits d_model into two strands of d_model/2 channels; "
                             f"d_model={d_model} is odd")
        comp = check_complement(complement_ids, vocab_size, type(self).__name__)
        super().__init__(vocab_size, max_len, d_model=d_model // 2, **kwargs)
        self.d_model = d_model
        self.register_buffer("complement", comp)

    def forward(self, x: Tensor, t: Tensor | None = None) -> Tensor:
        self.check_input(x)
        B = x.shape[0]
        c = self.conditioning(t, B, x.device)
        both = self.trunk(torch.cat([x, reverse_complement(x, self.complement)]), None if c is None else c.repeat(2, 1))
        return both[:B] + reverse_complement_logits(both[B:], self.complement)
