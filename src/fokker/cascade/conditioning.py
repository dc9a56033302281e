"""The inputs of a super-resolution model: the low-resolution image of a high-resolution one (`downsample`, the
way the data's own low-resolution versions are made) and its Gaussian conditioning augmentation (`augment`,
Ho et al. 2021, sec. 4.1), and the model_kwargs of a training batch (`training_kwargs`)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from fokker.data.packaged import resize
from fokker.errors import UserError
from fokker.noise import Generators, rand, randn
from fokker.processes import VP, expand_as

if TYPE_CHECKING:
    from fokker.config import RunConfig

AUG_STEPS = 1000  # the augmentation's fixed process: VP, cosine schedule, on T = 1000 steps (as mnist.yaml's)


@dataclass(frozen=True)
class SuperResolution:
    """What makes a model a super-resolution model, read from its model.network: the low-resolution image's
    `channels` (low_res_channels) and `size` (low_res_size: it is size x size), and `aug_max`, the largest
    augmentation level trained on (training draws s ~ U[0, aug_max]; the network embeds s / aug_max)."""

    channels: int
    size: int
    aug_max: float

    @classmethod
    def of(cls, config: RunConfig) -> SuperResolution | None:
        """The super-resolution settings of a config, None for a model that is not one (low_res_channels 0)."""
        net = config.model.network
        if not net.get("low_res_channels"):
            return None
        if config.is_latent:
            raise UserError(
                "model.network.low_res_channels makes a super-resolution model of images, not of an autoencoder's "
                "latents: leave latent.autoencoder unset (a latent diffusion model can be a cascade's base model)"
            )
        missing = [k for k in ("low_res_size", "aug_max") if net.get(k) is None]
        if missing:
            raise UserError(
                f"model.network.low_res_channels={net['low_res_channels']} (a super-resolution model) needs "
                f"model.network.{' and model.network.'.join(missing)}"
            )
        return cls(int(net["low_res_channels"]), int(net["low_res_size"]), float(net["aug_max"]))

    def check_low(self, low: torch.Tensor, what: str) -> None:
        """A UserError unless `low` is a batch of this model's low-resolution images (B, channels, size, size)."""
        want = (self.channels, self.size, self.size)
        if low.dim() != 4 or tuple(low.shape[1:]) != want:
            raise UserError(
                f"{what} have shape {list(low.shape[1:])}, but this super-resolution model upsamples images of "
                f"shape {list(want)} (model.network.low_res_channels, low_res_size)"
            )

    def check_level(self, level: float, what: str = "the augmentation level") -> None:
        """A UserError unless `level` is in [0, aug_max]: above it the network was never trained."""
        if isinstance(level, bool) or not isinstance(level, int | float) or not 0 <= level <= self.aug_max:
            raise UserError(f"{what} must be in [0, {self.aug_max:g}] (the model's aug_max), got {level!r}")


def is_super_resolution(config: RunConfig) -> bool:
    """Whether the config's model is a super-resolution model (model.network.low_res_channels > 0)."""
    return bool(config.model.network.get("low_res_channels"))


def downsample(x: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, H, W) images in [-1, 1] at size x size: bilinear with antialiasing, exactly how the data's own
    low-resolution versions are made (data.image_size: fokker.data.packaged.resize), so that a base model
    trained on them makes what the super-resolution model was trained on."""
    return resize(x, size)


@functools.cache
def augmentation_process() -> VP:
    """The fixed process of the conditioning augmentation: VP with the cosine schedule (Nichol & Dhariwal 2021,
    eq. 17) on AUG_STEPS steps, whatever the process of the model."""
    return VP(T=AUG_STEPS, schedule="cosine")


def augment(low: torch.Tensor, level: torch.Tensor | float, generator: Generators) -> torch.Tensor:
    """Gaussian conditioning augmentation (Ho et al. 2021, sec. 4.1): z_s = sqrt(abar(s)) z + sqrt(1 - abar(s))
    eps, a draw of q(z_s | z) (Ho et al. 2020, eq. 4) at the level s in [0, 1] of `augmentation_process`;
    `level` is one float or one per image. Level 0 returns `low` exactly (abar(0) = 1); level 1 is noise up to
    sqrt(abar(1)) = 0.0064. eps is drawn from `generator` (one, or one per image: fokker.noise.randn)."""
    process = augmentation_process()
    if not isinstance(level, torch.Tensor) and not 0 <= level <= 1:
        raise UserError(f"the augmentation level must be in [0, 1], got {level!r}")
    s = torch.as_tensor(level, dtype=torch.float64).cpu()
    if s.dim() == 1 and len(s) != len(low):
        raise ValueError(f"got {len(s)} augmentation levels for {len(low)} images")
    eps = randn(low.shape, generator, device=low.device, dtype=low.dtype)
    return expand_as(process.alpha(s), low) * low + expand_as(process.sigma(s), low) * eps


def training_kwargs(x0: torch.Tensor, config: RunConfig, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The super-resolution model_kwargs of a training batch of high-resolution images x0: levels s ~ U[0,
    aug_max], one per image (Ho et al. 2021, sec. 4.1, non-truncated augmentation), then {"low_res":
    augment(downsample(x0), s), "aug_level": s}, all drawn from `generator` (levels first); {} without drawing
    anything for a model that is not a super-resolution model."""
    sr = SuperResolution.of(config)
    if sr is None:
        return {}
    if x0.dim() != 4 or min(x0.shape[-2:]) <= sr.size or x0.shape[1] != sr.channels:
        raise UserError(
            f"a super-resolution model of {sr.channels}-channel {sr.size}x{sr.size} images (model.network."
            f"low_res_channels, low_res_size) needs larger images of as many channels; the data's are "
            f"{list(x0.shape[1:])}"
        )
    s = sr.aug_max * rand((len(x0),), generator, device=x0.device)
    low = augment(downsample(x0, sr.size), s, generator)
    return {"low_res": low, "aug_level": s}
