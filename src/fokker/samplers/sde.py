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
from fokker.samplers.langevin import denoiser_langevin, sigma_step, snr_step
from fokker.samplers.registry import Rule, SamplerCall, register, when
from fokker.samplers.steps import Coefficients, Hook, Step, run_table, step_table

CORRECTORS = ("langevin", "none")
STEP_RULES = ("sigma", "snr", "snr_batch")


def _corrects(o: dict) -> bool:
    return o["corrector"] == "langevin" and o["corrector_steps"] >= 1


# pc's options that apply only with the ancestral predictor, with the Langevin corrector, or with its step rule
PC_RULES = {
    "variance": when("predictor", "ancestral"),
    "corrector_steps": when("corrector", "langevin"),
    "step_rule": Rule("corrector is langevin and corrector_steps >= 1", _corrects, ("corrector", "corrector_steps")),
    "rate": Rule(
        "corrector is langevin, corrector_steps >= 1 and step_rule is sigma",
        lambda o: _corrects(o) and o["step_rule"] == "sigma",
        ("corrector", "corrector_steps", "step_rule"),
    ),
    "snr": Rule(
        "corrector is langevin, corrector_steps >= 1 and step_rule is snr or snr_batch",
        lambda o: _corrects(o) and o["step_rule"] in ("snr", "snr_batch"),
        ("corrector", "corrector_steps", "step_rule"),
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


def langevin_corrector(
    denoiser: Denoiser, steps: list[Step], rule: str, snr: float, rate: float, n_steps: int, call: SamplerCall
) -> Hook:
    """`n_steps` Langevin updates x <- x + step / 2 score + sqrt(step) z at the start of each step, at its time
    t (Song et al. 2021, Alg. 1). The step by `rule`: "sigma", sigma_t^2 min(rate h_k, 1) with h_k the step's
    log-SNR increment (`sigma_step`: the same for every sample, and vanishing with h_k, so pc converges);
    "snr", 2 e with e = 2 (snr ||z|| / ||score||)^2 per example (Alg. 4-5); "snr_batch", the same with the
    norms averaged over the batch (score_sde's and diffusers' rule)."""
    if rule == "sigma":
        t, s = (torch.tensor([getattr(st, a) for st in steps], dtype=torch.float64) for a in ("t", "s"))
        h = (denoiser.process.log_snr(s) - denoiser.process.log_snr(t)).tolist()  # inf onto s = 0
        sizes = [sigma_step(st.sigma_t, h_k, rate) for st, h_k in zip(steps, h, strict=True)]
    else:
        batch = rule == "snr_batch"
        per_sample = lambda score, z: snr_step(score, z, snr, batch)  # noqa: E731

    def correct(k: int, step: Step, x: torch.Tensor) -> torch.Tensor:
        level = (step.t, step.alpha_t, step.sigma_t, step.cond)
        return denoiser_langevin(denoiser, x, level, n_steps, sizes[k] if rule == "sigma" else per_sample, call)[0]

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
    corrector_steps: int = 1,
    step_rule: str = "sigma",
    rate: float = 1.0,
    snr: float = 0.16,
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
    if step_rule not in STEP_RULES:
        raise UserError(f"unknown step_rule {step_rule!r}; expected one of {STEP_RULES}")
    if snr <= 0 or rate <= 0 or corrector_steps < 0:
        raise UserError(f"pc needs snr > 0, rate > 0 and corrector_steps >= 0, got {snr}, {rate} and {corrector_steps}")
    learned = False
    if predictor == "ancestral":
        variance = denoiser.reverse_variance(variance)
        learned = variance == "learned"
    coefficients = predictor_coefficients(predictor, "beta_tilde" if learned else variance)
    steps = step_table(denoiser, x, times, coefficients, denoise, learned_variance=learned)
    before = None
    if corrector == "langevin" and corrector_steps > 0:
        before = langevin_corrector(denoiser, steps, step_rule, snr, rate, corrector_steps, call)
    return run_table(denoiser, x, steps, call, before)
