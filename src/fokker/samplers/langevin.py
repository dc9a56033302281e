"""Langevin dynamics: plain MCMC on a fixed density, NCSN's annealed Langevin dynamics over a noise
ladder, and the signal-to-noise-ratio step size of the Langevin corrector. One update everywhere:

    x <- x + (step / 2) grad log p(x) + sqrt(step) z,   z ~ N(0, I)   (notes 002, eq. 1.7.15)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from fokker.denoiser import Denoiser
from fokker.errors import UserError
from fokker.processes import expand_as
from fokker.samplers.noise import Generators, randn
from fokker.samplers.registry import register
from fokker.samplers.steps import conditionings


def langevin_step(x: torch.Tensor, score: torch.Tensor, step: torch.Tensor | float, z: torch.Tensor) -> torch.Tensor:
    """x + step / 2 score + sqrt(step) z (notes 002, eq. 1.7.15); `step` is a scalar or one per example."""
    step = expand_as(step, x)
    return x + step / 2 * score + step**0.5 * z


def snr_step(score: torch.Tensor, z: torch.Tensor, snr: float) -> torch.Tensor:
    """The Langevin corrector's step, one per example: Song et al. 2021 (Alg. 4-5) update
    x + e score + sqrt(2 e) z with e = 2 (snr ||z|| / ||score||)^2, so that ||e score|| / ||sqrt(2 e) z||
    = snr; in langevin_step's terms step = 2 e. Song et al. average the norms over the batch; here each
    example gets its own step, so samples do not depend on their batch."""
    z_norm, s_norm = z.flatten(1).norm(dim=1), score.flatten(1).norm(dim=1)
    return 4 * (snr * z_norm / s_norm.clamp(min=1e-30)) ** 2


@torch.no_grad()
def langevin(
    score_fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    step_size: float,
    n_steps: int,
    *,
    generator: Generators = None,
    progress: bool = False,
) -> tuple[torch.Tensor, dict]:
    """Plain Langevin MCMC on a fixed density p from the starting points x: n_steps updates
    x <- x + step_size / 2 score_fn(x) + sqrt(step_size) z (notes 002, eq. 1.7.15). score_fn(x) returns
    grad log p(x); `score_from_log_prob` makes one from an explicit log-density. Returns (x, {"nfe"})."""
    if step_size <= 0 or n_steps < 0:
        raise UserError(f"Langevin needs step_size > 0 and n_steps >= 0, got {step_size} and {n_steps}")
    for _ in tqdm(range(n_steps), leave=False, disable=not progress):
        x = langevin_step(x, score_fn(x), step_size, randn(x.shape, generator, device=x.device, dtype=x.dtype))
    return x, {"nfe": n_steps, "steps": n_steps}


def score_from_log_prob(log_prob: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """grad_x log p(x) by autograd, for a log_prob(x) that returns one value per example."""

    def score(x: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            return torch.autograd.grad(log_prob(x).sum(), x)[0]

    return score


@register("annealed_langevin")
@torch.no_grad()
def annealed_langevin(
    denoiser: Denoiser,
    x: torch.Tensor,
    times: torch.Tensor,
    *,
    epsilon: float | None = None,
    steps_per_level: int = 100,
    denoise: bool = True,
    generator: Generators = None,
    callback: Callable | None = None,
    model_kwargs: dict | None = None,
    progress: bool = False,
) -> tuple[torch.Tensor, dict]:
    """Annealed Langevin dynamics (Song & Ermon 2019, Alg. 1; notes 002, sec. 1.7.2.3). The noise levels
    are sigma_i = sigma(t) at every grid time but the last (t = 0 is the data), largest first; at each,
    `steps_per_level` Langevin updates with step alpha_i = epsilon sigma_i^2 / sigma_L^2, sigma_L the
    smallest level. `denoise` ends with Tweedie's x0_hat at sigma_L (Jolicoeur-Martineau et al. 2021).
    The defaults are NCSN's, 100 steps per level and epsilon = 2e-5 (sigma_L / 0.01)^2, i.e. NCSN's
    2e-5 for its sigma_L = 0.01 and the same alpha_L = 0.2 sigma_L^2 on any other ladder (an epsilon
    tuned for one ladder diverges on another). NFE = levels * steps_per_level (+ 1 with denoise). The
    Langevin step sets its own noise, so a model with a learned variance is run on its mean prediction."""
    if epsilon is None:
        epsilon = 0.2 * denoiser.process.sigma(times[-2:-1]).item() ** 2
    if epsilon <= 0 or steps_per_level < 1:
        raise UserError(
            f"annealed Langevin needs epsilon > 0 and steps_per_level >= 1, got {epsilon} and {steps_per_level}"
        )
    process, nfe0, model_kwargs = denoiser.process, denoiser.nfe, model_kwargs or {}
    levels = times[:-1]
    alphas, sigmas = process.alpha(levels), process.sigma(levels)
    step_sizes = (epsilon * sigmas**2 / sigmas[-1] ** 2).tolist()
    conds = conditionings(denoiser, levels, x)
    for k in tqdm(range(len(levels)), leave=False, disable=not progress):
        alpha, sigma = alphas[k].item(), sigmas[k].item()
        for _ in range(steps_per_level):
            x0, eps = denoiser.predict(x, None, alpha=alpha, sigma=sigma, c=conds[k], **model_kwargs)
            z = randn(x.shape, generator, device=x.device, dtype=x.dtype)
            x = langevin_step(x, eps / -sigma, step_sizes[k], z)
        if callback is not None:
            callback(k, x, x0)
    if denoise:
        x = denoiser.predict(x, None, alpha=alphas[-1].item(), sigma=sigmas[-1].item(), c=conds[-1], **model_kwargs)[0]
    return x, {"nfe": denoiser.nfe - nfe0, "steps": len(levels) * steps_per_level}
