"""A time grid optimized for one deterministic sampler and one number of steps, on a Gaussian fitted to the data.

For data x_0 ~ N(mu, S) the exact denoiser is linear in x_t (`fokker.targets.GaussianTarget.posterior_mean`), and
in the eigenbasis of S it acts on each coordinate alone. Every deterministic sampler of fokker combines the state
and the denoiser's outputs with scalar coefficients, so run on that exact denoiser it is an affine map
x_T -> A x_T + b, coordinate by coordinate. With x_T ~ N(0, s^2 I) (s the prior's std) its output is
N(b, s^2 A^2) per coordinate and the KL to the data Gaussian has a closed form,

    KL = sum_i [v_i / l_i + (b_i - m_i)^2 / l_i - 1 - log(v_i / l_i)] / 2,   v_i = s^2 A_i^2,

with l_i the eigenvalues of S and m the mean in its eigenbasis. A and b are read off by running the real sampler
on two starts (x_T = 0 and x_T = 1, in float64), so the objective is the sampler's own discretization error for
that Gaussian, exact to rounding. `optimize_grid` minimises it over the interior times of the grid, parametrized
as softmax increments of log-SNR between the grid's fixed ends (scipy's L-BFGS-B, finite-difference gradients),
started from the log_snr grid, and never returns a grid worse than that.

Compared with Align Your Steps (Sabour et al. 2024): AYS also fits a grid to the data through an analytic model
of it, but minimises an upper bound on the KL between the discretized and the exact reverse SDE (by Girsanov's
theorem), which suits stochastic samplers and is then transferred to the solvers it is used with. Here the
quantity minimised is the exact KL of the output of the deterministic sampler actually used (its own steps,
order, corrector), for the Gaussian fitted to the run's training data; stochastic samplers are refused, since
their output is not an affine map of x_T. Both are only as good as the Gaussian model of the data: the grid is
optimal for the data's first two moments, not for its finer structure, nor for a network's errors, nor for
a clip of x0_hat (which makes the sampler non-linear and is left out here)."""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from scipy.optimize import minimize

from fokker.denoiser import Denoiser
from fokker.errors import UserError
from fokker.grids import first_evaluation_time, time_grid, times_at_log_snr
from fokker.processes import Process
from fokker.samplers.registry import check_options, get_sampler, uses_grid
from fokker.schedules import F64

MAX_EXAMPLES = 5000
MIN_VAR = 1e-4  # the smallest eigenvalue kept: a std of 0.01 in data units ([-1, 1]), ~1.3 grey levels of 255


def fit_gaussian(
    data: torch.Tensor, max_examples: int = MAX_EXAMPLES, min_var: float = MIN_VAR
) -> tuple[torch.Tensor, torch.Tensor]:
    """The Gaussian N(mu, S) fitted to `data` (examples along dim 0, any shape after it; the first `max_examples`
    of a fixed permutation), in the eigenbasis of S: (mean, eigvals), float64 of length d, the mean being U' mu
    for S = U diag(eigvals) U'. Eigenvalues below `min_var` are raised to it: a constant pixel (an MNIST border)
    has variance 0, for which no sampler's KL is finite."""
    x = data.reshape(len(data), -1).to(F64)
    if len(x) < 2:
        raise UserError(f"fitting a Gaussian needs at least 2 examples, got {len(x)}")
    if len(x) > max_examples:
        x = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:max_examples]]
    mu = x.mean(0)
    cov = torch.cov(x.T).reshape(x.shape[1], x.shape[1])
    eigvals, basis = torch.linalg.eigh(cov)
    return basis.T @ mu, eigvals.clamp(min=min_var)


def diagonal_denoiser(process: Process, mean: torch.Tensor, eigvals: torch.Tensor) -> Denoiser:
    """The exact Denoiser of N(mean, diag(eigvals)) on `process`: eps = sigma (x - alpha mean) / (alpha^2 l + sigma^2),
    linear in x on each coordinate (float64)."""
    mean, eigvals = mean.to(F64), eigvals.to(F64)

    def eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=F64).reshape(-1, 1)
        alpha, sigma = process.alpha(t), process.sigma(t)
        return sigma * (x - alpha * mean) / (alpha**2 * eigvals + sigma**2)

    return Denoiser(eps, process, prediction="eps")


def _run(denoiser: Denoiser, sampler: str, x_T: torch.Tensor, times: torch.Tensor, seed: int, options: dict):
    x, _ = get_sampler(sampler)(denoiser, x_T, times, generator=torch.Generator().manual_seed(seed), **options)
    return x


def affine_map(
    process: Process, mean: torch.Tensor, eigvals: torch.Tensor, sampler: str, times: torch.Tensor, **options
) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, b) with sampler(x_T) = A x_T + b per coordinate on the exact denoiser of N(mean, diag(eigvals)), read off
    from the starts x_T = 0 and x_T = 1 (one float64 batch of two) on the grid `times`."""
    x_T = torch.stack([torch.zeros(len(mean), dtype=F64), torch.ones(len(mean), dtype=F64)])
    x = _run(diagonal_denoiser(process, mean, eigvals), sampler, x_T, times, 0, options)
    return x[1] - x[0], x[0]


def gaussian_kl_diagonal(mean1: torch.Tensor, var1: torch.Tensor, mean2: torch.Tensor, var2: torch.Tensor) -> float:
    """KL(N(mean1, diag var1) || N(mean2, diag var2)), summed over the coordinates (inf where var1 = 0)."""
    r = var1 / var2
    value = (r + (mean1 - mean2) ** 2 / var2 - 1 - torch.log(r)).sum() / 2
    return float(value) if torch.isfinite(value) else math.inf


def grid_kl(
    process: Process, mean: torch.Tensor, eigvals: torch.Tensor, sampler: str, times: torch.Tensor, **options
) -> float:
    """The closed-form KL from the output of `sampler` on the grid `times` (from x_T ~ the process's prior) to
    N(mean, diag(eigvals)), the sampler running on that Gaussian's exact denoiser (the module docstring)."""
    A, b = affine_map(process, mean, eigvals, sampler, times, **options)
    return gaussian_kl_diagonal(b, (process.prior_std * A) ** 2, mean.to(F64), eigvals.to(F64))


def check_affine(
    process: Process, mean: torch.Tensor, eigvals: torch.Tensor, sampler: str, times: torch.Tensor, options: dict
) -> None:
    """A UserError unless `sampler` with `options` is deterministic and affine in x_T on this exact denoiser: run on
    starts 0, 1 and a random one with two different seeds, the outputs must agree and fit A x_T + b."""
    d = len(mean)
    x_T = torch.stack([torch.zeros(d, dtype=F64), torch.ones(d, dtype=F64), torch.linspace(-2, 2, d, dtype=F64)])
    denoiser = diagonal_denoiser(process, mean, eigvals)
    one, two = (_run(denoiser, sampler, x_T, times, seed, options) for seed in (1, 2))
    shown = f" with {options}" if options else ""
    if not torch.equal(one, two):
        raise UserError(
            f"sampler {sampler!r}{shown} draws noise: an optimized grid is for deterministic samplers (ddim with "
            "eta 0, ode euler / heun, dpmpp_2m, dpmpp_3m, dpmpp_2s, unipc, deis, edm_heun, edm without churn)"
        )
    A, b = one[1] - one[0], one[0]
    if not torch.allclose(one[2], A * x_T[2] + b, rtol=1e-8, atol=1e-8 * float(one.abs().max())):
        raise UserError(f"sampler {sampler!r}{shown} is not affine in x_T; no closed-form grid for it")


def _times_of(process: Process, z: np.ndarray, lam_lo: float, lam_hi: float, t_lo: float) -> torch.Tensor:
    """The grid [1, t_1, ..., t_N-1, 0] whose log-SNRs lam(1) + (lam(t_lo) - lam(1)) cumsum(softmax(z))[:N-1] rise
    from lam(1) to at most lam(t_lo) (the last increment is the slack between t_N-1 and t_lo)."""
    w = np.exp(z - z.max())
    lam = lam_lo + (lam_hi - lam_lo) * np.cumsum(w / w.sum())[:-1]
    inner = times_at_log_snr(process, torch.tensor(lam, dtype=F64), t_lo)
    return torch.cat([torch.ones(1, dtype=F64), inner, torch.zeros(1, dtype=F64)])


def _on_grid(process: Process, times: torch.Tensor) -> torch.Tensor:
    """A discrete process's grid times i / T nearest to `times`, strictly decreasing, keeping 1 and 0."""
    T = process.T
    idx = torch.round(times * T).long().tolist()
    idx[0], idx[-1] = T, 0
    for k in range(len(idx) - 2, 0, -1):  # every positive time at least 1 / T and above the next one
        idx[k] = max(idx[k], idx[k + 1] + 1)
    for k in range(1, len(idx) - 1):
        idx[k] = min(idx[k], idx[k - 1] - 1)
    return torch.tensor(idx, dtype=F64) / T


def _integer_search(objective, process: Process, times: torch.Tensor, best: float) -> tuple[torch.Tensor, float]:
    """Coordinate descent on the grid indices of a discrete process's interior times: move one by +-1 while that
    lowers the objective."""
    idx = torch.round(times * process.T).long()
    for _ in range(20):
        improved = False
        for k in range(1, len(idx) - 1):
            for step in (-1, 1):
                trial = idx.clone()
                trial[k] += step
                if not (trial[k - 1] > trial[k] > trial[k + 1]):
                    continue
                value = objective(trial.to(F64) / process.T)
                if value < best:
                    idx, best, improved = trial, value, True
        if not improved:
            break
    return idx.to(F64) / process.T, best


def _checked(sampler: str, options: dict, mean, eigvals) -> tuple[torch.Tensor, torch.Tensor]:
    """optimize_grid's inputs checked: a sampler on a grid, and a Gaussian's mean and positive eigenvalues."""
    check_options(sampler, options)
    if not uses_grid(sampler, options):
        raise UserError(f"sampler {sampler!r} with {options} picks its own steps; it has no time grid to optimize")
    mean, eigvals = torch.as_tensor(mean, dtype=F64).reshape(-1), torch.as_tensor(eigvals, dtype=F64).reshape(-1)
    if mean.shape != eigvals.shape or not bool((eigvals > 0).all()):
        raise UserError("mean and eigvals must have the same length and every eigenvalue must be positive")
    return mean, eigvals


def optimize_grid(
    process: Process,
    mean: torch.Tensor,
    eigvals: torch.Tensor,
    sampler: str,
    steps: int,
    *,
    maxiter: int = 200,
    **options,
) -> tuple[torch.Tensor, dict]:
    """The grid of `steps` steps (descending float64 times from 1 to 0, as `time_grid` gives) that minimises the
    closed-form KL of `sampler` (with its `options`) on N(mean, diag(eigvals)) (`fit_gaussian`: the mean in the
    covariance's eigenbasis and its eigenvalues), the module docstring's method. The times between the fixed ends
    1 and 0 are optimized; the last one before 0 stays at or above the process's first evaluation time, and on a
    discrete process every time is a grid time i / T (the continuous optimum rounded, then refined index by index).
    Returns (times, info): info has "kl" (the optimized grid's KL), "kl_log_snr" (the log_snr grid's, where the
    search starts; kl <= kl_log_snr), "evaluations" (sampler runs) and "seconds". Stochastic, non-affine or
    adaptive samplers are refused (UserError)."""
    start = time.perf_counter()
    mean, eigvals = _checked(sampler, options, mean, eigvals)
    initial = time_grid(process, steps, "log_snr")
    check_affine(process, mean, eigvals, sampler, initial, options)
    evaluations = 0

    def objective(times: torch.Tensor) -> float:
        nonlocal evaluations
        evaluations += 1
        try:
            value = grid_kl(process, mean, eigvals, sampler, times, **options)
        except (ValueError, RuntimeError, ZeroDivisionError):  # a degenerate grid (two times too close)
            return math.inf
        return value if math.isfinite(value) else math.inf

    before = objective(initial)
    best_times, best = initial, before
    if steps >= 2:
        t_lo = first_evaluation_time(process)
        lam_lo, lam_hi = process.log_snr(torch.tensor([1.0, t_lo], dtype=F64)).tolist()
        # the log_snr grid: N - 1 equal increments up to lam(t_lo), and a near-zero slack
        w0 = np.array([1.0] * (steps - 1) + [1e-6])
        z0 = np.log(w0 / w0.sum())
        cap = 1e3 * (before if math.isfinite(before) else 1.0)

        def fz(z: np.ndarray) -> float:
            return min(objective(_times_of(process, z, lam_lo, lam_hi, t_lo)), cap)

        result = minimize(fz, z0, method="L-BFGS-B", options={"maxiter": maxiter, "eps": 1e-7})
        times = _times_of(process, result.x, lam_lo, lam_hi, t_lo)
        if process.T is not None:
            times = _on_grid(process, times)
        value = objective(times)
        if process.T is not None:
            times, value = _integer_search(objective, process, times, value)
        if value < best:
            best_times, best = times, value
    info = {"kl": best, "kl_log_snr": before, "evaluations": evaluations, "seconds": time.perf_counter() - start}
    return best_times, info
