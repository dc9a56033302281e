"""Noise-conditional classifiers: networks of (x_t, c) giving the logits of p_t(y | x_t), for classifier
guidance (Dhariwal & Nichol 2021, sec. 4). They take no labels: the labels are their targets."""

from __future__ import annotations

from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor, nn

from .embedding import TimeEmbedding, embed_conditions
from .mlp import MLP
from .unet import _norm, _zero, block_maker, build_down, build_mid, encode, level_resolutions


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
        channel_mult, attention_resolutions = tuple(channel_mult), tuple(attention_resolutions)
        if not channel_mult or num_res_blocks < 1:
            raise ValueError("channel_mult must be non-empty and num_res_blocks >= 1")
        self.config = {
            "type": "unet_encoder", "num_classes": num_classes, "in_channels": in_channels,
            "base_channels": base_channels, "channel_mult": list(channel_mult),
            "num_res_blocks": num_res_blocks, "attention_resolutions": list(attention_resolutions),
            "dropout": dropout, "num_heads": num_heads, "time_scale": time_scale, "groups": groups,
            "image_size": image_size,
        }  # fmt: skip
        sizes = level_resolutions(channel_mult, attention_resolutions, image_size)
        emb_dim = 4 * base_channels
        self.time_embed = TimeEmbedding(base_channels, emb_dim, scale=time_scale)
        block = block_maker(emb_dim, dropout, groups, num_heads, attention_resolutions)
        self.conv_in = nn.Conv2d(in_channels, base_channels, 3, padding=1)
        self.down, ch, _ = build_down(block, base_channels, channel_mult, num_res_blocks, sizes)
        self.mid = build_mid(block, ch, sizes[-1], emb_dim, dropout, groups)
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
        self.config = {
            "type": "mlp_classifier", "dim": dim, "num_classes": num_classes, "hidden": hidden,
            "depth": depth, "time_scale": time_scale, "time_embed_dim": time_embed_dim,
        }  # fmt: skip

    def forward(self, x: Tensor, t: Tensor | float) -> Tensor:
        """``x``: (B, dim); ``t``: (B,) or scalar noise level; the logits (B, num_classes)."""
        return super().forward(x, t)
