"""DDPM ancestral sampling and DDIM: one Gaussian step from t to s < t,

    x_s = alpha_s x0_hat + c_eps eps_hat + std z,   z ~ N(0, I).

On a respaced grid the coefficients come from alpha-bar on the subset (Nichol & Dhariwal 2021,
sec. 4). The last step lands on t = 0 and returns x0_hat with no noise added."""

from __future__ import annotations

from collections.abc import Callable

import torch

from fokker.denoiser import Denoiser
from fokker.errors import UserError
from fokker.processes import Process
from fokker.samplers.noise import Generators
from fokker.samplers.registry import register
from fokker.samplers.steps import run_table, step_table

VARIANCES = ("beta_tilde", "beta")


def ancestral_coefficients(variance: str = "beta_tilde"):
    """x_s ~ N(mu-tilde(x_t, x0_hat), var I): mu-tilde = alpha_s x0 + a sigma_s^2 / sigma_t eps in terms of
    (x0, eps), var = beta-tilde (the posterior variance, Ho et al. 2020, eq. 7) or beta (the forward
    transition variance v = sigma_t^2 - a^2 sigma_s^2, a = alpha_t / alpha_s; beta_t on the full grid)."""
    if variance not in VARIANCES:
        raise UserError(f"unknown variance {variance!r}; expected one of {(*VARIANCES, 'learned')}")

    def coefficients(process: Process, t: torch.Tensor, s: torch.Tensor):
        a, v = process.transition(s, t)
        sigma_s2, sigma_t = process.sigma(s) ** 2, process.sigma(t)
        var = v * sigma_s2 / sigma_t**2 if variance == "beta_tilde" else v
        return process.alpha(s), a * sigma_s2 / sigma_t, var.sqrt()

    return coefficients


@register("ddpm")
def ddpm(
    denoiser: Denoiser,
    x: torch.Tensor,
    times: torch.Tensor,
    *,
    variance: str | None = None,
    generator: Generators = None,
    callback: Callable | None = None,
    model_kwargs: dict | None = None,
    progress: bool = False,
) -> tuple[torch.Tensor, dict]:
    """Ancestral sampling, x_s ~ N(mu-tilde(x_t, x0_hat), sigma^2 I) (Ho et al. 2020, Alg. 2, eq. 11),
    with sigma^2 = beta-tilde ("beta_tilde", the posterior variance), beta ("beta", the forward
    transition variance 1 - alpha-bar_t / alpha-bar_s on a respaced grid) or "learned" (Nichol & Dhariwal
    2021, eq. 15, between beta and beta-tilde of the grid's own steps). Default: learned for a model
    with a learned variance, else beta-tilde."""
    variance = denoiser.reverse_variance(variance)
    learned = variance == "learned"
    coefficients = ancestral_coefficients("beta_tilde" if learned else variance)
    steps = step_table(denoiser, x, times, coefficients, learned_variance=learned)
    return run_table(denoiser, x, steps, generator, callback, model_kwargs, progress)


@register("ddim")
def ddim(
    denoiser: Denoiser,
    x: torch.Tensor,
    times: torch.Tensor,
    *,
    eta: float = 0.0,
    generator: Generators = None,
    callback: Callable | None = None,
    model_kwargs: dict | None = None,
    progress: bool = False,
) -> tuple[torch.Tensor, dict]:
    """DDIM (Song, Meng & Ermon 2021, eq. 12 and 16): x_s = alpha_s x0_hat + sqrt(sigma_s^2 - std^2) eps_hat
    + std z with std = eta sqrt(beta-tilde). eta = 0 is deterministic; eta = 1 is ancestral sampling
    with beta-tilde. eta sets the step's variance, so a model's learned variance has no role here: such a
    model samples by its mean prediction (for its learned variance use ddpm)."""
    if not 0.0 <= eta <= 1.0:
        raise UserError(f"eta must be in [0, 1], got {eta}")

    def coefficients(process: Process, t: torch.Tensor, s: torch.Tensor):
        v = process.transition(s, t)[1]
        sigma_s2 = process.sigma(s) ** 2
        std = eta * (v * sigma_s2 / process.sigma(t) ** 2).sqrt()
        return process.alpha(s), (sigma_s2 - std**2).clamp(min=0).sqrt(), std

    steps = step_table(denoiser, x, times, coefficients)
    return run_table(denoiser, x, steps, generator, callback, model_kwargs, progress)
