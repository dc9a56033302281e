"""Sampling a cascade (Ho et al. 2021, sec. 3 and Algorithm 2): a base model's low-resolution samples, clipped
to the data range [-1, 1], augmented at a level s (sec. 4.1) and upsampled by a super-resolution model that is
conditioned on them (SR3, Saharia et al. 2021). Each stage samples with its own run's sampler unless told
otherwise, with per-image seeds, so the result does not depend on the batch size."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from fokker.cascade.conditioning import SuperResolution, augment, is_super_resolution
from fokker.config import sample_options
from fokker.denoiser import Denoiser
from fokker.errors import UserError
from fokker.noise import seed_for
from fokker.samplers import sample_seeded

if TYPE_CHECKING:
    from fokker.config import RunConfig

DEFAULT_AUG_LEVEL = 0.0  # the base samples as they are; Ho et al. sweep s at sampling time (sec. 4.1)
AUG_STREAM, UPSAMPLER_STREAM = 1, 2  # mixed with the seed: the upsampler's noise is not the base model's


def check_cascade(base_config: RunConfig, up_config: RunConfig) -> SuperResolution:
    """The upsampler's settings, after checking that it is a super-resolution model of the base model's
    samples: the base's data shape is (low_res_channels, low_res_size, low_res_size)."""
    sr = SuperResolution.of(up_config)
    if sr is None:
        raise UserError("the upsampler is not a super-resolution model (its model.network.low_res_channels is 0)")
    if is_super_resolution(base_config):
        raise UserError("the base model of a cascade is itself a super-resolution model; give one that samples alone")
    want, shape = [sr.channels, sr.size, sr.size], list(base_config.data.shape or [])
    if shape != want:
        raise UserError(
            f"the base model makes samples of shape {shape}, but the upsampler upsamples {want} "
            "(its model.network.low_res_channels, low_res_size)"
        )
    return sr


def upsample(
    low: torch.Tensor,
    upsampler: Denoiser,
    up_config: RunConfig,
    *,
    seed: int = 0,
    aug_level: float = DEFAULT_AUG_LEVEL,
    labels: torch.Tensor | None = None,
    sampler: str | None = None,
    steps: int | None = None,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> tuple[torch.Tensor, dict]:
    """The super-resolution model's samples given low-resolution images `low` (N, low_res_channels,
    low_res_size, low_res_size): each clipped to [-1, 1], augmented at `aug_level` (in [0, aug_max]) with its
    own noise, seed_for(seed, AUG_STREAM, i), then upsampled from the noise of seed_for(seed, UPSAMPLER_STREAM)
    with the run's sampler and steps (or `sampler`, `steps`; fokker.samplers.sample_seeded). `labels` go to a
    class-conditional upsampler. Returns (float32 samples on the CPU, the sampler's info)."""
    sr = SuperResolution.of(up_config)
    if sr is None:
        raise UserError("the upsampler is not a super-resolution model (its model.network.low_res_channels is 0)")
    sr.check_low(low, "the low-resolution images")
    sr.check_level(aug_level)
    low = low.detach().float().cpu().clamp(-1.0, 1.0)
    gens = [torch.Generator().manual_seed(seed_for(seed, AUG_STREAM, i)) for i in range(len(low))]
    kw = {"low_res": augment(low, float(aug_level), gens), "aug_level": torch.full((len(low),), float(aug_level))}
    if labels is not None and up_config.model.conditional:
        kw["y"] = labels
    s = up_config.sample
    sampler = sampler or s.sampler
    return sample_seeded(
        upsampler, sampler, steps or s.steps, up_config.data.shape, len(low), seed=seed_for(seed, UPSAMPLER_STREAM),
        spacing=s.spacing, batch_size=batch_size, device=device, progress=progress, model_kwargs=kw,
        **sample_options(up_config, sampler),
    )  # fmt: skip


def cascade_info(base: dict, up: dict) -> dict:
    """The info of a cascade: the base stage's, with "nfe" the network evaluations per sample of both stages
    together, and each stage's info under "base" and "upsampler"."""
    return {**base, "nfe": base["nfe"] + up["nfe"], "base": base, "upsampler": up}


def sample_cascade(
    base: Denoiser,
    base_config: RunConfig,
    upsampler: Denoiser,
    up_config: RunConfig,
    num: int,
    *,
    seed: int = 0,
    base_sampler: str | None = None,
    base_steps: int | None = None,
    up_sampler: str | None = None,
    up_steps: int | None = None,
    aug_level: float = DEFAULT_AUG_LEVEL,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> tuple[torch.Tensor, dict]:
    """`num` samples of a cascade (Ho et al. 2021, Algorithm 2): the base model's, sample i from seed_for(seed, i)
    with its run's sampler and steps (or base_sampler, base_steps), as data (a latent base's decoded), then
    `upsample`d. Returns (the upsampler's
    float32 samples on the CPU, `cascade_info`: NFE per sample of both stages)."""
    sr = check_cascade(base_config, up_config)
    sr.check_level(aug_level)
    s = base_config.sample
    sampler = base_sampler or s.sampler
    low, base_info = sample_seeded(
        base, sampler, base_steps or s.steps, base_config.model_shape, num, seed=seed, spacing=s.spacing,
        batch_size=batch_size, device=device, progress=progress, **sample_options(base_config, sampler),
    )  # fmt: skip
    x, up_info = upsample(
        base.to_data(low), upsampler, up_config, seed=seed, aug_level=aug_level, sampler=up_sampler, steps=up_steps,
        batch_size=batch_size, device=device, progress=progress,
    )  # fmt: skip
    return x, cascade_info(base_info, up_info)


@dataclass
class Upsampler:
    """A loaded super-resolution run checked against a base model, and the level its inputs are augmented at:
    what `fokker sample --upsampler RUN --aug-level S` adds to the base model's sampling."""

    denoiser: Denoiser
    config: RunConfig
    aug_level: float

    def upsample(
        self,
        low: torch.Tensor,
        base_info: dict,
        labels: torch.Tensor | None,
        *,
        seed: int,
        batch_size: int,
        device: torch.device | str,
        progress: bool,
    ) -> tuple[torch.Tensor, dict]:
        """(the upsampled samples, `cascade_info` of the base's info and the upsampler's): `upsample`."""
        x, info = upsample(
            low, self.denoiser, self.config, seed=seed, aug_level=self.aug_level, labels=labels,
            batch_size=batch_size, device=device, progress=progress,
        )  # fmt: skip
        return x, cascade_info(base_info, info)


def upsampler_for(
    base_config: RunConfig, run: str | Path | None, aug_level: float | None, device: torch.device | str = "cpu"
) -> Upsampler | None:
    """`fokker sample`'s cascade, checked before anything is sampled: the run `run` (--upsampler) loaded and
    checked against the base model (`check_cascade`), None without one. A super-resolution model sampled
    alone, or an --aug-level without --upsampler, is a UserError."""
    from fokker.model import load_model

    if run is None:
        if is_super_resolution(base_config):
            sr = SuperResolution.of(base_config)
            raise UserError(
                f"this is a super-resolution model (it upsamples {sr.size}x{sr.size} images): a super-resolution "
                "model needs --upsampler: fokker sample --checkpoint BASE --upsampler THIS_RUN, or call "
                "fokker.cascade.upsample on low-resolution images"
            )
        if aug_level is not None:
            raise UserError("--aug-level augments the upsampler's inputs: give --upsampler RUN")
        return None
    denoiser, config = load_model(run, device)
    sr = check_cascade(base_config, config)
    level = DEFAULT_AUG_LEVEL if aug_level is None else aug_level
    sr.check_level(level, "--aug-level")
    return Upsampler(denoiser, config, level)
