"""Backbones for guidance: a class-conditional denoiser (classifier-free guidance) and a time-conditioned
classifier of noisy sequences (classifier guidance). Both are the reference `Transformer`.

`ClassConditionalTransformer`: a label embedding (num_classes + 1 rows; the last is the "no label" class used
for unconditional predictions and for label dropout) is added to the adaLN conditioning vector, as class-
conditional DiT adds it to the timestep embedding. forward(x, t, y=None): y=None means unconditional.

`NoisyClassifier`: the transformer trunk, mean-pooled over positions, then a linear layer to class
logits (B, C). It sees noised inputs x_t and the time t (time conditioning on by default), so it estimates
p(y | x_t, t), the quantity classifier guidance reweights the reverse process with.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from seqdiff.backbones.transformer import Transformer


class ClassConditionalTransformer(Transformer):
    def __init__(self, vocab_size: int, max_len: int, num_classes: int, **kwargs) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        super().__init__(vocab_size, max_len, **kwargs)
        self.num_classes = num_classes
        self.label_embed = nn.Embedding(num_classes + 1, self.d_cond)  # row num_classes = no label
        nn.init.normal_(self.label_embed.weight, std=0.02)

    def null_labels(self, batch_size: int, device: torch.device) -> Tensor:
        return torch.full((batch_size,), self.num_classes, dtype=torch.long, device=device)

    def forward(self, x: Tensor, t: Tensor | None = None, y: Tensor | None = None,
                kv_caches: list[dict] | None = None) -> Tensor:
        if y is None:
            y = self.null_labels(x.shape[0], x.device)
        if y.min() < 0 or y.max() > self.num_classes:
            raise ValueError(f"class labels must be in 0..{self.num_classes} ({self.num_classes} = none), "
                             f"got {y.min().item()}..{y.max().item()}")
        return super().forward(x, t, kv_caches, cond=self.label_embed(y.to(x.device)))


class NoisyClassifier(Transformer):
    """(x_t: LongTensor[B, L], t: FloatTensor[B]) -> class logits (B, num_classes), mean-pooled over positions
    (sequences of one task share a length: splice windows are 60 bp)."""

    def __init__(self, vocab_size: int, max_len: int, num_classes: int, time_conditioning: bool = True,
                 **kwargs) -> None:
        if num_classes < 2:
            raise ValueError(f"a classifier needs num_classes >= 2, got {num_classes}")
        super().__init__(vocab_size, max_len, time_conditioning=time_conditioning, **kwargs)
        self.num_classes = num_classes
        d_model = self.head.in_features
        self.head = nn.Identity()  # the trunk now returns final hidden states (B, L, D)
        self.classify = nn.Linear(d_model, num_classes)

    def forward(self, x: Tensor, t: Tensor | None = None) -> Tensor:
        return self.classify(super().forward(x, t).mean(1))  # (B, L, D) -> (B, C)
