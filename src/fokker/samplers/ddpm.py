"""DDPM ancestral sampling and DDIM: one Gaussian step from t to s < t,

    x_s = alpha_s x0_hat + c_eps eps_hat + std z,   z ~ N(0, I).

On a respaced grid the coefficients come from alpha-bar on the subset (Nichol & Dhariwal 2021,
sec. 4). The last step lands on t = 0 and returns x0_hat with no noise added."""

from __future__ import annotations

import torch

from fokker.denoiser import Denoiser
from fokker.errors import UserError
from fokker.processes import Process
from fokker.samplers.registry import SamplerCall, register
from fokker.samplers.steps import Coefficients, run_table, step_table

VARIANCES = ("beta_tilde", "beta")


def ancestral_coefficients(variance: str = "beta_tilde") -> Coefficients:
    """x_s ~ N(mu-tilde(x_t, x0_hat), var I): mu-tilde = alpha_s x0 + a sigma_s^2 / sigma_t eps in terms of
    (x0, eps), var = beta-tilde (the posterior variance, Ho et al. 2020, eq. 7) or beta (the forward
    transition variance sigma_t^2 - a^2 sigma_s^2, a = alpha_t / alpha_s; beta_t on the full grid)."""
    if variance not in VARIANCES:
        raise UserError(f"unknown variance {variance!r}; expected one of {(*VARIANCES, 'learned')}")

    def coefficients(process: Process, t: torch.Tensor, s: torch.Tensor):
        a, beta = process.transition(t, s)
        var = process.posterior_variance(t, s) if variance == "beta_tilde" else beta
        return process.alpha(s), a * process.sigma(s) ** 2 / process.sigma(t), var.sqrt()

    return coefficients


def ddim_coefficients(eta: float) -> Coefficients:
    """x_s = alpha_s x0 + sqrt(sigma_s^2 - std^2) eps + std z, std = eta sqrt(beta-tilde) (Song, Meng &
    Ermon 2021, eq. 12 and 16)."""

    def coefficients(process: Process, t: torch.Tensor, s: torch.Tensor):
        std = eta * process.posterior_variance(t, s).sqrt()
        return process.alpha(s), (process.sigma(s) ** 2 - std**2).clamp(min=0).sqrt(), std

    return coefficients


@register("ddpm", shifts_mean=True)
def ddpm(
    denoiser: Denoiser, x: torch.Tensor, times: torch.Tensor, call: SamplerCall, *, variance: str | None = None
) -> tuple[torch.Tensor, dict]:
    """Ancestral sampling, x_s ~ N(mu-tilde(x_t, x0_hat), sigma^2 I) (Ho et al. 2020, Alg. 2, eq. 11),
    with sigma^2 = beta-tilde ("beta_tilde", the posterior variance), beta ("beta", the forward
    transition variance 1 - alpha-bar_t / alpha-bar_s on a respaced grid) or "learned" (Nichol & Dhariwal
    2021, eq. 15, between beta and beta-tilde of the grid's own steps). Default: learned for a model
    with a learned variance, else beta-tilde. The loop:

        for t, s in zip(times[:-1], times[1:]):
            x0, eps = denoiser.predict(x, t)
            x = alpha(s) x0 + a sigma(s)^2 / sigma(t) eps + sqrt(var) z   # x0 at s = 0"""
    variance = denoiser.reverse_variance(variance)
    learned = variance == "learned"
    coefficients = ancestral_coefficients("beta_tilde" if learned else variance)
    return run_table(denoiser, x, step_table(denoiser, x, times, coefficients, learned_variance=learned), call)


@register("ddim")
def ddim(
    denoiser: Denoiser, x: torch.Tensor, times: torch.Tensor, call: SamplerCall, *, eta: float = 0.0
) -> tuple[torch.Tensor, dict]:
    """DDIM (Song, Meng & Ermon 2021, eq. 12 and 16): x_s = alpha_s x0_hat + sqrt(sigma_s^2 - std^2) eps_hat
    + std z with std = eta sqrt(beta-tilde). eta = 0 is deterministic; eta = 1 is ancestral sampling
    with beta-tilde. eta sets the step's variance, so a model's learned variance has no role here: such a
    model samples by its mean prediction (for its learned variance use ddpm). Returns (x, info)."""
    if not 0.0 <= eta <= 1.0:
        raise UserError(f"eta must be in [0, 1], got {eta}")
    return run_table(denoiser, x, step_table(denoiser, x, times, ddim_coefficients(eta)), call)
