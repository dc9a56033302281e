"""EDM's samplers (Karras et al. 2022, Alg. 1 and 2) for any process and prediction type, in the variables

    y = x / alpha,   r = sigma / alpha (the noise ratio, EDM's sigma; fokker.grids.noise_ratio),

in which x_t = alpha x_0 + sigma eps is y = x_0 + r eps, the VE process EDM writes its samplers for. There the
probability-flow ODE is dy/dr = eps_hat(x, t) (Karras et al. 2022, eq. 4 with s = 1: dx/dsigma = (x - D) / sigma),
exact for every process, and each step from r to r' is Heun's method in r: the Euler predictor
y' = y + (r' - r) eps_hat, i.e. x' = alpha' x0_hat + sigma' eps_hat (DDIM's step), then the trapezoidal correction
with eps_hat at the predicted x'. Back in x, with h = alpha' (r' - r) = sigma' - alpha' r:

    x' = alpha' x0_hat + sigma' eps_hat + h / 2 (eps_hat(x', t') - eps_hat).

The stochastic sampler first raises the noise of y from r to r_hat = (1 + gamma) r by fresh noise (Alg. 2,
lines 4-6) and steps from there. The step onto t = 0 returns x0_hat, the last time's."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from tqdm.auto import tqdm

from fokker.denoiser import Denoiser, linear_coefficients
from fokker.errors import UserError
from fokker.grids import noise_ratio, times_at_log_snr
from fokker.noise import randn
from fokker.samplers.registry import Rule, SamplerCall, register
from fokker.samplers.steps import conditionings

MAX_GAMMA = math.sqrt(2) - 1  # Karras et al. 2022, Alg. 2: gamma <= sqrt(2) - 1 at most doubles the variance


class Step(NamedTuple):
    """One step from the grid time t (raised to t_hat by the churn) to s < t, coefficients as python floats."""

    t_hat: float  # the time of the first evaluation: the ratio r_hat = (1 + gamma) r(t); t itself without churn
    s: float
    cond_hat: torch.Tensor  # the network's noise conditioning at t_hat and at s, shape (batch,)
    cond_s: torch.Tensor
    alpha_hat: float
    sigma_hat: float
    alpha_s: float
    sigma_s: float
    lift: float  # the churn: x_hat = lift x + noise z, lift = alpha_hat / alpha_t
    noise: float  # alpha_hat sqrt(r_hat^2 - r^2) s_noise; 0 without churn
    half: float  # h / 2, h = alpha_s (r_s - r_hat): Heun's correction is half (eps_hat(x_s, s) - eps_hat)
    correct: bool  # whether the correction can be evaluated (sigma_s > 0); the step onto t = 0 never corrects
    # the same step on the raw outputs (x0_hat = a0 x + b0 out, eps_hat = a1 x + b1 out, `linear_coefficients`):
    # x_s = euler_x x + euler_out out (x0_hat at s = 0), then x' = heun_s x_s + heun_out_s out_s + heun_x x
    # + heun_out out, i.e. x_s + half (eps_hat(x_s, s) - eps_hat(x, t_hat))
    euler_x: float
    euler_out: float
    heun_s: float
    heun_out_s: float
    heun_x: float
    heun_out: float


def churn_gammas(ratios: torch.Tensor, s_churn: float, s_tmin: float, s_tmax: float, steps: int) -> torch.Tensor:
    """gamma_i = min(s_churn / N, sqrt(2) - 1) where the ratio r_i is in [s_tmin, s_tmax], else 0 (Karras et al.
    2022, Alg. 2, line 3), N the number of steps."""
    inside = (ratios >= s_tmin) & (ratios <= s_tmax)
    return inside.to(torch.float64) * min(s_churn / steps, MAX_GAMMA)


def edm_table(
    denoiser: Denoiser, x: torch.Tensor, times: torch.Tensor, gammas: torch.Tensor, s_noise: float = 1.0
) -> list[Step]:
    """The steps between consecutive grid times, step k first raising the ratio to (1 + gamma_k) r(t_k), at most
    rho(1) (t_hat <= 1), at the time t_hat found by bisection (fractional on a discrete grid)."""
    process = denoiser.process
    t, s = times[:-1], times[1:]
    r_t = noise_ratio(process, t)
    r_top = noise_ratio(process, torch.ones(1, dtype=torch.float64))
    wanted = torch.minimum(r_t * (1 + gammas), r_top)
    churned = wanted > r_t
    t_hat = torch.where(churned, times_at_log_snr(process, -2 * torch.log(wanted), t), t) if churned.any() else t
    r_hat = torch.where(churned, noise_ratio(process, t_hat), r_t)
    alpha_t, alpha_hat, sigma_hat = process.alpha(t), process.alpha(t_hat), process.sigma(t_hat)
    alpha_s, sigma_s = process.alpha(s), process.sigma(s)
    noise = torch.where(churned, alpha_hat * (r_hat**2 - r_t**2).clamp(min=0).sqrt() * s_noise, 0.0)
    lift = torch.where(churned, alpha_hat / alpha_t, 1.0)
    half = (sigma_s - alpha_s * r_hat) / 2
    correct = (s > 0) & (sigma_s > 0)
    a0, b0, a1, b1 = linear_coefficients(alpha_hat, sigma_hat, denoiser.prediction)
    a1_s, b1_s = linear_coefficients(alpha_s, sigma_s, denoiser.prediction)[2:]
    final = s == 0
    euler_x = torch.where(final, a0, alpha_s * a0 + sigma_s * a1)
    euler_out = torch.where(final, b0, alpha_s * b0 + sigma_s * b1)
    heun = (1 + half * a1_s, half * b1_s, -half * a1, -half * b1)
    heun = [torch.as_tensor(c, dtype=torch.float64).expand(len(s)) for c in heun]
    columns = (t_hat, s, alpha_hat, sigma_hat, alpha_s, sigma_s, lift, noise, half, correct, euler_x, euler_out, *heun)
    rows = zip(*(c.tolist() for c in columns), strict=True)
    conds = zip(conditionings(denoiser, t_hat, x), conditionings(denoiser, s, x), strict=True)
    return [Step(row[0], row[1], *cond, *row[2:]) for cond, row in zip(conds, rows, strict=True)]


@torch.no_grad()
def run_edm(denoiser: Denoiser, x: torch.Tensor, steps: list[Step], call: SamplerCall) -> tuple[torch.Tensor, dict]:
    """Karras et al. 2022, Alg. 2 (Alg. 1 without churn) in x (the module docstring's step):

    for step in steps:                                                # (folded on the raw outputs without
        x = lift x + noise z                                          #  clip or callback: four tensor operations
                                                                      #  per Heun step of an eps network)
        x0, eps = denoiser.predict(x, t_hat)
        x_s = alpha_s x0 + sigma_s eps                                # Euler in r; x0 at s = 0
        x_s = x_s + half (denoiser.predict(x_s, s).eps - eps)         # Heun, where sigma_s > 0"""
    nfe0, kw = denoiser.nfe, call.model_kwargs
    folded = denoiser.clip is None and call.callback is None
    for k, st in enumerate(tqdm(steps, leave=False) if call.progress else steps):
        if st.noise:
            z = randn(x.shape, call.generator, device=x.device, dtype=x.dtype)
            x = torch.add(x * st.lift, z, alpha=st.noise)
        if folded:  # the same step on the raw outputs, x0_hat and eps_hat never formed
            out = denoiser.raw_and_variance(x, st.t_hat, st.cond_hat, **kw)[0]
            x_s = torch.add(x * st.euler_x, out, alpha=st.euler_out)
            if st.correct:
                out_s = denoiser.raw_and_variance(x_s, st.s, st.cond_s, **kw)[0]
                x_s = torch.add(x_s * st.heun_s, out_s, alpha=st.heun_out_s).add_(out, alpha=st.heun_out)
                if st.heun_x:
                    x_s.add_(x, alpha=st.heun_x)
            x = x_s
            if call.constraint is not None and st.s > 0:
                x = call.constraint(x, st.s)
            continue
        x0, eps = denoiser.predict(x, st.t_hat, alpha=st.alpha_hat, sigma=st.sigma_hat, cond=st.cond_hat, **kw)
        if st.s == 0:
            x = x0
        else:
            x = torch.add(x0 * st.alpha_s, eps, alpha=st.sigma_s)
            if st.correct:
                eps_s = denoiser.predict(x, st.s, alpha=st.alpha_s, sigma=st.sigma_s, cond=st.cond_s, **kw)[1]
                x = x.add_(eps_s - eps, alpha=st.half)
            if call.constraint is not None:
                x = call.constraint(x, st.s)
        if call.callback is not None:
            call.callback(k, x, x0)
    return x, {"nfe": denoiser.nfe - nfe0, "steps": len(steps)}


@register("edm_heun")
def edm_heun(denoiser: Denoiser, x: torch.Tensor, times: torch.Tensor, call: SamplerCall) -> tuple[torch.Tensor, dict]:
    """EDM's deterministic sampler (Karras et al. 2022, Alg. 1): Heun's method on dy/dr = eps_hat in the noise
    ratio r = sigma / alpha between the grid times, an Euler step where the correction cannot be evaluated, and
    x0_hat at the step onto t = 0. NFE = 2 steps - 1 on a grid ending at 0 (2 steps on one ending above it).
    Best on the "karras" spacing. A model with a learned variance runs on its mean prediction."""
    return run_edm(denoiser, x, edm_table(denoiser, x, times, torch.zeros(len(times) - 1, dtype=torch.float64)), call)


CHURN = Rule("s_churn > 0", lambda o: o["s_churn"] > 0, ("s_churn",))


@register("edm", only_when={"s_tmin": CHURN, "s_tmax": CHURN, "s_noise": CHURN})
def edm(
    denoiser: Denoiser,
    x: torch.Tensor,
    times: torch.Tensor,
    call: SamplerCall,
    *,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = math.inf,
    s_noise: float = 1.0,
) -> tuple[torch.Tensor, dict]:
    """EDM's stochastic sampler (Karras et al. 2022, Alg. 2): before step i, where the noise ratio r_i = sigma /
    alpha is in [s_tmin, s_tmax], noise of std sqrt(r_hat^2 - r_i^2) s_noise (in y = x / alpha) raises it to
    r_hat = (1 + gamma) r_i, gamma = min(s_churn / N, sqrt(2) - 1) (never above rho(1), so t_hat <= 1), then
    edm_heun's step from r_hat. s_churn = 0 is edm_heun; s_tmin, s_tmax and s_noise apply only with churn."""
    for name, value in (("s_churn", s_churn), ("s_tmin", s_tmin), ("s_noise", s_noise)):
        if not 0 <= value < math.inf:
            raise UserError(f"{name} must be a finite number >= 0, got {value}")
    if not s_tmin <= s_tmax:
        raise UserError(f"s_tmin must be at most s_tmax, got {s_tmin} and {s_tmax}")
    gammas = churn_gammas(noise_ratio(denoiser.process, times[:-1]), s_churn, s_tmin, s_tmax, len(times) - 1)
    return run_edm(denoiser, x, edm_table(denoiser, x, times, gammas, s_noise), call)
