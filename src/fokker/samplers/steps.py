"""The loop shared by every sampler whose step is linear in the model's prediction:

    x_s = c_x0 x0_hat + c_eps eps_hat + std z,   z ~ N(0, I),

for one step from t to s < t. DDPM, DDIM, Euler-Maruyama, the reverse-diffusion and ancestral
predictors and the probability-flow Euler step are all of this form (x_t itself is alpha x0_hat +
sigma eps_hat). A method gives (c_x0, c_eps, std) for the whole grid at once, in float64; the
table is built before the loop, and each step folds into x_s = fold_x x + fold_out out + std z, out
being the network's raw output (`fokker.denoiser.linear_coefficients`). Unfolded, the loop is

    for step in steps:
        x0, eps = denoiser.predict(x, step.t)
        x = step.c_x0 * x0 + step.c_eps * eps + step.std * randn(x.shape)
        if constraint is not None and step.s > 0:
            x = constraint(x, step.s)"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from tqdm.auto import tqdm

from fokker.denoiser import Denoiser, linear_coefficients
from fokker.noise import randn
from fokker.processes import Process
from fokker.samplers.registry import SamplerCall

# (process, t, s) -> (c_x0, c_eps, std), each of shape (steps,), for the steps t[k] -> s[k]
Coefficients = Callable[[Process, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
# (k, step, x) -> x: work done at the start of step k, before the predictor (a corrector)
Hook = Callable[[int, "Step", torch.Tensor], torch.Tensor]


class Step(NamedTuple):
    """One step t -> s, coefficients as python floats."""

    t: float
    s: float
    cond: torch.Tensor  # the network's noise conditioning at t, shape (batch,)
    alpha_t: float
    sigma_t: float
    c_x0: float  # x_s = c_x0 x0_hat + c_eps eps_hat + std z
    c_eps: float
    std: float
    fold_x: float  # the same step in the network's output: x_s = fold_x x_t + fold_out out + std z
    fold_out: float
    log_var: tuple[float, float] | None = None  # (log beta-tilde, log beta) when the variance is learned


def conditionings(denoiser: Denoiser, times: torch.Tensor, x: torch.Tensor) -> list[torch.Tensor]:
    """The network's noise input at each of `times`, expanded to x's batch, on x's device and dtype."""
    cond = denoiser.condition(times).to(device=x.device, dtype=x.dtype)
    return list(cond[:, None].expand(-1, x.shape[0]).unbind(0))


def step_table(
    denoiser: Denoiser,
    x: torch.Tensor,
    times: torch.Tensor,
    coefficients: Coefficients,
    denoise: bool = True,
    learned_variance: bool = False,
) -> list[Step]:
    """The steps between consecutive grid times. With `denoise`, a step that lands on t = 0 returns
    x0_hat with no noise (the final Tweedie denoising step); otherwise it is the method's own step.
    With `learned_variance`, each step's noise has variance exp(f log beta + (1 - f) log beta-tilde), f the
    network's variance fraction var_frac (Nichol & Dhariwal 2021, eq. 15), and the table's std is ignored."""
    process = denoiser.process
    t, s = times[:-1], times[1:]
    c_x0, c_eps, std = (c.to(torch.float64) for c in coefficients(process, t, s))
    if denoise:
        last = s == 0
        c_x0, c_eps, std = c_x0.where(~last, 1.0), c_eps.where(~last, 0.0), std.where(~last, 0.0)
    alpha_t, sigma_t = process.alpha(t), process.sigma(t)
    x0_x, x0_out, eps_x, eps_out = linear_coefficients(alpha_t, sigma_t, denoiser.prediction)
    fold_x, fold_out = c_x0 * x0_x + c_eps * eps_x, c_x0 * x0_out + c_eps * eps_out
    columns = (t, s, alpha_t, sigma_t, c_x0, c_eps, std, fold_x, fold_out)
    rows = zip(*(c.tolist() for c in columns), strict=True)
    steps = [Step(*row[:2], cond, *row[2:]) for cond, row in zip(conditionings(denoiser, t, x), rows, strict=True)]
    if learned_variance:
        lo, hi = (c.tolist() for c in process.log_variance_range(t, s))
        noisy = (s > 0).tolist() if denoise else [True] * len(steps)
        steps = [
            st._replace(log_var=(a, b) if keep else None) for st, a, b, keep in zip(steps, lo, hi, noisy, strict=True)
        ]
    return steps


def _noise_std(step: Step, var_frac: torch.Tensor | None) -> torch.Tensor | float:
    """The std of the step's noise: the table's, or for a learned variance exp((f log beta + (1 - f) log
    beta-tilde) / 2) with f = var_frac (Nichol & Dhariwal 2021, eq. 15)."""
    if step.log_var is None:
        return step.std
    lo, hi = step.log_var
    return torch.exp(0.5 * (lo + (hi - lo) * var_frac))


def _add_noise(
    denoiser: Denoiser,
    x_next: torch.Tensor,
    x: torch.Tensor,
    step: Step,
    var_frac: torch.Tensor | None,
    call: SamplerCall,
) -> torch.Tensor:
    """x_next, the step's mean, plus the step's noise std z (z of x's shape, device and dtype); for a guide
    that shifts the mean of Gaussian steps (Dhariwal & Nichol 2021, Algorithm 1), its shift first."""
    std = _noise_std(step, var_frac)
    if isinstance(std, float) and std == 0:
        return x_next
    if denoiser.shifts_mean:
        x_next.add_(denoiser.mean_shift(x, step.t, std * std, **call.model_kwargs))
    z = randn(x.shape, call.generator, device=x.device, dtype=x.dtype)
    return x_next.add_(z, alpha=std) if isinstance(std, float) else x_next.add_(std * z)


@torch.no_grad()
def run_table(
    denoiser: Denoiser, x: torch.Tensor, steps: list[Step], call: SamplerCall, before: Hook | None = None
) -> tuple[torch.Tensor, dict]:
    """The loop (the module docstring's). Without clipping or a callback, which need x0_hat itself, each step
    is two tensor operations on the network's output (plus the noise); otherwise x0_hat and eps_hat are
    formed. `before(k, step, x)` runs at the start of each step (the corrector of predictor-corrector
    sampling); call.constraint(x, s) at the end of each step onto s > 0. Returns (x, {"nfe", "steps"})."""
    nfe0 = denoiser.nfe
    folded = denoiser.clip is None and call.callback is None
    for k, step in enumerate(tqdm(steps, leave=False) if call.progress else steps):
        if before is not None:
            x = before(k, step, x)
        if folded:
            out, var_frac = denoiser.raw_and_variance(x, step.t, step.cond, **call.model_kwargs)
            x_next = torch.add(x * step.fold_x, out, alpha=step.fold_out)
        else:
            x0, eps, var_frac = denoiser.predict_full(
                x, step.t, alpha=step.alpha_t, sigma=step.sigma_t, cond=step.cond, **call.model_kwargs
            )
            x_next = x0.mul(step.c_x0).add_(eps, alpha=step.c_eps)
        x = _add_noise(denoiser, x_next, x, step, var_frac, call)
        if call.constraint is not None and step.s > 0:
            x = call.constraint(x, step.s)
        if call.callback is not None:
            call.callback(k, x, x0)
    return x, {"nfe": denoiser.nfe - nfe0, "steps": len(steps)}
