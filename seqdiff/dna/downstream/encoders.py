"""Sequence encoders for classification: tokens [B, L] + mask [B, L] -> pooled features [B, D].

`BackboneEncoder` wraps any seqdiff denoiser (Transformer, BiMamba, Caduceus-PS/Ph) without knowing its
internals: a forward hook on the backbone's `head` layer captures the head's input, the final hidden states.
Caduceus runs both strands through the head as one batch of 2B (the second B rows are the reverse
complements, flipped along L); the hook sees k*B rows, pools each copy with its own (flipped) mask and
averages the copies, which gives strand-invariant features of width `head.in_features` for every backbone.

`CNNEncoder` is the small convolutional baseline (embedding -> dilated conv stack -> pooling).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

POOLS = ("mean", "max", "first", "center", "window", "attention")
FIXED_POOLS = ("mean", "max", "first", "center", "window")  # no parameters: usable on frozen, cached features


def window_index(mask: Tensor, width: int) -> tuple[Tensor, Tensor]:
    """Positions (B, width) of the `width` tokens centred on each row's centre token (`center` pooling's, which
    sits at offset width // 2), and whether each lies inside the row's real tokens (B, width)."""
    start = mask.to(torch.int8).argmax(1)  # first True (0 for an all-pad row)
    n = mask.sum(1)
    idx = (start + n // 2 - width // 2)[:, None] + torch.arange(width, device=mask.device)  # (B, width)
    inside = (idx >= start[:, None]) & (idx < (start + n)[:, None])
    return idx.clamp(0, mask.shape[1] - 1), inside


def masked_pool(h: Tensor, mask: Tensor, how: str) -> Tensor:
    """h: (B, L, D), mask: BoolTensor (B, L) of real tokens (one contiguous run per row) -> (B, D).

    first: the first real token; center: the real token at offset len // 2 from it (junction- or TSS-centred
    tasks carry their signal there, and with relative positions only it is the one token that knows where
    everything else sits). window: `BackboneEncoder` concatenates the `pool_width` tokens around the centre
    (see there)."""
    m = mask.unsqueeze(-1).to(h.dtype)
    if how == "mean":
        return (h * m).sum(1) / m.sum(1).clamp(min=1.0)
    if how == "max":
        return h.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(1).nan_to_num(0.0, neginf=0.0)
    if how in ("first", "center"):  # the centre token is the window of width 1
        idx = mask.to(torch.int8).argmax(1) if how == "first" else window_index(mask, 1)[0][:, 0]
        return h[torch.arange(h.shape[0], device=h.device), idx.clamp(max=h.shape[1] - 1)]
    raise ValueError(f"pool must be one of {FIXED_POOLS}, got {how!r}")


class AttentionPool(nn.Module):
    """`heads` learned softmax-weighted sums over the real tokens, concatenated: (B, L, D) -> (B, heads * D).

    A head's score for token i is a linear function of its hidden state plus a learned bias for its position
    i (positions beyond `window` share the last bias), so a head can learn "look at the junction" on a
    fixed-layout task as well as "look for this motif anywhere"; the biases start at 0 (= mean pooling)."""

    def __init__(self, d_model: int, window: int, heads: int = 4) -> None:
        super().__init__()
        self.score = nn.Linear(d_model, heads)
        nn.init.zeros_(self.score.weight)
        nn.init.zeros_(self.score.bias)
        self.pos_bias = nn.Parameter(torch.zeros(heads, window))
        self.out_features = heads * d_model

    def forward(self, h: Tensor, mask: Tensor) -> Tensor:
        L = h.shape[1]
        pos = torch.arange(L, device=h.device).clamp(max=self.pos_bias.shape[1] - 1)
        s = self.score(h).transpose(1, 2) + self.pos_bias[:, pos]  # (B, heads, L)
        w = s.masked_fill(~mask.unsqueeze(1), float("-inf")).softmax(-1).nan_to_num(0.0)
        return (w @ h).flatten(1)  # (B, heads * D)


class BackboneEncoder(nn.Module):
    """A pretrained (or fresh) denoiser as a feature extractor; sequences longer than max_len are tiled.

    The backbone always runs in eval mode, with t=None (clean input), also while it is fine-tuned
    (gradients flow all the same): dropout is 0 in the seqdiff configs anyway, and Caduceus-Ph's training-mode
    random strand flips would otherwise change which strand each pooled feature comes from.
    """

    def __init__(self, backbone: nn.Module, pad_id: int, pool: str = "mean", pool_heads: int = 4,
                 pool_width: int = 20) -> None:
        super().__init__()
        head = getattr(backbone, "head", None)
        if not isinstance(head, nn.Linear):
            raise TypeError(f"{type(backbone).__name__} has no `head` nn.Linear whose input could serve as "
                            "features; a backbone for fine-tuning must end in `self.head = nn.Linear(d, V)`")
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
        self.backbone, self.pad_id, self.pool = backbone, pad_id, pool
        self.window = int(backbone.max_len)
        self.attention = AttentionPool(head.in_features, self.window, pool_heads) if pool == "attention" else None
        if pool == "window" and not 1 <= pool_width <= self.window:
            raise ValueError(f"pool_width must be in 1..{self.window} (the model window), got {pool_width}")
        self.pool_width = pool_width
        self.out_features = (self.attention.out_features if self.attention
                             else head.in_features * (pool_width if pool == "window" else 1))
        self._captured: list[Tensor] = []
        head.register_forward_hook(lambda _m, inputs, _out: self._captured.append(inputs[0]))

    def train(self, mode: bool = True) -> BackboneEncoder:
        super().train(mode)
        self.backbone.eval()
        return self

    def hidden(self, x: Tensor) -> Tensor:
        """Tokens (B, L) with L <= window -> head inputs (k, B, L, D) for the k strand copies."""
        self._captured.clear()
        self.backbone(x)
        h = self._captured.pop()
        B = x.shape[0]
        if h.shape[0] % B or h.shape[1] != x.shape[1]:
            raise RuntimeError(f"head input of shape {tuple(h.shape)} does not match tokens {tuple(x.shape)}")
        return h.view(h.shape[0] // B, B, *h.shape[1:])

    def features(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Hidden states (k, B, L', D) of the k strand copies and their masks (k, B, L') (tiles concatenated)."""
        B, L = x.shape
        W = self.window
        n = math.ceil(L / W)
        if n > 1:  # tile: (B, n*W) -> (B*n, W); a padded last tile is masked out of the pooling
            x = F.pad(x, (0, n * W - L), value=self.pad_id).view(B * n, W)
            mask = F.pad(mask, (0, n * W - L), value=False)
        h = self.hidden(x)  # (k, B*n, W', D)
        k, D = h.shape[0], h.shape[-1]
        Wt = h.shape[2]
        h = h.reshape(k, B, n * Wt, D)
        # copies after the first are reverse complements: flip each tile's mask
        masks = [mask if j == 0 else mask.view(B, n, Wt).flip(-1).reshape(B, n * Wt) for j in range(k)]
        return h, torch.stack(masks)

    def pool_features(self, h: Tensor, masks: Tensor) -> Tensor:
        """(k, B, L, D) + (k, B, L) -> (B, out_features): each strand copy pooled with its mask, averaged."""
        if self.attention is not None:
            return torch.stack([self.attention(h[j], masks[j]) for j in range(h.shape[0])]).mean(0)
        if self.pool == "window":
            return self.window_features(h, masks)
        return torch.stack([masked_pool(h[j], masks[j], self.pool) for j in range(h.shape[0])]).mean(0)

    def window_features(self, h: Tensor, masks: Tensor) -> Tensor:
        """pool=window: the hidden states of the `pool_width` tokens around the centre, concatenated in order
        (B, pool_width * D), zeros where the window runs past the sequence. Position-resolved, unlike a mean: a
        junction task's classes differ by what sits at given offsets, and an MDLM's clean (unmasked) positions carry
        no loss in pretraining, so one token's state need not describe its neighbours. Strand copies after the
        first are reverse complements flipped along L: their window is the mirror image, read back to front so
        every copy is aligned with the first before averaging. Tiled sequences (longer than the model window)
        are read across the tiles, in order; with strand copies each tile is flipped on its own, so those must fit
        one window."""
        k, B, L, D = h.shape
        if L > self.window and k > 1:
            raise ValueError(f"pool=window on a two-strand backbone needs sequences of at most the model window "
                             f"({self.window} tokens), got {L}: set long_sequences=truncate")
        idx, inside = window_index(masks[0], self.pool_width)  # (B, w)
        rows = torch.arange(B, device=h.device)[:, None]
        copies = [h[j][rows, idx if j == 0 else L - 1 - idx] for j in range(k)]  # each (B, w, D), aligned
        out = torch.stack(copies).mean(0) * inside.unsqueeze(-1).to(h.dtype)
        return out.flatten(1)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return self.pool_features(*self.features(x, mask))


class MemoizedEncoder(nn.Module):
    """Caches a frozen encoder's pooled features per distinct token row (keyed by its bytes).

    A linear probe then costs one backbone pass per distinct sequence for all epochs and seeds (the frozen
    backbone runs in eval mode with t=None, so its features are deterministic). With pool=attention the
    pooling is trained, so the cache holds the hidden states and the pooling runs (with gradients) on them.
    """

    def __init__(self, encoder: BackboneEncoder, cache: dict | None = None) -> None:
        super().__init__()
        self.encoder, self.out_features, self.window = encoder, encoder.out_features, encoder.window
        self.encoder.backbone.requires_grad_(False)
        self._cache: dict[bytes, Tensor] = {} if cache is None else cache  # share it between encoders of one backbone

    @property
    def backbone(self) -> nn.Module:
        return self.encoder.backbone

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        keys = [row.numpy().tobytes() for row in x.cpu()]
        miss = [i for i, k in enumerate(keys) if k not in self._cache]
        trainable = self.encoder.attention is not None
        if miss:
            with torch.no_grad():
                h, masks = self.encoder.features(x[miss], mask[miss])
                feats = zip(h.unbind(1), masks.unbind(1), strict=True) if trainable else \
                    self.encoder.pool_features(h, masks)
                for i, f in zip(miss, feats, strict=True):
                    self._cache[keys[i]] = f
        if not trainable:
            return torch.stack([self._cache[k] for k in keys])
        h = torch.stack([self._cache[k][0] for k in keys], 1)
        return self.encoder.pool_features(h, torch.stack([self._cache[k][1] for k in keys], 1))


class CNNEncoder(nn.Module):
    """Embedding -> n_layers x (Conv1d, GELU, BatchNorm) with growing dilation -> masked pooling -> (B, C)."""

    def __init__(self, vocab_size: int, pad_id: int, channels: int = 128, kernel_size: int = 9,
                 n_layers: int = 3, pool: str = "max") -> None:
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
        self.pad_id, self.pool, self.out_features = pad_id, pool, channels
        self.embed = nn.Embedding(vocab_size, channels, padding_idx=pad_id)
        self.convs = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, padding="same", dilation=2**i) for i in range(n_layers)
        )
        self.norms = nn.ModuleList(nn.BatchNorm1d(channels) for _ in range(n_layers))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        h = self.embed(x).transpose(1, 2)  # (B, C, L)
        m = mask.unsqueeze(1).to(h.dtype)
        for conv, norm in zip(self.convs, self.norms, strict=True):
            h = h + norm(F.gelu(conv(h * m)))  # residual; zero the pads so they carry no signal
        return masked_pool(h.transpose(1, 2), mask, self.pool)
