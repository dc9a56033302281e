"""Noise-level and class-label embeddings shared by the networks."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def sinusoidal_embedding(t: Tensor, dim: int, scale: float = 1000.0, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding of ``scale * t`` (Vaswani et al. 2017, sec. 3.5; Ho et al. 2020).

    With ``half = dim // 2`` and frequencies ``w_k = max_period ** (-k / half)``, k < half, the
    result is ``[sin(scale*t*w_0), ..., sin(scale*t*w_{half-1}), cos(scale*t*w_0), ...]``, shape
    ``(batch, dim)``; an odd ``dim`` gets one trailing zero column.
    """
    if dim < 1:
        raise ValueError(f"embedding dim must be >= 1, got {dim}")
    t = torch.as_tensor(t).reshape(-1).float()
    half = dim // 2
    k = torch.arange(half, device=t.device, dtype=torch.float32)
    freqs = torch.exp(-math.log(max_period) * k / max(half, 1))
    args = (scale * t)[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    if dim % 2:
        emb = torch.nn.functional.pad(emb, (0, 1))
    return emb


def batch_times(t: Tensor | float, batch: int, device: torch.device) -> Tensor:
    """Return ``t`` as a float tensor of shape ``(batch,)``; a scalar or 0-dim/1-element ``t`` is
    broadcast to the batch."""
    t = torch.as_tensor(t, device=device)
    if not torch.is_floating_point(t):
        t = t.float()
    if t.numel() == 1:
        return t.reshape(1).expand(batch)
    if t.shape != (batch,):
        raise ValueError(f"t must be a scalar or have shape ({batch},), got {tuple(t.shape)}")
    return t


class TimeEmbedding(nn.Module):
    """Noise-level embedding of Ho et al. 2020: sinusoidal -> Linear -> SiLU -> Linear."""

    def __init__(
        self,
        embed_dim: int,
        out_dim: int | None = None,
        scale: float = 1000.0,
        max_period: float = 10000.0,
    ) -> None:
        super().__init__()
        out_dim = out_dim or embed_dim
        self.embed_dim, self.scale, self.max_period = embed_dim, scale, max_period
        self.mlp = nn.Sequential(nn.Linear(embed_dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))

    def forward(self, t: Tensor) -> Tensor:
        """Map times ``(batch,)`` to embeddings ``(batch, out_dim)``."""
        emb = sinusoidal_embedding(t, self.embed_dim, self.scale, self.max_period)
        return self.mlp(emb.to(self.mlp[0].weight.dtype))


class LabelEmbedding(nn.Module):
    """Class embedding with a learned "null" row at index ``num_classes`` for classifier-free
    guidance (Ho & Salimans 2022); ``y=None`` means the null class for every example."""

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.table = nn.Embedding(num_classes + 1, dim)

    def forward(self, y: Tensor | int | None, batch: int) -> Tensor:
        """Embed labels ``(batch,)`` in ``[0, num_classes]``; raise ValueError outside it."""
        device = self.table.weight.device
        if y is None:
            y = torch.full((batch,), self.num_classes, dtype=torch.long, device=device)
        y = torch.as_tensor(y, device=device)
        if torch.is_floating_point(y) or y.dtype == torch.bool:
            raise ValueError(f"class labels must be integers, got dtype {y.dtype}")
        if y.numel() == 1:
            y = y.reshape(1).expand(batch)
        if y.shape != (batch,):
            raise ValueError(f"y must have shape ({batch},), got {tuple(y.shape)}")
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi > self.num_classes:
            bad = lo if lo < 0 else hi
            raise ValueError(
                f"class label {bad} out of range; accepted 0..{self.num_classes} ({self.num_classes} = null class)"
            )
        return self.table(y.long())


def check_no_labels(y: Tensor | None) -> None:
    """Raise ValueError when labels are passed to an unconditional network."""
    if y is not None:
        raise ValueError("labels y were given but the network has num_classes=None")


def embed_conditions(
    time_embed: TimeEmbedding, label_embed: LabelEmbedding | None, t: Tensor | float, y: Tensor | None, x: Tensor
) -> Tensor:
    """The conditioning vector of a batch x: the time embedding, plus the label embedding on a
    class-conditional network (labels on an unconditional one are a ValueError)."""
    b = x.shape[0]
    emb = time_embed(batch_times(t, b, x.device))
    if label_embed is None:
        check_no_labels(y)
        return emb
    return emb + label_embed(y, b)
