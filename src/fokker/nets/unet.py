"""Image U-Net in the style of Ho et al. 2020 (DDPM) and Nichol & Dhariwal 2021 (improved DDPM)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .embedding import LabelEmbedding, TimeEmbedding, embed_conditions
from .low_res import condition_on_low_res, low_res_conditioning
from .registry import register_network


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    """GroupNorm whose group count is the largest divisor of ``channels`` that is <= ``groups``."""
    g = max(d for d in range(1, min(groups, channels) + 1) if channels % d == 0)
    return nn.GroupNorm(g, channels)


def _zero(module: nn.Module) -> nn.Module:
    """Zero a module's parameters (so a residual branch starts as the identity)."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """Residual block: GN-SiLU-conv, GN with FiLM scale/shift from the embedding, SiLU, dropout,
    zero-initialised conv; 1x1 skip projection when the channel count changes."""

    def __init__(self, cin: int, cout: int, emb_dim: int, dropout: float, groups: int) -> None:
        super().__init__()
        self.norm1 = _norm(cin, groups)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.film = nn.Linear(emb_dim, 2 * cout)
        self.norm2 = _norm(cout, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = _zero(nn.Conv2d(cout, cout, 3, padding=1))
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        """``x``: (B, cin, H, W); ``emb``: (B, emb_dim), already passed through SiLU."""
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class AttentionBlock(nn.Module):
    """Multi-head self-attention over the H*W positions (GN, 1x1 qkv, zero-initialised output
    projection, residual), using ``scaled_dot_product_attention``."""

    def __init__(self, channels: int, num_heads: int, groups: int, resolution: int) -> None:
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"num_heads={num_heads} does not divide {channels} channels")
        self.num_heads, self.resolution = num_heads, resolution
        self.norm = _norm(channels, groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = _zero(nn.Conv2d(channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        """Attend over positions; input and output (B, C, H, W)."""
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.num_heads, c // self.num_heads, h * w)
        q, k, v = qkv.transpose(-1, -2).unbind(1)  # each (B, heads, HW, C/heads)
        out = F.scaled_dot_product_attention(q, k, v)
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class ResAttn(nn.Module):
    """A residual block followed by self-attention (or the identity) at one resolution."""

    def __init__(self, res: ResBlock, attn: nn.Module) -> None:
        super().__init__()
        self.res, self.attn = res, attn

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        """Apply the residual block with embedding ``emb``, then attention."""
        return self.attn(self.res(x, emb))


class Downsample(nn.Module):
    """Stride-2 3x3 convolution: size n -> ceil(n / 2)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        """Halve the spatial size (rounding up); ``emb`` is ignored."""
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour upsampling to an exact size (odd sizes round-trip), then a 3x3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        """Upsample ``x`` to spatial ``size``."""
        return self.conv(F.interpolate(x, size=size, mode="nearest"))


def level_resolutions(
    channel_mult: tuple[int, ...], attention_resolutions: tuple[int, ...], image_size: int | None
) -> list[int]:
    """Spatial size of each U-Net level (n, ceil(n/2), ...).

    Without ``image_size`` the deepest level is taken to be ``min(attention_resolutions)`` and each
    level above it twice the one below (exact for 28x28 with (14, 7) or (7,) and three levels).
    """
    levels = len(channel_mult)
    if image_size is not None:
        sizes = [image_size]
        for _ in range(levels - 1):
            sizes.append(math.ceil(sizes[-1] / 2))
    elif attention_resolutions:
        sizes = [min(attention_resolutions) * 2 ** (levels - 1 - i) for i in range(levels)]
    else:
        return [0] * levels
    bad = sorted(set(attention_resolutions) - set(sizes))
    if bad:
        how = f"image_size={image_size}" if image_size else "no image_size (pass one)"
        raise ValueError(
            f"attention resolution(s) {bad} not reachable with {how} and {levels} levels; valid sizes: {sizes}"
        )
    return sizes


Block = Callable[[int, int, int], ResAttn]  # (in channels, out channels, resolution) -> a residual block


def block_maker(
    emb_dim: int, dropout: float, groups: int, num_heads: int, attention_resolutions: tuple[int, ...]
) -> Block:
    """The residual blocks of a U-Net: a ResBlock, followed by self-attention at the listed resolutions."""

    def block(cin: int, cout: int, res: int) -> ResAttn:
        attn: nn.Module = nn.Identity()
        if res in attention_resolutions:
            attn = AttentionBlock(cout, num_heads, groups, res)
        return ResAttn(ResBlock(cin, cout, emb_dim, dropout, groups), attn)

    return block


def build_down(
    block: Block, base: int, channel_mult: tuple[int, ...], n: int, sizes: list[int]
) -> tuple[nn.ModuleList, int, list[int]]:
    """The encoder, flat: ResAttn * n, Downsample, ... per level; returns it, its channels and those of its
    skips (every output is one)."""
    down = nn.ModuleList()
    skips, ch = [base], base
    for i, mult in enumerate(channel_mult):
        for _ in range(n):
            down.append(block(ch, base * mult, sizes[i]))
            ch = base * mult
            skips.append(ch)
        if i < len(channel_mult) - 1:
            down.append(Downsample(ch))
            skips.append(ch)
    return down, ch, skips


def build_mid(block: Block, ch: int, size: int, emb_dim: int, dropout: float, groups: int) -> nn.ModuleList:
    """The middle block at the deepest level: ResAttn (attention when `size` is listed), then a ResBlock."""
    return nn.ModuleList([block(ch, ch, size), ResBlock(ch, ch, emb_dim, dropout, groups)])


def encode(conv_in: nn.Module, down: nn.ModuleList, x: Tensor, emb: Tensor) -> list[Tensor]:
    """The encoder's outputs, from conv_in's to the deepest level's (the U-Net's skips)."""
    hs = [conv_in(x)]
    for m in down:
        hs.append(m(hs[-1], emb))
    return hs


def build_trunk(
    net: nn.Module,
    in_channels: int,
    base_channels: int,
    channel_mult: tuple[int, ...],
    num_res_blocks: int,
    attention_resolutions: tuple[int, ...],
    dropout: float,
    num_heads: int,
    time_scale: float,
    groups: int,
    image_size: int | None,
    num_classes: int | None = None,
) -> tuple[Block, int, list[int], list[int]]:
    """Build on `net` what the U-Net and its encoder classifier share: `time_embed`, `label_embed` (None
    without `num_classes`), `conv_in`, the encoder `down` and the middle block `mid`, in that order (the
    order of their random initialisation). Returns the block maker, the deepest level's channels, the skips'
    channels and the levels' sizes."""
    channel_mult, attention_resolutions = tuple(channel_mult), tuple(attention_resolutions)
    if not channel_mult or num_res_blocks < 1:
        raise ValueError("channel_mult must be non-empty and num_res_blocks >= 1")
    sizes = level_resolutions(channel_mult, attention_resolutions, image_size)
    emb_dim = 4 * base_channels
    net.time_embed = TimeEmbedding(base_channels, emb_dim, scale=time_scale)
    net.label_embed = None if num_classes is None else LabelEmbedding(num_classes, emb_dim)
    block = block_maker(emb_dim, dropout, groups, num_heads, attention_resolutions)
    net.conv_in = nn.Conv2d(in_channels, base_channels, 3, padding=1)
    net.down, ch, skips = build_down(block, base_channels, channel_mult, num_res_blocks, sizes)
    net.mid = build_mid(block, ch, sizes[-1], emb_dim, dropout, groups)
    return block, ch, skips, sizes


@register_network("unet")
class UNet(nn.Module):
    """Noise-conditional U-Net (Ho et al. 2020; Nichol & Dhariwal 2021) mapping (x, t, y) to an
    output of the same spatial size; the final conv is zero-initialised, so it outputs 0 at init.

    ``attention_resolutions`` are spatial sizes at which self-attention follows each residual
    block (down and up paths, and the middle block when its size is listed). Pass ``image_size``
    to place and check them exactly; without it the smallest listed size is the deepest level's.
    With ``num_classes`` set, labels ``y`` in ``[0, num_classes]`` are embedded (``num_classes``
    is the null class used when ``y`` is None) and added to the time embedding.

    With ``low_res_channels`` > 0 it is a super-resolution network (SR3; Ho et al. 2021's cascade): it takes
    the model_kwargs ``low_res``, a (B, low_res_channels, low_res_size, low_res_size) image upsampled and
    concatenated to x before the first conv, and ``aug_level`` (B,), the level of its conditioning augmentation
    in [0, aug_max], embedded and added to the time embedding (fokker.nets.low_res). With 0 (the default) the
    network is exactly the plain U-Net: same parameters, same state_dict keys.
    """

    task: ClassVar[str] = "denoiser"  # its output is a Denoiser's prediction (fokker.nets.TASKS)

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int | None = None,
        base_channels: int = 32,
        channel_mult: tuple[int, ...] = (1, 2, 2),
        num_res_blocks: int = 1,
        attention_resolutions: tuple[int, ...] = (7,),
        dropout: float = 0.0,
        num_heads: int = 4,
        num_classes: int | None = None,
        time_scale: float = 1000.0,
        groups: int = 8,
        image_size: int | None = None,
        low_res_channels: int = 0,
        low_res_size: int | None = None,
        aug_max: float | None = None,
    ) -> None:
        super().__init__()
        block, ch, skips, sizes = build_trunk(
            self, in_channels + low_res_channels, base_channels, channel_mult, num_res_blocks, attention_resolutions,
            dropout, num_heads, time_scale, groups, image_size, num_classes,
        )  # fmt: skip
        ch = self._build_up(block, ch, skips, base_channels, tuple(channel_mult), num_res_blocks, sizes)
        out_channels = out_channels or in_channels
        self.out = nn.Sequential(_norm(ch, groups), nn.SiLU(), _zero(nn.Conv2d(ch, out_channels, 3, padding=1)))
        # last, and None without low_res_channels: the plain U-Net is built and initialised as it always was
        self.low_res_conditioning = low_res_conditioning(
            low_res_channels, low_res_size, aug_max, base_channels, 4 * base_channels
        )

    def _build_up(
        self,
        block: Callable,
        ch: int,
        skips: list[int],
        base: int,
        channel_mult: tuple[int, ...],
        n: int,
        sizes: list[int],
    ) -> int:
        """The decoder, flat: ResAttn * (n + 1) on [h, skip], Upsample, ...; returns its channels."""
        self.up = nn.ModuleList()
        for i, mult in reversed(list(enumerate(channel_mult))):
            for _ in range(n + 1):
                self.up.append(block(ch + skips.pop(), base * mult, sizes[i]))
                ch = base * mult
            if i > 0:
                self.up.append(Upsample(ch))
        return ch

    def forward(
        self,
        x: Tensor,
        t: Tensor | float,
        y: Tensor | None = None,
        low_res: Tensor | None = None,
        aug_level: Tensor | float | None = None,
    ) -> Tensor:
        """``x``: (B, C, H, W); ``t``: (B,) or scalar noise level; ``y``: (B,) labels or None; ``low_res`` and
        ``aug_level``: a super-resolution network's low-resolution image and its augmentation level."""
        emb = embed_conditions(self.time_embed, self.label_embed, t, y, x)
        x, emb = condition_on_low_res(self.low_res_conditioning, x, emb, low_res, aug_level)
        emb = F.silu(emb).to(x.dtype)

        hs = encode(self.conv_in, self.down, x, emb)
        h = hs[-1]
        for m in self.mid:
            h = m(h, emb)
        for m in self.up:
            if isinstance(m, Upsample):
                h = m(h, hs[-1].shape[-2:])
            else:
                h = m(torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h)
