"""Cascaded diffusion (Ho et al. 2021, "Cascaded Diffusion Models"; SR3, Saharia et al. 2021): a base model of
low-resolution images and a super-resolution model that upsamples them, a U-Net with model.network
low_res_channels, low_res_size and aug_max (fokker.nets.low_res), trained on downsampled images under
Gaussian conditioning augmentation.

    conditioning.py  the settings (SuperResolution), downsample, augment, and the model_kwargs of a training batch
    sample.py        upsample low-resolution images, sample a whole cascade, and `fokker sample --upsampler`"""

from fokker.cascade.conditioning import (
    SuperResolution,
    augment,
    augmentation_process,
    downsample,
    is_super_resolution,
    training_kwargs,
)
from fokker.cascade.sample import (
    DEFAULT_AUG_LEVEL,
    Upsampler,
    cascade_info,
    check_cascade,
    sample_cascade,
    upsample,
    upsampler_for,
)

__all__ = [
    "DEFAULT_AUG_LEVEL",
    "SuperResolution",
    "Upsampler",
    "augment",
    "augmentation_process",
    "cascade_info",
    "check_cascade",
    "downsample",
    "is_super_resolution",
    "sample_cascade",
    "training_kwargs",
    "upsample",
    "upsampler_for",
]
