"""Samplers: stateless functions with one shared signature, dispatched by name through `sample`."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fokker.denoiser import Denoiser
from fokker.samplers import ddpm as _ddpm  # noqa: F401  (registers "ddpm" and "ddim")
from fokker.samplers.grid import SPACINGS, time_grid
from fokker.samplers.noise import Generators, randn
from fokker.samplers.registry import SAMPLERS, check_options, get_sampler, register, sampler_options

__all__ = [
    "SAMPLERS",
    "SPACINGS",
    "get_sampler",
    "randn",
    "register",
    "sample",
    "sampler_options",
    "time_grid",
]


def sample(
    denoiser: Denoiser,
    sampler: str = "ddim",
    steps: int = 50,
    shape: Sequence[int] | None = None,
    *,
    generator: Generators = None,
    x_T: torch.Tensor | None = None,
    spacing: str = "uniform",
    device: torch.device | str | None = None,
    **options,
) -> tuple[torch.Tensor, dict]:
    """Draw samples with the sampler registered as `sampler`, on `steps` steps of the named spacing.
    Starts from x_T if given, else from the process prior of `shape`. Returns (samples, info);
    info["nfe"] is the number of network evaluations used."""
    fn = get_sampler(sampler)
    own = {k: v for k, v in options.items() if k not in ("callback", "model_kwargs", "progress")}
    check_options(sampler, own)
    times = time_grid(denoiser.process, steps, spacing)
    if x_T is None:
        if shape is None:
            raise ValueError("give either shape or x_T")
        x_T = denoiser.process.prior_sample(tuple(shape), generator, device=device)
    x, info = fn(denoiser, x_T, times, generator=generator, **options)
    return x, {**info, "sampler": sampler, "times": times}
