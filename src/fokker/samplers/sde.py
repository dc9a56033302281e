"""Reverse-SDE samplers (Song et al. 2021, sec. 4): the reverse SDE of dx = f dt + g dw is

    dx = [f(x, t) - g(t)^2 grad log p_t(x)] dt + g(t) dw-bar,   grad log p_t = -eps_hat / sigma(t).

Each predictor is a step linear in (x0_hat, eps_hat) (see samplers/steps.py); the Langevin corrector
runs at the start of each step, at the step's time."""

from __future__ import annotations

from collections.abc import Callable

import torch

from fokker.denoiser import Denoiser
from fokker.errors import UserError
from fokker.processes import Process
from fokker.samplers.ddpm import ancestral_coefficients
from fokker.samplers.langevin import langevin_step, snr_step
from fokker.samplers.noise import Generators, randn
from fokker.samplers.registry import Rule, register, when
from fokker.samplers.steps import Coefficients, Step, run_table, step_table

CORRECTORS = ("langevin", "none")
# pc's options that apply only with the ancestral predictor or with the Langevin corrector
PC_RULES = {
    "variance": when("predictor", "ancestral"),
    "corrector_steps": when("corrector", "langevin"),
    "snr": Rule(
        "corrector is langevin and corrector_steps >= 1",
        lambda o: o["corrector"] == "langevin" and o["corrector_steps"] >= 1,
        ("corrector", "corrector_steps"),
    ),
}


def euler_maruyama_coefficients(process: Process, t: torch.Tensor, s: torch.Tensor):
    """x_s = x + (g^2 score - f) dt + g sqrt(dt) z, dt = t - s > 0, with f = dlog(alpha)/dt x and
    score = -eps / sigma_t (Song et al. 2021, eq. 6, Euler-Maruyama); x = alpha_t x0 + sigma_t eps."""
    dt, g2 = t - s, process.diffusion(t) ** 2
    keep = 1 - process.d_log_alpha(t) * dt
    sigma_t = process.sigma(t)
    return keep * process.alpha(t), keep * sigma_t - g2 * dt / sigma_t, (g2 * dt).sqrt()


def reverse_diffusion_coefficients(process: Process, t: torch.Tensor, s: torch.Tensor):
    """Reverse diffusion (Song et al. 2021, eq. 46): the forward step x_t = a x_s + sqrt(v) z discretises
    the SDE as f = (a - 1) x, G = sqrt(v); reversed, x_s = x - f + G^2 score + G z = (2 - a) x - v eps /
    sigma_t + sqrt(v) z. a = sqrt(1 - beta), v = beta for VP; a = 1, v = sigma_t^2 - sigma_s^2 for VE."""
    a, v = process.transition(s, t)
    sigma_t = process.sigma(t)
    return (2 - a) * process.alpha(t), (2 - a) * sigma_t - v / sigma_t, v.sqrt()


def predictor_coefficients(predictor: str, variance: str | None = None) -> Coefficients:
    """The step of the named predictor: "reverse_diffusion", "euler_maruyama" or "ancestral" (DDPM's
    posterior step, Song et al. 2021, app. F, with the given fixed variance)."""
    if predictor == "ancestral":
        return ancestral_coefficients(variance or "beta_tilde")
    table = {"reverse_diffusion": reverse_diffusion_coefficients, "euler_maruyama": euler_maruyama_coefficients}
    if predictor not in table:
        raise UserError(f"unknown predictor {predictor!r}; expected one of {sorted([*table, 'ancestral'])}")
    return table[predictor]


def langevin_corrector(
    denoiser: Denoiser, snr: float, n_steps: int, generator: Generators, model_kwargs: dict
) -> Callable[[int, Step, torch.Tensor], torch.Tensor]:
    """`n_steps` Langevin updates at the step's time t, x <- x + eps score + sqrt(2 eps) z with
    eps = (snr ||z|| / ||score||)^2 per example (Song et al. 2021, Alg. 4-5, with alpha_i = 1)."""

    def correct(k: int, step: Step, x: torch.Tensor) -> torch.Tensor:
        for _ in range(n_steps):
            eps = denoiser.predict(x, None, alpha=step.alpha_t, sigma=step.sigma_t, c=step.c, **model_kwargs)[1]
            score = eps / -step.sigma_t
            z = randn(x.shape, generator, device=x.device, dtype=x.dtype)
            x = langevin_step(x, score, snr_step(score, z, snr), z)
        return x

    return correct


@register("euler_maruyama")
def euler_maruyama(
    denoiser: Denoiser,
    x: torch.Tensor,
    times: torch.Tensor,
    *,
    denoise: bool = True,
    generator: Generators = None,
    callback: Callable | None = None,
    model_kwargs: dict | None = None,
    progress: bool = False,
) -> tuple[torch.Tensor, dict]:
    """Euler-Maruyama on the reverse SDE (Song et al. 2021, eq. 6). With `denoise` the step onto t = 0
    returns x0_hat (Tweedie) instead of an Euler-Maruyama step. The SDE's own noise g sqrt(dt) is the
    step's: a learned reverse variance (a DDPM posterior's) has no role here, so such a model samples
    by its mean prediction (eps_hat), as every model does."""
    steps = step_table(denoiser, x, times, euler_maruyama_coefficients, denoise)
    return run_table(denoiser, x, steps, generator, callback, model_kwargs, progress)


@register("pc", only_when=PC_RULES)
def pc(
    denoiser: Denoiser,
    x: torch.Tensor,
    times: torch.Tensor,
    *,
    predictor: str = "reverse_diffusion",
    corrector: str = "langevin",
    snr: float = 0.16,
    corrector_steps: int = 1,
    variance: str | None = None,
    denoise: bool = True,
    generator: Generators = None,
    callback: Callable | None = None,
    model_kwargs: dict | None = None,
    progress: bool = False,
) -> tuple[torch.Tensor, dict]:
    """Predictor-corrector sampling (Song et al. 2021, Alg. 1): at each grid time t, `corrector_steps`
    Langevin corrector updates at t (corrector "langevin"; "none" for the predictor alone), then one
    predictor step to the next time. NFE = steps * (1 + corrector_steps).

    `variance` is the ancestral predictor's, as ddpm's: beta_tilde, beta or learned (Nichol & Dhariwal
    2021, eq. 15; the default for a model with a learned variance, else beta_tilde). The other
    predictors' noise is the reverse SDE's own, so a learned-variance model runs them on its mean
    prediction. `variance` without the ancestral predictor, and `snr` / `corrector_steps` without the
    corrector, have no effect and are refused (see PC_RULES)."""
    if corrector not in CORRECTORS:
        raise UserError(f"unknown corrector {corrector!r}; expected one of {CORRECTORS}")
    if snr <= 0 or corrector_steps < 0:
        raise UserError(f"pc needs snr > 0 and corrector_steps >= 0, got {snr} and {corrector_steps}")
    learned = False
    if predictor == "ancestral":
        variance = denoiser.reverse_variance(variance)
        learned = variance == "learned"
    coefficients = predictor_coefficients(predictor, "beta_tilde" if learned else variance)
    steps = step_table(denoiser, x, times, coefficients, denoise, learned_variance=learned)
    before = None
    if corrector == "langevin" and corrector_steps > 0:
        before = langevin_corrector(denoiser, snr, corrector_steps, generator, model_kwargs or {})
    return run_table(denoiser, x, steps, generator, callback, model_kwargs, progress, before)
