"""Langevin dynamics: plain MCMC on a fixed density, NCSN's annealed Langevin dynamics over a noise
ladder, and the signal-to-noise-ratio step size of the Langevin corrector. One update everywhere:

    x <- x + (step / 2) grad log p(x) + sqrt(step) z,   z ~ N(0, I)

(Roberts & Tweedie 1996; Song & Ermon 2019, sec. 2.2; with a denoiser, grad log p_t = -eps_hat / sigma)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from fokker.denoiser import Denoiser
from fokker.errors import UserError
from fokker.noise import Generators, randn
from fokker.processes import expand_as
from fokker.samplers.registry import SamplerCall, register
from fokker.samplers.steps import conditionings


def langevin_step(x: torch.Tensor, score: torch.Tensor, step: torch.Tensor | float, z: torch.Tensor) -> torch.Tensor:
    """x + step / 2 score + sqrt(step) z (Song & Ermon 2019, sec. 2.2); `step` is a scalar or one per example."""
    step = expand_as(step, x)
    return x + step / 2 * score + step**0.5 * z


def snr_step(score: torch.Tensor, z: torch.Tensor, snr: float, batch: bool = False) -> torch.Tensor:
    """The signal-to-noise-ratio step of Song et al. 2021 (Alg. 4-5): update x + e score + sqrt(2 e) z with
    e = 2 (snr ||z|| / ||score||)^2, so that ||e score|| / ||sqrt(2 e) z|| = snr; in langevin_step's terms
    step = 2 e. Per example by default; with `batch` the norms are averaged over the batch first, as score_sde
    and diffusers do (then a sample depends on its batch)."""
    z_norm, s_norm = z.flatten(1).norm(dim=1), score.flatten(1).norm(dim=1)
    if batch:
        z_norm, s_norm = z_norm.mean(), s_norm.mean()
    return 4 * (snr * z_norm / s_norm.clamp(min=1e-30)) ** 2


def sigma_step(sigma_t: float, h: float, rate: float) -> float:
    """The Langevin corrector's step at noise level sigma_t before a step of h in log-SNR log(alpha^2 /
    sigma^2): step = sigma_t^2 min(rate h, 1). It needs neither the batch nor the noise. Why it is safe and
    converges: -log p_t is (1 / sigma_t^2)-smooth for any data (its Hessian is (I - alpha^2 Cov[x0 | x_t] /
    sigma_t^2) / sigma_t^2), so steps up to sigma_t^2 are a quarter of the unadjusted Langevin algorithm's
    stability limit; and since the step shrinks with h, the Langevin time per unit log-SNR is fixed (rate
    sigma_t^2 / 2) while ULA's bias, O(step^2) per update, sums to O(h) and vanishes with more steps: pc then
    converges to the reverse SDE with extra Langevin mixing, whose marginals are the data's."""
    return sigma_t**2 * min(rate * h, 1.0)


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
    x <- x + step_size / 2 score_fn(x) + sqrt(step_size) z (Song & Ermon 2019, sec. 2.2). score_fn(x) returns
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


def denoiser_langevin(
    denoiser: Denoiser,
    x: torch.Tensor,
    level: tuple[float, float, float, torch.Tensor],
    n_steps: int,
    step: float | Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    call: SamplerCall,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(x, last x0_hat) after `n_steps` Langevin updates on p_t at one noise level (t, alpha_t, sigma_t,
    conditioning) with the denoiser's score -eps_hat / sigma_t; `step` is the step size, or step(score, z)
    per example (the corrector's `snr_step`). call.constraint(x, t) follows every update, as the known part
    follows each Langevin update in NCSN's inpainting (Song & Ermon 2019, app. B.3, Alg. 2)."""
    t, alpha, sigma, cond = level
    x0 = None
    for _ in range(n_steps):
        x0, eps = denoiser.predict(x, t, alpha=alpha, sigma=sigma, cond=cond, **call.model_kwargs)
        score = eps / -sigma
        z = randn(x.shape, call.generator, device=x.device, dtype=x.dtype)
        x = langevin_step(x, score, step(score, z) if callable(step) else step, z)
        if call.constraint is not None:
            x = call.constraint(x, t)
    return x, x0


@register("annealed_langevin")
@torch.no_grad()
def annealed_langevin(
    denoiser: Denoiser,
    x: torch.Tensor,
    times: torch.Tensor,
    call: SamplerCall,
    *,
    epsilon: float | None = None,
    steps_per_level: int = 100,
    denoise: bool = True,
) -> tuple[torch.Tensor, dict]:
    """Annealed Langevin dynamics (Song & Ermon 2019, Alg. 1). The noise levels are sigma_i = sigma(t) at every
    grid time above 0 (t = 0 is the data: every time but the last of a whole grid; every time of a grid that
    ends above 0, whose state then ends at its last time), largest first; at each, `steps_per_level` Langevin
    updates with step alpha_i = epsilon sigma_i^2 / sigma_L^2, sigma_L the smallest level. `denoise` ends a
    grid that reaches t = 0 with Tweedie's x0_hat at sigma_L (Jolicoeur-Martineau et al. 2021). The defaults
    are NCSN's, 100 steps per level and epsilon = 2e-5 (sigma_L / 0.01)^2, i.e. NCSN's 2e-5 for its sigma_L =
    0.01 and the same alpha_L = 0.2 sigma_L^2 on any other ladder (an epsilon tuned for one ladder diverges on
    another): the default step alpha_i = 0.2 sigma_i^2 does not depend on the ladder.
    NFE = levels * steps_per_level (+ 1 with denoise). The Langevin step sets its own noise, so a model
    with a learned variance is sampled on its mean prediction. The loop:

        for sigma_i in sigmas[:-1]:
            for _ in range(steps_per_level):
                x = x + alpha_i / 2 score(x, sigma_i) + sqrt(alpha_i) z"""
    levels = times[times > 0]
    if epsilon is None:
        epsilon = 0.2 * denoiser.process.sigma(levels[-1:]).item() ** 2
    if epsilon <= 0 or steps_per_level < 1:
        raise UserError(
            f"annealed Langevin needs epsilon > 0 and steps_per_level >= 1, got {epsilon} and {steps_per_level}"
        )
    nfe0 = denoiser.nfe
    alphas, sigmas, ts = denoiser.process.alpha(levels).tolist(), denoiser.process.sigma(levels), levels.tolist()
    step_sizes, sigmas = (epsilon * sigmas**2 / sigmas[-1] ** 2).tolist(), sigmas.tolist()
    conds = conditionings(denoiser, levels, x)
    for k in tqdm(range(len(levels)), leave=False, disable=not call.progress):
        level = (ts[k], alphas[k], sigmas[k], conds[k])
        x, x0 = denoiser_langevin(denoiser, x, level, steps_per_level, step_sizes[k], call)
        if call.callback is not None:
            call.callback(k, x, x0)
    if denoise and times[-1] == 0:
        x = denoiser.predict(x, ts[-1], alpha=alphas[-1], sigma=sigmas[-1], cond=conds[-1], **call.model_kwargs)[0]
    return x, {"nfe": denoiser.nfe - nfe0, "steps": len(levels) * steps_per_level}
