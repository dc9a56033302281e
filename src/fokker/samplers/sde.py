"""Reverse-SDE samplers (Song et al. 2021, sec. 4): the reverse SDE of dx = f dt + g dw is

    dx = [f(x, t) - g(t)^2 grad log p_t(x)] dt + g(t) dw-bar,   grad log p_t = -eps_hat / sigma(t).

Each predictor is a step linear in (x0_hat, eps_hat) (see samplers/steps.py); the Langevin corrector
runs at the start of each step, at the step's time."""

from __future__ import annotations

import torch

from fokker.denoiser import Denoiser
from fokker.errors import UserError
from fokker.flow import reverse_euler
from fokker.processes import Process
from fokker.samplers.ddpm import ancestral_coefficients
from fokker.samplers.langevin import denoiser_langevin, snr_step
from fokker.samplers.registry import Rule, SamplerCall, register, when
from fokker.samplers.steps import Coefficients, Hook, Step, run_table, step_table

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


def euler_maruyama_coefficients(process: Process, t: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """x_s = x - (f - g^2 score) dt + g sqrt(dt) z, dt = t - s (Song et al. 2021, eq. 6, Euler-Maruyama)."""
    return reverse_euler(process, t, s)


def reverse_diffusion_coefficients(process: Process, t: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Reverse diffusion (Song et al. 2021, eq. 46): the forward step x_t = a x_s + sqrt(var) z discretises
    the SDE as f = (a - 1) x, G = sqrt(var); reversed, x_s = x - f + G^2 score + G z = (2 - a) x - var eps /
    sigma_t + sqrt(var) z. a = sqrt(1 - beta), var = beta for VP; a = 1, var = sigma_t^2 - sigma_s^2 for VE."""
    a, var = process.transition(t, s)
    sigma_t = process.sigma(t)
    return (2 - a) * process.alpha(t), (2 - a) * sigma_t - var / sigma_t, var.sqrt()


def predictor_coefficients(predictor: str, variance: str | None = None) -> Coefficients:
    """The step of the named predictor: "reverse_diffusion", "euler_maruyama" or "ancestral" (DDPM's
    posterior step, Song et al. 2021, app. F, with the given fixed variance)."""
    if predictor == "ancestral":
        return ancestral_coefficients(variance or "beta_tilde")
    table = {"reverse_diffusion": reverse_diffusion_coefficients, "euler_maruyama": euler_maruyama_coefficients}
    if predictor not in table:
        raise UserError(f"unknown predictor {predictor!r}; expected one of {sorted([*table, 'ancestral'])}")
    return table[predictor]


def langevin_corrector(denoiser: Denoiser, snr: float, n_steps: int, call: SamplerCall) -> Hook:
    """`n_steps` Langevin updates at the step's time t, x <- x + e score + sqrt(2 e) z with
    e = (snr ||z|| / ||score||)^2 per example (Song et al. 2021, Alg. 4-5, with alpha_i = 1)."""

    def correct(k: int, step: Step, x: torch.Tensor) -> torch.Tensor:
        level = (step.t, step.alpha_t, step.sigma_t, step.cond)
        return denoiser_langevin(denoiser, x, level, n_steps, lambda score, z: snr_step(score, z, snr), call)[0]

    return correct


@register("euler_maruyama")
def euler_maruyama(
    denoiser: Denoiser, x: torch.Tensor, times: torch.Tensor, call: SamplerCall, *, denoise: bool = True
) -> tuple[torch.Tensor, dict]:
    """Euler-Maruyama on the reverse SDE (Song et al. 2021, eq. 6). With `denoise` the step onto t = 0
    returns x0_hat (Tweedie) instead of an Euler-Maruyama step. The SDE's own noise g sqrt(dt) is the
    step's: a learned reverse variance (a DDPM posterior's) has no role here, so such a model samples
    by its mean prediction (eps_hat), as every model does. The loop:

        for t, s in zip(times[:-1], times[1:]):
            x0, eps = denoiser.predict(x, t)
            x = x - (t - s) [f(x, t) + g(t)^2 eps / sigma(t)] + g(t) sqrt(t - s) z   # x0 at s = 0"""
    steps = step_table(denoiser, x, times, euler_maruyama_coefficients, denoise)
    return run_table(denoiser, x, steps, call)


@register("pc", only_when=PC_RULES)
def pc(
    denoiser: Denoiser,
    x: torch.Tensor,
    times: torch.Tensor,
    call: SamplerCall,
    *,
    predictor: str = "reverse_diffusion",
    corrector: str = "langevin",
    snr: float = 0.16,
    corrector_steps: int = 1,
    variance: str | None = None,
    denoise: bool = True,
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
        before = langevin_corrector(denoiser, snr, corrector_steps, call)
    return run_table(denoiser, x, steps, call, before)
