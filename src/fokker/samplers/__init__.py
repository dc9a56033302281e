"""Samplers: stateless functions with one shared signature, dispatched by name through `sample`."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from fokker.denoiser import Denoiser
from fokker.errors import UserError
from fokker.grids import SPACINGS, time_grid
from fokker.noise import Generators, randn, seed_for, seeded_batches
from fokker.samplers import consistency as _consistency  # noqa: F401  (registers "consistency")
from fokker.samplers import ddpm as _ddpm  # noqa: F401  (registers "ddpm" and "ddim")
from fokker.samplers import deis as _deis  # noqa: F401  (registers "deis")
from fokker.samplers import dpm_solver as _dpm_solver  # noqa: F401  (registers "dpmpp_2m", "dpmpp_3m", ...)
from fokker.samplers import edm as _edm  # noqa: F401  (registers "edm_heun" and "edm")
from fokker.samplers import ode as _ode  # noqa: F401  (registers "ode")
from fokker.samplers import sde as _sde  # noqa: F401  (registers "euler_maruyama" and "pc")
from fokker.samplers import unipc as _unipc  # noqa: F401  (registers "unipc")
from fokker.samplers.grid_files import load_grid
from fokker.samplers.langevin import langevin, score_from_log_prob  # also registers "annealed_langevin"
from fokker.samplers.optimized_grid import fit_gaussian, grid_kl, optimize_grid
from fokker.samplers.registry import (
    GRID,
    SAMPLERS,
    Rule,
    SamplerCall,
    check_options,
    get_sampler,
    ineffective,
    register,
    sampler_options,
    uses_grid,
    when,
)

__all__ = [
    "GRID",
    "SAMPLERS",
    "SPACINGS",
    "Rule",
    "SamplerCall",
    "check_options",
    "fit_gaussian",
    "get_sampler",
    "grid_kl",
    "ineffective",
    "langevin",
    "load_grid",
    "optimize_grid",
    "randn",
    "register",
    "sample",
    "sample_seeded",
    "sampler_options",
    "score_from_log_prob",
    "seed_for",
    "time_grid",
    "uses_grid",
    "when",
]


def grid_for(
    process, steps: int | None, spacing: str, times: torch.Tensor | None, default_steps: int | None = None
) -> torch.Tensor:
    """The time grid of a call: `times` as given, checked (a 1-D decreasing grid from 1 to 0, as `time_grid`'s, of
    `steps` steps when steps is given; on a discrete process grid times i / T), else time_grid(steps, spacing)."""
    if times is None:
        return time_grid(process, default_steps if steps is None else steps, spacing)
    if spacing != "uniform":
        raise UserError(f"give either times or spacing, not both (spacing {spacing!r})")
    times = torch.as_tensor(times, dtype=torch.float64).cpu()
    if times.dim() != 1 or len(times) < 2:
        raise UserError(f"times must be a 1-D grid of at least 2 times, got shape {tuple(times.shape)}")
    if steps is not None and len(times) != steps + 1:
        raise UserError(f"times has {len(times) - 1} steps but steps = {steps}")
    if times[0] != 1.0 or times[-1] != 0.0:
        raise UserError(f"times must run from 1 to 0 as time_grid's do, got {times[0].item()} ... {times[-1].item()}")
    if not bool((times[1:] < times[:-1]).all()):
        raise UserError("times must be strictly decreasing")
    if process.T is not None and not torch.equal(process.snap(times), torch.round(times * process.T) / process.T):
        raise UserError(f"on a discrete process every time must be a grid time i / T (T = {process.T})")
    return process.snap(times) if process.T is not None else times


def sample(
    denoiser: Denoiser,
    sampler: str = "ddim",
    steps: int | None = None,
    shape: Sequence[int] | None = None,
    *,
    generator: Generators = None,
    x_T: torch.Tensor | None = None,
    spacing: str = "uniform",
    times: torch.Tensor | None = None,
    device: torch.device | str | None = None,
    **options,
) -> tuple[torch.Tensor, dict]:
    """Draw samples with the sampler registered as `sampler`, on `steps` steps (default 50) of the named spacing,
    or on the grid `times` (descending from 1 to 0, e.g. from `optimize_grid` or `load_grid`; not with a spacing).
    Starts from x_T if given, else from the process prior of `shape`. `model_kwargs` go to the network at
    every evaluation, e.g. {"y": labels} (one class per sample) for a class-conditional model. Returns
    (samples, info); info["nfe"] is the number of network evaluations used, info["times"] the times stepped
    through (the grid; an adaptive solver's own times)."""
    fn = get_sampler(sampler)
    own = {k: v for k, v in options.items() if k not in SamplerCall._fields}
    check_options(sampler, own)
    times = grid_for(denoiser.process, steps, spacing, times, default_steps=50)
    if x_T is None:
        if shape is None:
            raise ValueError("give either shape or x_T")
        x_T = denoiser.process.prior_sample(tuple(shape), generator, device=device)
    x, info = fn(denoiser, x_T, times, generator=generator, **options)
    return x, {"times": times, **info, "sampler": sampler}


def sample_seeded(
    denoiser: Denoiser,
    sampler: str,
    steps: int,
    shape: Sequence[int],
    num: int,
    *,
    seed: int = 0,
    spacing: str = "uniform",
    times: torch.Tensor | None = None,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    progress: bool = False,
    model_kwargs: dict | None = None,
    noise_ids: Sequence[int] | torch.Tensor | None = None,
    **options,
) -> tuple[torch.Tensor, dict]:
    """`num` samples of `shape` in batches, sample i drawn from its own generator seeded with
    seed_for(seed, noise_ids[i]) (noise id i by default), so the result does not depend on `batch_size`.
    Every tensor in `model_kwargs` holds one row per sample (e.g. "y": the class of each sample) and is
    sliced with the batches; other values go to every batch as they are. Returns (float32 samples on the
    CPU, info of the last batch). `times`: an explicit grid of `steps` steps instead of the spacing's (`sample`)."""
    fn = get_sampler(sampler)
    check_options(sampler, options)
    ids = list(range(num)) if noise_ids is None else [int(i) for i in noise_ids]
    if len(ids) != num:
        raise ValueError(f"got {len(ids)} noise ids for {num} samples")
    for key, value in (model_kwargs or {}).items():
        if isinstance(value, torch.Tensor) and (value.dim() == 0 or len(value) != num):
            raise ValueError(
                f"model_kwargs[{key!r}] has shape {tuple(value.shape)}; expected {num} rows, one per sample"
            )
    times = grid_for(denoiser.process, steps, spacing, times)
    chunks, info = [], {}
    batches = list(seeded_batches(ids, batch_size, seed, device))
    for lo, hi, gens in tqdm(batches, desc="sampling", unit="batch", disable=not progress or len(batches) == 1):
        x_T = denoiser.process.prior_std * randn((len(gens), *shape), gens, device=device)
        kw = {k: v[lo:hi].to(device) if isinstance(v, torch.Tensor) else v for k, v in (model_kwargs or {}).items()}
        x, info = fn(denoiser, x_T, times, generator=gens, progress=progress, model_kwargs=kw, **options)
        chunks.append(x.float().cpu())
    return torch.cat(chunks), {"times": times, **info, "sampler": sampler}
