"""The variational bound of a Gaussian diffusion (Sohl-Dickstein et al. 2015; Ho et al. 2020, eq. 5):

    -log p(x_0) <= L_T + sum_{k >= 2} L_{k-1} + L_0,
    L_T     = KL(q(x_1 | x_0) || p(x_1)),
    L_{k-1} = KL(q(x_s | x_t, x_0) || p(x_s | x_t)),   t = t_k, s = t_{k-1},
    L_0     = -log p(x_0 | x_{t_1}),

on any grid 1 = t_N > ... > t_1 > t_0 = 0 of a process with sigma(0) = 0 (VP, sub-VP): the process's own
T-step grid, or a respaced subset of it. The model's reverse step is p(x_s | x_t) = N(mu-tilde(x_t, x0_hat),
Sigma I) with Sigma = beta, beta-tilde or learned (Nichol & Dhariwal 2021, eq. 15). L_0 is the
discretized Gaussian decoder for data on `levels` equally spaced values in [-1, 1] (256 for 8-bit
images: bins of width 2/255, the edge bins open to -inf and +inf; Ho et al. 2020, eq. 13), or the
Gaussian density for continuous data (levels None)."""

from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

from fokker.denoiser import REVERSE_VARIANCES, Denoiser, to_x0_eps
from fokker.errors import UserError
from fokker.grids import time_grid
from fokker.noise import Generators, rand, randn
from fokker.processes import Process, expand_as
from fokker.schedules import F64


def normal_kl(mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor, logvar2: torch.Tensor) -> torch.Tensor:
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)), elementwise."""
    return 0.5 * (logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2) - 1)


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, e^logvar), elementwise."""
    return -0.5 * (math.log(2 * math.pi) + logvar + (x - mean) ** 2 * torch.exp(-logvar))


def _log_ndtr_difference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """log(Phi(b) - Phi(a)) for a < b, accurate in both tails: above the median it is computed as
    log(Phi(-a) - Phi(-b)). Clamped at 1e-300 so that the gradient stays finite where a bin has no mass."""
    flip = a > 0
    lo, hi = torch.where(flip, -b, a), torch.where(flip, -a, b)
    log_hi, log_lo = torch.special.log_ndtr(hi), torch.special.log_ndtr(lo)
    return log_hi + torch.log((-torch.expm1(log_lo - log_hi)).clamp(min=1e-300))


def discretized_gaussian_log_prob(
    x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor, levels: int
) -> torch.Tensor:
    """log P(x) of x on `levels` equally spaced values in [-1, 1] under N(mean, e^logvar) discretized into
    bins of width 2 / (levels - 1) around each value, the two edge bins open (Ho et al. 2020, eq. 13), in
    float64, elementwise. The probabilities of the `levels` values sum to 1."""
    if levels < 2:
        raise UserError(f"a discretized decoder needs at least 2 levels, got {levels}")
    x, mean, logvar = x.to(F64), mean.to(F64), logvar.to(F64)
    half = 1.0 / (levels - 1)
    inv_std = torch.exp(-0.5 * logvar)
    upper, lower = (x - mean + half) * inv_std, (x - mean - half) * inv_std
    inner = _log_ndtr_difference(lower, upper)
    bottom, top = torch.special.log_ndtr(upper), torch.special.log_ndtr(-lower)
    return torch.where(x < -1 + half, bottom, torch.where(x > 1 - half, top, inner))


def decoder_log_prob(x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor, levels: int | None) -> torch.Tensor:
    """log p(x_0 | x_t1) per example: the discretized Gaussian for `levels`-level data, else the density."""
    if levels is None:
        lp = gaussian_log_prob(x.to(F64), mean.to(F64), logvar.to(F64))
    else:
        lp = discretized_gaussian_log_prob(x, mean, logvar, levels)
    return lp.flatten(1).sum(1)


def reverse_log_variance(
    process: Process, t: torch.Tensor, s: torch.Tensor, variance: str, fraction: torch.Tensor | None = None
) -> torch.Tensor:
    """log Sigma of p(x_s | x_t): beta-tilde, beta, or "learned", exp(v log beta + (1 - v) log beta-tilde)
    (Nichol & Dhariwal 2021, eq. 15) with v = `fraction`, the network's extra output. Per example (B,) or
    shaped like the fraction."""
    lo, hi = process.log_variance_range(t, s)
    if variance == "beta_tilde":
        return lo
    if variance == "beta":
        return hi
    if variance == "learned":
        if fraction is None:
            raise UserError("variance 'learned' needs a model with a learned variance (model.variance: learned)")
        fraction = fraction.to(F64)
        return fraction * expand_as(hi, fraction) + (1 - fraction) * expand_as(lo, fraction)
    raise UserError(f"unknown variance {variance!r}; expected one of {REVERSE_VARIANCES}")


def step_nll(
    process: Process,
    x0: torch.Tensor,
    x_t: torch.Tensor,
    t: torch.Tensor,
    s: torch.Tensor,
    x0_hat: torch.Tensor,
    logvar: torch.Tensor,
    levels: int | None,
) -> torch.Tensor:
    """One term of the bound per example, in nats: L = KL(q(x_s | x_t, x_0) || N(mu-tilde(x_t, x0_hat),
    e^logvar)) where s > 0, and the decoder's L_0 = -log p(x_0 | x_t) with mean x0_hat where s = 0.
    mu-tilde is linear in x_0, so the means differ by c_0 (x_0 - x0_hat) (Ho et al. 2020, eq. 5-7)."""
    t, s = t.to(F64), s.to(F64)
    _, c_0, var_q = process.posterior_coefficients(t, s)
    x0, x0_hat = x0.to(F64), x0_hat.to(F64)
    logvar = expand_as(logvar.to(F64), x0) if logvar.dim() <= 1 else logvar.to(F64)  # per example, or like x0
    logvar_q = expand_as(torch.log(torch.where(s > 0, var_q, 1.0)), x0)
    diff = expand_as(c_0, x0) * (x0 - x0_hat)
    kl = normal_kl(diff, logvar_q, torch.zeros_like(diff), logvar).flatten(1).sum(1)
    decoder = -decoder_log_prob(x0, x0_hat, logvar, levels)
    return torch.where((s > 0).to(kl.device), kl, decoder)


def prior_kl(process: Process, x0: torch.Tensor) -> torch.Tensor:
    """L_T = KL(q(x_1 | x_0) || N(0, prior_std^2 I)) per example, in nats (closed form)."""
    one = torch.ones(1, dtype=F64)
    mean = process.alpha(one).item() * x0.to(F64)
    logvar_q = torch.log(process.sigma(one) ** 2).item()
    logvar_p = 2 * math.log(process.prior_std)
    kl = normal_kl(mean, torch.full_like(mean, logvar_q), torch.zeros_like(mean), torch.full_like(mean, logvar_p))
    return kl.flatten(1).sum(1)


def model_step_nll(
    denoiser: Denoiser,
    x0: torch.Tensor,
    t: torch.Tensor,
    s: torch.Tensor,
    variance: str,
    levels: int | None,
    noise: torch.Tensor,
    model_kwargs: dict,
    mean_grad: bool = True,
    clip: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(the bound's term at t -> s per example in nats, the network's prediction), with x_t = alpha_t x_0 +
    sigma_t noise; t and s are (B,) times on the CPU. `mean_grad=False` stops the gradient through the
    mean (the hybrid loss: L_vlb then trains only the variance, Nichol & Dhariwal 2021, sec. 3.1);
    `clip=False` leaves x0_hat unclipped (training: a clamp would stop the gradient)."""
    process = denoiser.process
    t64, s64 = t.to(F64).cpu(), s.to(F64).cpu()
    alpha, sigma = expand_as(process.alpha(t64), x0), expand_as(process.sigma(t64), x0)
    x_t = process.q_sample(x0, t64, noise)
    out, fraction = denoiser.raw_and_variance(x_t, t64, **model_kwargs)
    mean_out = out if mean_grad else out.detach()
    x0_hat = to_x0_eps(mean_out, x_t, alpha, sigma, denoiser.prediction)[0]
    if clip and denoiser.clip is not None:
        x0_hat = x0_hat.clamp(*denoiser.clip)
    logvar = reverse_log_variance(process, t64, s64, variance, fraction)
    return step_nll(process, x0, x_t, t64, s64, x0_hat, logvar, levels), out


def check_bound_grid(
    process: Process, what: str | None = None, instead: str = "use the ODE likelihood (method 'ode')"
) -> None:
    """The bound needs the data at t = 0: alpha(0) = 1 and sigma(0) = 0 (VP and sub-VP, not VE, whose
    x_0 already holds noise of sigma_min: its "bound" is not one, and can be negative). A UserError
    naming `what` asked for it and what to do `instead`."""
    zero = torch.zeros(1, dtype=F64)
    sigma0, alpha0 = process.sigma(zero).item(), process.alpha(zero).item()
    if sigma0 != 0 or abs(alpha0 - 1) > 1e-12:
        raise UserError(
            f"{what + ': ' if what else ''}the variational bound needs a process with sigma(0) = 0 and alpha(0) = 1 "
            f"(VP or sub-VP), not {process.config()['type']} with sigma(0) = {sigma0:.4g}; {instead} for this one"
        )


@torch.no_grad()
def vlb(
    denoiser: Denoiser,
    x0: torch.Tensor,
    *,
    steps: int | None = None,
    spacing: str = "uniform",
    t_samples: int | None = None,
    variance: str | None = None,
    levels: int | None = None,
    generator: Generators = None,
    model_kwargs: dict | None = None,
    progress: bool = False,
) -> dict:
    """The variational bound per example, in nats: {"nll", "prior" (L_T), "decoder" (L_0), "terms"
    (B, steps) with every term L_0 ... L_{N-1} (all-t only), "nfe" (network evaluations per example)}.

    The grid is the process's own T steps, or `steps` of `spacing` (a respaced model: its reverse steps
    go between the grid times; a continuous process needs `steps`). All terms are evaluated (N network
    evaluations per example) unless `t_samples` = m, which estimates the sum by N times the mean of m
    terms drawn uniformly per example (unbiased; m evaluations)."""
    process = denoiser.process
    check_bound_grid(process)
    if steps is None and process.T is None:
        raise UserError("a continuous process has no grid of its own: give the bound's number of steps")
    variance = denoiser.reverse_variance(variance)
    times = time_grid(process, steps or process.T, spacing)
    n, kw = len(times) - 1, model_kwargs or {}
    nfe0 = denoiser.nfe

    def term(k: torch.Tensor) -> torch.Tensor:  # the terms at grid positions k (B,), fresh x_t
        t, s = times[k], times[k + 1]
        noise = randn(x0.shape, generator, device=x0.device, dtype=x0.dtype)
        return model_step_nll(denoiser, x0, t, s, variance, levels, noise, kw)[0]

    batch = x0.shape[0]
    result = {"prior": prior_kl(process, x0)}
    if t_samples is None:
        terms = torch.stack([term(torch.full((batch,), k)) for k in tqdm(range(n), leave=False, disable=not progress)])
        result["terms"] = terms.flip(0).T  # column j is L_j: the step onto t_j
        result["decoder"] = result["terms"][:, 0]
        result["nll"] = result["prior"] + terms.sum(0)
    else:
        if t_samples < 1:
            raise UserError(f"t_samples must be at least 1, got {t_samples}")
        total = 0.0
        for _ in tqdm(range(t_samples), leave=False, disable=not progress):
            k = (rand((batch,), generator, dtype=F64) * n).long().clamp(max=n - 1).cpu()
            total = total + term(k)
        result["nll"] = result["prior"] + n * total / t_samples
    result["nfe"] = denoiser.nfe - nfe0
    return result
