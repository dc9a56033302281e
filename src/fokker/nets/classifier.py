"""Noise-conditional classifiers: networks of (x_t, c) giving the logits of p_t(y | x_t), for classifier
guidance (Dhariwal & Nichol 2021, sec. 4). They take no labels: the labels are their targets."""

from __future__ import annotations

from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor, nn

from .embedding import embed_conditions
from .mlp import MLP
from .registry import register_network
from .unet import _norm, _zero, build_trunk, encode


@register_network("unet_encoder")
class EncoderClassifier(nn.Module):
    """ADM's noisy classifier (Dhariwal & Nichol 2021, sec. 4 and app. C: the U-Net's encoder with the
    "pooled" head): the time embedding, conv_in, the encoder and the middle block of `fokker.nets.UNet`
    (the same blocks, built by the same functions), then GroupNorm-SiLU, global average pooling and a
    zero-initialised Linear to `num_classes` logits (uniform at init). Maps (x, t) with x of shape
    (B, in_channels, H, W) and t the noise conditioning (B,) or a scalar to (B, num_classes).
    """

    task: ClassVar[str] = "classifier"

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 1,
        base_channels: int = 32,
        channel_mult: tuple[int, ...] = (1, 2, 2),
        num_res_blocks: int = 1,
        attention_resolutions: tuple[int, ...] = (7,),
        dropout: float = 0.0,
        num_heads: int = 4,
        time_scale: float = 1000.0,
        groups: int = 8,
        image_size: int | None = None,
    ) -> None:
        super().__init__()
        ch = build_trunk(
            self, in_channels, base_channels, channel_mult, num_res_blocks, attention_resolutions, dropout,
            num_heads, time_scale, groups, image_size,
        )[1]  # fmt: skip
        self.out = nn.Sequential(
            _norm(ch, groups), nn.SiLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), _zero(nn.Linear(ch, num_classes))
        )

    def forward(self, x: Tensor, t: Tensor | float) -> Tensor:
        """``x``: (B, C, H, W); ``t``: (B,) or scalar noise level; the logits (B, num_classes)."""
        emb = F.silu(embed_conditions(self.time_embed, None, t, None, x)).to(x.dtype)
        h = encode(self.conv_in, self.down, x, emb)[-1]
        for m in self.mid:
            h = m(h, emb)
        return self.out(h)


@register_network("mlp_classifier")
class MLPClassifier(MLP):
    """A noisy classifier of vector data: `fokker.nets.MLP` (time-conditioned the same way, every hidden
    layer adding its projection of the time embedding) with `num_classes` logits as its output, its head
    zero-initialised (uniform at init). Maps (x, t) with x of shape (B, dim) to (B, num_classes)."""

    task: ClassVar[str] = "classifier"

    def __init__(
        self,
        dim: int,
        num_classes: int,
        hidden: int = 128,
        depth: int = 3,
        time_scale: float = 1000.0,
        time_embed_dim: int = 64,
    ) -> None:
        super().__init__(dim, hidden, depth, num_classes, None, time_scale, time_embed_dim)

    def forward(self, x: Tensor, t: Tensor | float) -> Tensor:
        """``x``: (B, dim); ``t``: (B,) or scalar noise level; the logits (B, num_classes)."""
        return super().forward(x, t)
