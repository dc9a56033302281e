"""DPM-Solver++ (Lu et al. 2022b): exponential integrators of the probability-flow ODE in its data form,

    x_s = (sigma_s / sigma_t) x_t + alpha_s (1 - e^-h) x0_hat_t + (higher-order terms),   h = lambda_s - lambda_t,

lambda = log(alpha / sigma), written once on the process's alpha and sigma (VP, VE, sub-VP; discrete or
continuous) and run by the loop of samplers/exponential.py. The first-order step is DDIM's (eta = 0)."""

from __future__ import annotations

import functools
import math

import torch

from fokker.denoiser import Denoiser
from fokker.samplers.exponential import Grid, Predictor, Update, run_multistep
from fokker.samplers.registry import SamplerCall, register
from fokker.samplers.unipc import CORRECTOR_RULES, check_corrector, unic


def _ratio(grid: Grid, k: int, back: int) -> float:
    """r = (lambda_k-back+1 - lambda_k-back) / h_k: an earlier step's length in units of step k's."""
    h = grid.lam[k + 1] - grid.lam[k]
    return (grid.lam[k - back + 1] - grid.lam[k - back]) / h


def dpmpp_multistep(grid: Grid, k: int, order: int, stochastic: bool = False) -> Update:
    """DPM-Solver++(2M) and (3M) (Lu et al. 2022b, Alg. 2 and app. B) and, `stochastic`, SDE-DPM-Solver++(2M)
    (Lu et al. 2022b, sec. 5), for step k -> k + 1 of the grid on the evaluations D_0 = x0_hat_k, D_1 =
    x0_hat_k-1, D_2 = x0_hat_k-2. With h = lambda_k+1 - lambda_k, r_i the earlier steps' lengths over h and
    D1 = (D_0 - D_1) / r_0 (order 2), or D1, D2 extrapolated by Lu et al.'s divided differences (order 3):

        ODE:  x_s = (sigma_s / sigma_t) x_t + alpha_s [(1 - e^-h) D_0 + (1 - e^-h) / 2 D1]                    (2M)
              x_s = (sigma_s / sigma_t) x_t + alpha_s [(1 - e^-h) D_0 + ((e^-h - 1) / h + 1) D1
                                                       + (1 - 2 (e^-h - 1 + h) / h^2) D2]                     (3M)
        SDE:  x_s = (sigma_s / sigma_t) e^-h x_t + alpha_s (1 - e^-2h) (D_0 + D1 / 2) + sigma_s sqrt(1 - e^-2h) z

    D2 = h^2 x0''/2 + O(h^3), so exact integration of the Taylor term weighs it by 2 int_0^h e^-(h-u) u^2/2 du / h^2
    = 1 - 2 (e^-h - 1 + h) / h^2. The DPM-Solver reference code (and diffusers) weigh it by half that, which
    leaves their third-order step locally third-order, not fourth (tests/test_fast_samplers.py measures the order)."""
    h, alpha_s = grid.lam[k + 1] - grid.lam[k], grid.alpha[k + 1]
    ratio = grid.sigma[k + 1] / grid.sigma[k]
    a, std = (ratio * math.exp(-h), grid.sigma[k + 1] * math.sqrt(-math.expm1(-2 * h))) if stochastic else (ratio, 0.0)
    c0 = -alpha_s * math.expm1(-2 * h if stochastic else -h)
    if order == 1:
        return Update(a, (c0,), std)
    r0 = _ratio(grid, k, 1)
    if order == 2:  # D1 = (D_0 - D_1) / r0, midpoint form: c0 (D_0 + D1 / 2)
        return Update(a, (c0 * (1 + 0.5 / r0), -c0 * 0.5 / r0), std)
    r1 = _ratio(grid, k, 2)
    if stochastic:
        raise ValueError("SDE-DPM-Solver++ is implemented to second order")
    d1_0 = (1 / r0, -1 / r0, 0.0)  # (D_0 - D_1) / r0 and (D_1 - D_2) / r1, as weights on (D_0, D_1, D_2)
    d1_1 = (0.0, 1 / r1, -1 / r1)
    d1 = [u + r0 / (r0 + r1) * (u - v) for u, v in zip(d1_0, d1_1, strict=True)]
    d2 = [(u - v) / (r0 + r1) for u, v in zip(d1_0, d1_1, strict=True)]
    c1 = alpha_s * (math.expm1(-h) / h + 1)
    c2 = alpha_s * (1 - 2 * (math.expm1(-h) + h) / h**2)  # twice the reference code's (see the docstring)
    return Update(a, tuple(c0 * (i == 0) + c1 * u + c2 * v for i, (u, v) in enumerate(zip(d1, d2, strict=True))), std)


def dpmpp_sde_multistep(grid: Grid, k: int, order: int) -> Update:
    """SDE-DPM-Solver++(2M)'s step: `dpmpp_multistep` with `stochastic`."""
    return dpmpp_multistep(grid, k, order, stochastic=True)


@functools.cache
def dpmpp_singlestep(steps: int, lands_on_zero: bool) -> Predictor:
    """DPM-Solver++(2S) (Lu et al. 2022b, Alg. 1) on pairs of grid steps: from x_k, a first-order step to
    the stage t_k+1 gives u, evaluated there; then from x_k again, with h = lambda_k+2 - lambda_k and r =
    (lambda_k+1 - lambda_k) / h,

        x_k+2 = (sigma_k+2 / sigma_k) x_k + alpha_k+2 (1 - e^-h) [(1 - 1 / 2r) x0_hat(x_k) + 1 / 2r x0_hat(u)].

    A grid step left over (an odd count before the final step onto t = 0) is a first-order step first."""
    paired = steps - 1 if lands_on_zero else steps
    odd = paired % 2

    def predictor(grid: Grid, k: int, order: int) -> Update:
        if k < odd or (k - odd) % 2 == 0:  # a first-order step (a stage, or the one left over)
            return dpmpp_multistep(grid, k, 1)
        h, alpha_s = grid.lam[k + 1] - grid.lam[k - 1], grid.alpha[k + 1]
        r = (grid.lam[k] - grid.lam[k - 1]) / h
        c = -alpha_s * math.expm1(-h)
        return Update(grid.sigma[k + 1] / grid.sigma[k - 1], (c / (2 * r), c * (1 - 1 / (2 * r))), from_previous=True)

    return predictor


def _multistep(denoiser, x, times, call, order: int, corrector: str, b_h: str) -> tuple[torch.Tensor, dict]:
    check_corrector(corrector, b_h)
    fix = unic(b_h) if corrector == "unic" else None
    return run_multistep(denoiser, x, times, call, dpmpp_multistep, order, fix)


@register("dpmpp_2m", only_when=CORRECTOR_RULES)
def dpmpp_2m(
    denoiser: Denoiser,
    x: torch.Tensor,
    times: torch.Tensor,
    call: SamplerCall,
    *,
    corrector: str = "none",
    b_h: str = "bh2",
) -> tuple[torch.Tensor, dict]:
    """DPM-Solver++(2M) (Lu et al. 2022b, Alg. 2): second-order multistep in log-SNR on x0_hat, deterministic,
    NFE = steps. corrector "unic" adds UniPC's corrector (Zhao et al. 2023, UniC with B(h) = `b_h`) at no
    extra NFE."""
    return _multistep(denoiser, x, times, call, 2, corrector, b_h)


@register("dpmpp_3m", only_when=CORRECTOR_RULES)
def dpmpp_3m(
    denoiser: Denoiser,
    x: torch.Tensor,
    times: torch.Tensor,
    call: SamplerCall,
    *,
    corrector: str = "none",
    b_h: str = "bh2",
) -> tuple[torch.Tensor, dict]:
    """DPM-Solver++(3M) (Lu et al. 2022b, app. B): third-order multistep on x0_hat, NFE = steps; `corrector`
    as dpmpp_2m's."""
    return _multistep(denoiser, x, times, call, 3, corrector, b_h)


@register("dpmpp_2s")
def dpmpp_2s(denoiser: Denoiser, x: torch.Tensor, times: torch.Tensor, call: SamplerCall) -> tuple[torch.Tensor, dict]:
    """DPM-Solver++(2S) (Lu et al. 2022b, Alg. 1): singlestep second order, each pair of grid steps one
    solver step with its stage at the pair's middle time (r = 1/2 on a log-SNR-uniform grid), NFE = steps."""
    steps, lands_on_zero = len(times) - 1, bool(times[-1] == 0)
    return run_multistep(denoiser, x, times, call, dpmpp_singlestep(steps, lands_on_zero), 1)


@register("dpmpp_2m_sde")
def dpmpp_2m_sde(
    denoiser: Denoiser, x: torch.Tensor, times: torch.Tensor, call: SamplerCall
) -> tuple[torch.Tensor, dict]:
    """SDE-DPM-Solver++(2M) (Lu et al. 2022b, sec. 5; diffusers' sde-dpmsolver++ with the midpoint form):
    second-order multistep on the reverse SDE in log-SNR, NFE = steps. Its first-order step is the DDPM
    posterior step (beta-tilde) between the two times."""
    return run_multistep(denoiser, x, times, call, dpmpp_sde_multistep, 2)
