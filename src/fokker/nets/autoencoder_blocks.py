"""The convolutional encoder and decoder of fokker's autoencoders (fokker.nets.autoencoder), after latent
diffusion's first stage (Rombach et al. 2022, app. G; Esser et al. 2021): GroupNorm-SiLU residual blocks,
a stride-2 convolution per level below the first, nearest-neighbour upsampling to the exact size of the
level above, so odd sizes round-trip (28 -> 14 -> 7 -> 14 -> 28; 14 -> 7 -> 4 -> 7 -> 14). No attention and
no time input: the blocks are sized for a CPU."""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

from .unet import _norm


class ResBlock(nn.Module):
    """GN-SiLU-conv, GN-SiLU-conv, plus the input (through a 1x1 convolution when the channels change)."""

    def __init__(self, cin: int, cout: int, groups: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _norm(cin, groups), nn.SiLU(), nn.Conv2d(cin, cout, 3, padding=1),
            _norm(cout, groups), nn.SiLU(), nn.Conv2d(cout, cout, 3, padding=1),
        )  # fmt: skip
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """(B, cin, H, W) -> (B, cout, H, W)."""
        return self.skip(x) + self.body(x)


class Upsample(nn.Module):
    """Nearest-neighbour upsampling to a fixed size, then a 3x3 convolution."""

    def __init__(self, channels: int, size: int) -> None:
        super().__init__()
        self.size = size
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, h, w) -> (B, C, size, size)."""
        return self.conv(F.interpolate(x, size=(self.size, self.size), mode="nearest"))


def level_sizes(image_size: int, levels: int) -> list[int]:
    """The side of each level: image_size, then halved and rounded up (a stride-2 convolution's output)."""
    sizes = [image_size]
    for _ in range(levels - 1):
        sizes.append(math.ceil(sizes[-1] / 2))
    return sizes


def head(channels: int, out_channels: int, groups: int) -> nn.Sequential:
    """GN-SiLU-conv to `out_channels`: the last layer of the encoder and of the decoder."""
    return nn.Sequential(_norm(channels, groups), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1))


def encoder(
    in_channels: int, out_channels: int, base: int, channel_mult: tuple[int, ...], num_res_blocks: int, groups: int
) -> nn.Sequential:
    """conv_in; per level num_res_blocks ResBlocks of width base * mult, then (below the last level) a
    stride-2 convolution; a middle ResBlock; GN-SiLU-conv to `out_channels`. Downsamples by
    2^(len(channel_mult) - 1), each halving rounded up."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, base, 3, padding=1)]
    ch = base
    for i, mult in enumerate(channel_mult):
        for _ in range(num_res_blocks):
            layers.append(ResBlock(ch, base * mult, groups))
            ch = base * mult
        if i < len(channel_mult) - 1:
            layers.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
    layers += [ResBlock(ch, ch, groups), head(ch, out_channels, groups)]
    return nn.Sequential(*layers)


def decoder(
    in_channels: int,
    out_channels: int,
    base: int,
    channel_mult: tuple[int, ...],
    num_res_blocks: int,
    groups: int,
    image_size: int,
) -> nn.Sequential:
    """The encoder's mirror: conv_in at the deepest width, a middle ResBlock, per level (deepest first)
    num_res_blocks ResBlocks then an upsampling to the exact side of the level above; GN-SiLU-conv to
    `out_channels` with no squashing (the reconstruction is trained in the data's range by its loss)."""
    sizes = level_sizes(image_size, len(channel_mult))
    ch = base * channel_mult[-1]
    layers: list[nn.Module] = [nn.Conv2d(in_channels, ch, 3, padding=1), ResBlock(ch, ch, groups)]
    for i in reversed(range(len(channel_mult))):
        for _ in range(num_res_blocks):
            layers.append(ResBlock(ch, base * channel_mult[i], groups))
            ch = base * channel_mult[i]
        if i > 0:
            layers.append(Upsample(ch, sizes[i - 1]))
    layers.append(head(ch, out_channels, groups))
    return nn.Sequential(*layers)
