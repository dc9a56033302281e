"""MLP denoiser for vector data (toy 2-D sets, tabular data)."""

from __future__ import annotations

from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor, nn

from .embedding import LabelEmbedding, TimeEmbedding, embed_conditions
from .registry import register_network


@register_network("mlp")
class MLP(nn.Module):
    """Noise-conditional MLP mapping (x, t, y) with x of shape (B, dim) to (B, out_dim).

    The time embedding (Ho et al. 2020 sinusoidal -> Linear -> SiLU -> Linear), plus the class
    embedding when ``num_classes`` is set (row ``num_classes`` is the null class used when ``y`` is
    None, for classifier-free guidance), is projected per layer and *added* to the pre-activation
    of every hidden layer: ``h <- SiLU(W_i h + b_i + P_i e)``. ``depth`` hidden layers of width
    ``hidden``; the output layer is zero-initialised, so the network outputs 0 at init.
    """

    task: ClassVar[str] = "denoiser"  # its output is a Denoiser's prediction (fokker.nets.TASKS)

    def __init__(
        self,
        dim: int,
        hidden: int = 128,
        depth: int = 3,
        out_dim: int | None = None,
        num_classes: int | None = None,
        time_scale: float = 1000.0,
        time_embed_dim: int = 64,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        out_dim = out_dim or dim
        self.time_embed = TimeEmbedding(time_embed_dim, scale=time_scale)
        self.label_embed = None if num_classes is None else LabelEmbedding(num_classes, time_embed_dim)
        self.emb_proj = nn.Linear(time_embed_dim, depth * hidden)  # all P_i at once
        self.layers = nn.ModuleList([nn.Linear(dim if i == 0 else hidden, hidden) for i in range(depth)])
        self.head = nn.Linear(hidden, out_dim)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: Tensor, t: Tensor | float, y: Tensor | None = None) -> Tensor:
        """``x``: (B, dim); ``t``: (B,) or scalar noise level; ``y``: (B,) labels or None."""
        emb = embed_conditions(self.time_embed, self.label_embed, t, y, x)
        cond = self.emb_proj(F.silu(emb)).to(x.dtype).chunk(len(self.layers), dim=1)
        h = x
        for layer, c in zip(self.layers, cond, strict=True):
            h = F.silu(layer(h) + c)
        return self.head(h)
