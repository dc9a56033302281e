"""Sampling the unknown part of x_0 given an `Observation` with any registered grid sampler, by one of two schemes:

- "replace" (Song et al. 2021, sec. 5, app. I.2): one pass down the grid, the known part replaced after every
  step by a fresh draw of q(x_s | x_0) (`Replacement`, the samplers' constraint hook). Fast, but biased
  where the unknown part is correlated with the known one: at each step the unknown part is sampled given a
  known part drawn independently of it, so it never fully agrees with the known part.
- "repaint" (Lugmayr et al. 2022, Algorithm 1 and sec. 4.2): the same replacement, and each stretch of `jump`
  grid steps is sampled `resample` times, re-noised in between from its lower end back up through the
  forward process q(x_t | x_s) (`Process.transition`), so the two parts harmonise. Their time schedule
  (`repaint_schedule`) drives any sampler through calls on sub-grids.

The known part is pasted in at the end (t = 0)."""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from fokker.denoiser import Denoiser
from fokker.errors import UserError
from fokker.inpaint.observation import Observation, Replacement
from fokker.noise import Generators, randn
from fokker.processes import Process
from fokker.samplers import check_options, get_sampler, time_grid

SCHEMES = ("replace", "repaint")
JUMP, RESAMPLE = 10, 10  # RePaint's defaults (Lugmayr et al. 2022, sec. 4.2: j = 10, r = 10)


def repaint_schedule(steps: int, jump: int, resample: int) -> list[int]:
    """RePaint's time schedule (Lugmayr et al. 2022, sec. 4.2; their code's get_schedule_jump) on a grid of
    `steps` steps, as grid levels n (n = steps at t = 1, n = 0 at t = 0): down from n = steps; at each level
    n = 1, 1 + jump, 1 + 2 jump, ... below steps - jump + 1, first reached, back up `jump` levels and down
    again, resample - 1 times; the last step 1 -> 0 ends on x_0."""
    jumps = {n: resample - 1 for n in range(1, steps - jump + 1, jump)}
    n, levels = steps, [steps]
    while n >= 1:
        if jumps.get(n, 0) > 0:
            jumps[n] -= 1
            levels.extend(range(n + 1, n + jump + 1))
            n += jump
            continue
        n -= 1
        levels.append(n)
    return levels


def runs(levels: list[int]) -> list[list[int]]:
    """The schedule cut into its monotone stretches, each sharing its first level with the previous one's last."""
    out = [[levels[0], levels[1]]]
    for n in levels[2:]:
        if (n < out[-1][-1]) == (out[-1][-1] < out[-1][-2]):
            out[-1].append(n)
        else:
            out.append([out[-1][-1], n])
    return out


def renoise(process: Process, x: torch.Tensor, s: float, t: float, generator: Generators) -> torch.Tensor:
    """A draw of q(x_t | x_s) = N(a x_s, var I) for s < t (Process.transition; Lugmayr et al. 2022, Alg. 1,
    line 13: the j one-step transitions of a jump composed into one)."""
    a, var = process.transition(torch.tensor(t, dtype=torch.float64), torch.tensor(s, dtype=torch.float64))
    return x.mul(float(a)).add_(randn(x.shape, generator, device=x.device, dtype=x.dtype), alpha=float(var) ** 0.5)


def check_scheme(scheme: str, jump: int | None, resample: int | None, steps: int) -> tuple[int, int]:
    """RePaint's (jump, resample) as given or their defaults; a UserError for an unknown scheme, for jump /
    resample with "replace" (they have no effect there), and for values that would make RePaint replacement."""
    if scheme not in SCHEMES:
        raise UserError(f"unknown scheme {scheme!r}; expected one of {SCHEMES}")
    if scheme == "replace":
        for name, value in (("jump", jump), ("resample", resample)):
            if value is not None:
                raise UserError(f"{name} has no effect with scheme 'replace'; it applies only to scheme 'repaint'")
        return 0, 1
    jump, resample = jump or JUMP, resample or RESAMPLE
    if resample < 2:
        raise UserError(f"repaint needs resample >= 2 (with 1 it is scheme 'replace'), got {resample}")
    if not 1 <= jump < steps:
        raise UserError(f"repaint needs 1 <= jump < steps = {steps}, got jump {jump}")
    return jump, resample


def complete(
    denoiser: Denoiser,
    sampler: str,
    observation: Observation,
    steps: int,
    *,
    scheme: str = "replace",
    jump: int | None = None,
    resample: int | None = None,
    spacing: str = "uniform",
    generator: Generators = None,
    model_kwargs: dict | None = None,
    progress: bool = False,
    **options,
) -> tuple[torch.Tensor, dict]:
    """A draw of x_0 whose known part is the observation's, the rest sampled by `sampler` on `steps` steps of the
    named spacing by `scheme` ("replace" or "repaint" with `jump` and `resample`, defaults 10 and 10; see the
    module docstring). Starts from the process prior; `options` are the sampler's own. Returns (x_0, info):
    info["nfe"] the network evaluations per sample, info["levels"] the grid levels visited (RePaint)."""
    fn = get_sampler(sampler)
    check_options(sampler, options)
    jump, resample = check_scheme(scheme, jump, resample, steps)
    if scheme == "repaint" and sampler == "annealed_langevin" and "epsilon" in options:
        raise UserError(
            "repaint runs annealed_langevin on stretches of the grid, whose smallest level sigma_L would change its "
            "step epsilon sigma_i^2 / sigma_L^2 from stretch to stretch; leave epsilon at its default (0.2 sigma_i^2)"
        )
    process, like = denoiser.process, observation.values
    times = time_grid(process, steps, spacing)
    x = process.prior_sample(tuple(like.shape), generator, device=like.device, dtype=like.dtype)
    levels = list(range(steps, -1, -1)) if scheme == "replace" else repaint_schedule(steps, jump, resample)
    nfe, pieces = 0, runs(levels)
    one_bar = progress and len(pieces) == 1  # the sampler's own bar, else one over the passes
    shared = {"generator": generator, "model_kwargs": model_kwargs, "progress": one_bar, **options}
    for piece in tqdm(pieces, desc=scheme, leave=False, disable=not progress or len(pieces) == 1):
        start, end = float(times[steps - piece[0]]), float(times[steps - piece[-1]])
        if end > start:
            x = renoise(process, x, start, end, generator)
            continue
        constraint = Replacement(observation, process, generator)  # a fresh draw at every time of this pass
        x, info = fn(denoiser, x, times[[steps - n for n in piece]], constraint=constraint, **shared)
        nfe += info["nfe"]
    return observation.paste(x), {"nfe": nfe, "levels": levels, "scheme": scheme, "sampler": sampler}
