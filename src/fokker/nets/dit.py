"""Diffusion transformer (DiT; Peebles & Xie 2023): a ViT over patches of the image, conditioned on the noise
level and the class through adaptive layer norm."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .embedding import LabelEmbedding, TimeEmbedding, embed_conditions
from .registry import register_network

BLOCKS = ("adaln_zero", "adaln")  # the conditioning of the blocks (Peebles & Xie 2023, sec. 3.2)
FREQUENCY_DIM = 256  # the sinusoidal time features fed to the time MLP (DiT's TimestepEmbedder)


def sincos_1d(dim: int, pos: Tensor) -> Tensor:
    """MAE's 1-D sin-cos embedding of positions (n,): [sin(pos w_k), cos(pos w_k)], w_k = 10000^(-k / (dim/2))."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim // 2))
    args = pos.double()[:, None] * omega[None, :]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


def sincos_2d(dim: int, grid: int) -> Tensor:
    """The fixed 2-D position embedding of a grid x grid token map (MAE; DiT sec. 3.1), (grid^2, dim), tokens in
    row-major order: the first half of the channels encodes the row, the second half the column."""
    if dim % 4:
        raise ValueError(f"hidden_size must be a multiple of 4 for the 2-D sin-cos embedding, got {dim}")
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    return torch.cat([sincos_1d(dim // 2, rows.reshape(-1)), sincos_1d(dim // 2, cols.reshape(-1))], dim=1)


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """adaLN's modulation of normalised tokens (B, N, D) by (B, D) vectors: x (1 + scale) + shift."""
    return x * (1 + scale[:, None]) + shift[:, None]


class DiTBlock(nn.Module):
    """A transformer block with adaLN conditioning (sec. 3.2): LN (no affine) -> modulate -> self-attention
    -> gate -> residual, the same for the MLP (GELU, tanh). `gated` (adaLN-Zero) regresses the gates alpha
    with the shifts and scales, 6 vectors; plain adaLN has no gates (alpha = 1), 4 vectors. The modulation
    Linear takes SiLU(c), which the network computes once for all blocks."""

    def __init__(self, hidden: int, num_heads: int, mlp_ratio: float, gated: bool) -> None:
        super().__init__()
        if hidden % num_heads:
            raise ValueError(f"num_heads={num_heads} does not divide hidden_size={hidden}")
        self.num_heads, self.gated = num_heads, gated
        self.norm1 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.norm2 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        width = int(hidden * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(hidden, width), nn.GELU(approximate="tanh"), nn.Linear(width, hidden))
        self.modulation = nn.Linear(hidden, (6 if gated else 4) * hidden)

    def attention(self, x: Tensor) -> Tensor:
        """Multi-head self-attention over the tokens (B, N, D) with scaled_dot_product_attention."""
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d))

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        """``x``: tokens (B, N, D); ``c``: SiLU of the conditioning vector (B, D)."""
        mod = self.modulation(c).chunk(6 if self.gated else 4, dim=1)
        shift1, scale1, shift2, scale2 = mod[:4]
        gate1, gate2 = (mod[4][:, None], mod[5][:, None]) if self.gated else (1.0, 1.0)
        x = x + gate1 * self.attention(modulate(self.norm1(x), shift1, scale1))
        return x + gate2 * self.mlp(modulate(self.norm2(x), shift2, scale2))


class FinalLayer(nn.Module):
    """LN (no affine) -> adaLN modulation (shift, scale) -> Linear to the patch * patch * out_channels values
    of each token (sec. 3.1, "transformer decoder")."""

    def __init__(self, hidden: int, patch: int, out_channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.modulation = nn.Linear(hidden, 2 * hidden)
        self.linear = nn.Linear(hidden, patch * patch * out_channels)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        """``x``: tokens (B, N, D); ``c``: SiLU of the conditioning vector (B, D)."""
        shift, scale = self.modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm(x), shift, scale))


@register_network("dit")
class DiT(nn.Module):
    """Diffusion transformer (Peebles & Xie 2023) mapping (x, t, y) to an output the size of x.

    x (B, in_channels, image_size, image_size), an image or a latent, is cut into patch_size x patch_size
    patches by a strided convolution (sec. 3.1, "patchify"); a size that patch_size does not divide is padded
    with zeros at the bottom and right up to the next multiple, and the output cropped back. Fixed 2-D sin-cos
    position embeddings (a non-persistent buffer) are added to the tokens, which go through `depth` blocks and
    the final layer, and are put back into an image (B, out_channels, H, W). The conditioning vector c is the
    time embedding plus, with `num_classes`, the label embedding (`num_classes` is the null class used when y
    is None, for classifier-free guidance), as in the U-Net.

    ``block``: "adaln_zero" (sec. 3.2, adaLN-Zero: gates alpha, and every block's modulation Linear
    zero-initialised, so each block starts as the identity) or "adaln" (the ablation's plain adaLN: no gates,
    modulation initialised like the other Linears). In both the final layer's modulation and output Linear are
    zero-initialised, so a fresh network outputs 0 and the two differ only in their blocks. The rest is
    initialised as in the paper's code: xavier-uniform Linears (the patch embedding as a Linear on the
    flattened patch) with zero biases, normal(0, 0.02) for the time MLP's weights and the label table.
    """

    task: ClassVar[str] = "denoiser"  # its output is a Denoiser's prediction (fokker.nets.TASKS)

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int | None = None,
        image_size: int = 28,
        patch_size: int = 4,
        hidden_size: int = 96,
        depth: int = 4,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        num_classes: int | None = None,
        time_scale: float = 1000.0,
        block: str = "adaln_zero",
    ) -> None:
        super().__init__()
        if block not in BLOCKS:
            raise ValueError(f"unknown block {block!r}; accepted: {', '.join(BLOCKS)}")
        if mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio must be positive, got {mlp_ratio}")
        self.in_channels, self.out_channels = in_channels, out_channels or in_channels
        self.image_size, self.patch_size = image_size, patch_size
        self.grid = math.ceil(image_size / patch_size)
        self.patch_embed = nn.Conv2d(in_channels, hidden_size, patch_size, stride=patch_size)
        self.register_buffer("pos_embed", sincos_2d(hidden_size, self.grid).float()[None], persistent=False)
        self.time_embed = TimeEmbedding(FREQUENCY_DIM, hidden_size, scale=time_scale)
        self.label_embed = None if num_classes is None else LabelEmbedding(num_classes, hidden_size)
        gated = block == "adaln_zero"
        self.blocks = nn.ModuleList(DiTBlock(hidden_size, num_heads, mlp_ratio, gated) for _ in range(depth))
        self.final = FinalLayer(hidden_size, patch_size, self.out_channels)
        self._init_weights(gated)

    def _init_weights(self, zero_blocks: bool) -> None:
        """The initialisation of the paper's code (see the class docstring)."""
        for m in self.modules():
            if isinstance(m, nn.Linear | nn.Conv2d):
                nn.init.xavier_uniform_(m.weight.view(m.weight.shape[0], -1))
                nn.init.zeros_(m.bias)
        for m in (self.time_embed.mlp[0], self.time_embed.mlp[2]):
            nn.init.normal_(m.weight, std=0.02)
        if self.label_embed is not None:
            nn.init.normal_(self.label_embed.table.weight, std=0.02)
        zero = [self.final.modulation, self.final.linear] + [b.modulation for b in self.blocks if zero_blocks]
        for m in zero:
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)

    def tokens(self, x: Tensor) -> Tensor:
        """The patch tokens of x plus the position embeddings, (B, grid^2, hidden_size); pads x first."""
        if tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(f"DiT was built for {self.image_size}x{self.image_size} inputs, got {tuple(x.shape)}")
        pad = self.grid * self.patch_size - self.image_size
        x = F.pad(x, (0, pad, 0, pad)) if pad else x
        return self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos_embed

    def unpatchify(self, h: Tensor) -> Tensor:
        """Tokens (B, grid^2, p*p*C) -> image (B, C, image_size, image_size), cropping the padding."""
        b, g, p, c = h.shape[0], self.grid, self.patch_size, self.out_channels
        img = h.reshape(b, g, g, p, p, c).permute(0, 5, 1, 3, 2, 4).reshape(b, c, g * p, g * p)
        return img[:, :, : self.image_size, : self.image_size]

    def forward(self, x: Tensor, t: Tensor | float, y: Tensor | None = None) -> Tensor:
        """``x``: (B, C, H, W); ``t``: (B,) or scalar noise level; ``y``: (B,) labels or None."""
        c = F.silu(embed_conditions(self.time_embed, self.label_embed, t, y, x)).to(x.dtype)
        h = self.tokens(x)
        for blk in self.blocks:
            h = blk(h, c)
        return self.unpatchify(self.final(h, c))
