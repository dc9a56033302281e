"""Inpainting and colorization with any grid sampler: the known part of x_0 held by the samplers' constraint
hook (replacement, Song et al. 2021, app. I.2-I.3), optionally with RePaint's resampling (Lugmayr et al. 2022).

    inpaint(denoiser, sampler, known, mask, steps, scheme="replace" | "repaint", jump, resample, ...)
    colorize(denoiser, sampler, grey, steps, scheme=..., ...)

`mask` is True where x is missing (fokker.inpaint.masks); `scheme` is not called `method` because the ODE
sampler has an option of that name."""

from fokker.inpaint.colour import COLOUR_BASIS, colorize, grey_observation, grey_of
from fokker.inpaint.complete import SCHEMES, complete, repaint_schedule
from fokker.inpaint.exact import (
    conditional_error,
    conditional_gaussian,
    coordinate_kl,
    correlated_pairs,
    rotated_gaussian,
)
from fokker.inpaint.inputs import complete_seeded, load_inputs
from fokker.inpaint.masks import make_mask
from fokker.inpaint.observation import Observation, Replacement
from fokker.inpaint.pixels import inpaint, pixel_observation

__all__ = [
    "COLOUR_BASIS",
    "SCHEMES",
    "Observation",
    "Replacement",
    "colorize",
    "complete",
    "complete_seeded",
    "conditional_error",
    "conditional_gaussian",
    "coordinate_kl",
    "correlated_pairs",
    "grey_observation",
    "grey_of",
    "inpaint",
    "load_inputs",
    "make_mask",
    "pixel_observation",
    "repaint_schedule",
    "rotated_gaussian",
]
