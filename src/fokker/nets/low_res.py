"""The low-resolution conditioning of a super-resolution network (SR3, Saharia et al. 2021, sec. 2.4; cascaded
diffusion, Ho et al. 2021, sec. 3): the low-resolution image z, upsampled to the input's size (bilinear) and
concatenated to x_t along the channels, and the embedding of its augmentation level s (Ho et al. 2021,
sec. 4.1), added to the time embedding."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fokker.errors import UserError

from .embedding import TimeEmbedding, batch_times

EMBEDDING_RANGE = 1000.0  # the embedded aug level spans [0, 1000], as the time's 1000 t does (fokker.model)


class LowResConditioning(nn.Module):
    """A network's low-resolution input of `channels` channels at `size` x `size`, and the embedding of its
    augmentation level s in [0, aug_max]: sinusoidal features of (1000 / aug_max) s through their own MLP, so
    that the levels trained on span the range 1000 t spans for the time (fokker.model.embedding_time_scale).
    aug_max 0: a network trained without conditioning augmentation, which has no level to embed (s is 0)."""

    def __init__(self, channels: int, size: int | None, aug_max: float | None, embed_dim: int, out_dim: int) -> None:
        super().__init__()
        if size is None or aug_max is None:
            raise ValueError("a super-resolution network (low_res_channels > 0) needs low_res_size and aug_max")
        if isinstance(aug_max, bool) or not isinstance(aug_max, int | float) or not 0 <= aug_max <= 1:
            raise ValueError(f"aug_max must be a number in [0, 1] (0: no augmentation), got {aug_max!r}")
        self.channels, self.size, self.aug_max, self.out_dim = channels, size, float(aug_max), out_dim
        self.aug_embed = TimeEmbedding(embed_dim, out_dim, scale=EMBEDDING_RANGE / self.aug_max) if aug_max else None

    def forward(self, x: Tensor, low_res: Tensor, aug_level: Tensor | float) -> tuple[Tensor, Tensor]:
        """(x with the low-resolution image upsampled to its size concatenated, (B, C + channels, H, W); the
        embedding of the augmentation levels, (B, out_dim)). ``low_res``: (B, channels, size, size);
        ``aug_level``: (B,) or a scalar."""
        b = x.shape[0]
        want = (b, self.channels, self.size, self.size)
        if low_res.dim() != 4 or tuple(low_res.shape) != want:
            raise ValueError(f"low_res must have shape {want} (this network's low_res_*), got {tuple(low_res.shape)}")
        up = F.interpolate(low_res.to(x.dtype), size=x.shape[-2:], mode="bilinear", align_corners=False)
        levels = batch_times(aug_level, b, x.device)
        if self.aug_embed is None:
            if bool((levels != 0).any()):
                raise ValueError("this network was trained without conditioning augmentation (aug_max 0): level 0 only")
            return torch.cat([x, up], dim=1), torch.zeros(b, self.out_dim, device=x.device, dtype=x.dtype)
        return torch.cat([x, up], dim=1), self.aug_embed(levels)


def low_res_conditioning(
    channels: int, size: int | None, aug_max: float | None, embed_dim: int, out_dim: int
) -> LowResConditioning | None:
    """The conditioning of a network with `channels` low-resolution channels, or None when it has none (then
    size and aug_max must be unset: they would have no effect)."""
    if channels:
        return LowResConditioning(channels, size, aug_max, embed_dim, out_dim)
    if size is not None or aug_max is not None:
        raise ValueError("low_res_size and aug_max apply only to a super-resolution network: set low_res_channels")
    return None


def condition_on_low_res(
    module: LowResConditioning | None, x: Tensor, emb: Tensor, low_res: Tensor | None, aug_level: Tensor | float | None
) -> tuple[Tensor, Tensor]:
    """(the network's input, its conditioning vector) given the model_kwargs low_res and aug_level: x and emb
    as they are without low-resolution conditioning (passing either is then a ValueError), else x with the
    upsampled low_res and emb plus the level's embedding; a super-resolution network called without them is
    a UserError (any command that samples it alone gets there)."""
    if module is None:
        if low_res is not None or aug_level is not None:
            raise ValueError("low_res / aug_level were given but the network has low_res_channels=0")
        return x, emb
    if low_res is None or aug_level is None:
        raise UserError(
            f"this is a super-resolution network (it upsamples {module.channels}-channel "
            f"{module.size}x{module.size} images): it needs model_kwargs low_res and aug_level; sample it "
            "through a cascade (fokker sample --checkpoint BASE --upsampler RUN, or fokker.cascade)"
        )
    x, aug = module(x, low_res, aug_level)
    return x, emb + aug
