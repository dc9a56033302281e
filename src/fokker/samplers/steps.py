"""The loop shared by every sampler whose step is linear in the model's prediction:

    x_s = c_x0 x0_hat + c_eps eps_hat + std z,   z ~ N(0, I),

for one step from t to s < t. DDPM, DDIM, Euler-Maruyama, the reverse-diffusion and ancestral
predictors and the probability-flow Euler step are all of this form (x_t itself is alpha x0_hat +
sigma eps_hat). A method gives (c_x0, c_eps, std) for the whole grid at once, in float64; the
table is built before the loop, and each step folds into x_s = A x + B out + std z, out being the
network's raw output."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from tqdm.auto import tqdm

from fokker.denoiser import Denoiser, linear_coefficients
from fokker.processes import Process
from fokker.samplers.noise import Generators, randn

# (process, t, s) -> (c_x0, c_eps, std), each of shape (steps,), for the steps t[k] -> s[k]
Coefficients = Callable[[Process, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
# (k, step, x) -> x: work done at the start of step k, before the predictor (a corrector)
Hook = Callable[[int, "Step", torch.Tensor], torch.Tensor]


class Step(NamedTuple):
    """One step t -> s, coefficients as python floats."""

    t: float
    c: torch.Tensor  # the network's noise conditioning at t, shape (batch,)
    alpha_t: float
    sigma_t: float
    c_x0: float
    c_eps: float
    std: float
    A: float
    B: float
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
    With `learned_variance`, each step's noise has variance exp(v log beta + (1 - v) log beta-tilde), v the
    network's extra output (Nichol & Dhariwal 2021, eq. 15), and the table's std is ignored."""
    process = denoiser.process
    t, s = times[:-1], times[1:]
    c_x0, c_eps, std = (v.to(torch.float64) for v in coefficients(process, t, s))
    if denoise:
        last = s == 0
        c_x0, c_eps, std = c_x0.where(~last, 1.0), c_eps.where(~last, 0.0), std.where(~last, 0.0)
    alpha_t, sigma_t = process.alpha(t), process.sigma(t)
    a0, b0, a1, b1 = linear_coefficients(alpha_t, sigma_t, denoiser.prediction)
    A, B = c_x0 * a0 + c_eps * a1, c_x0 * b0 + c_eps * b1
    columns = (t, alpha_t, sigma_t, c_x0, c_eps, std, A, B)
    rows = zip(*(v.tolist() for v in columns), strict=True)
    steps = [Step(row[0], c, *row[1:]) for c, row in zip(conditionings(denoiser, t, x), rows, strict=True)]
    if learned_variance:
        lo, hi = (v.tolist() for v in process.log_variance_range(t, s))
        noisy = (s > 0).tolist() if denoise else [True] * len(steps)
        steps = [
            st._replace(log_var=(a, b) if keep else None) for st, a, b, keep in zip(steps, lo, hi, noisy, strict=True)
        ]
    return steps


@torch.no_grad()
def run_table(
    denoiser: Denoiser,
    x: torch.Tensor,
    steps: list[Step],
    generator: Generators,
    callback: Callable | None,
    model_kwargs: dict | None,
    progress: bool,
    before: Hook | None = None,
) -> tuple[torch.Tensor, dict]:
    """The loop. Without clipping or a callback, which need x0_hat itself, each step is two tensor
    operations on the network's output (plus the noise); otherwise x0_hat and eps_hat are formed.
    `before(k, step, x)` runs at the start of each step (the corrector of predictor-corrector sampling)."""
    nfe0, model_kwargs = denoiser.nfe, model_kwargs or {}
    folded = denoiser.clip is None and callback is None
    for k, step in enumerate(tqdm(steps, leave=False) if progress else steps):
        if before is not None:
            x = before(k, step, x)
        if folded:
            out, v = denoiser.raw_and_variance(x, None, step.c, **model_kwargs)
            x_next = torch.add(x * step.A, out, alpha=step.B)
        else:
            x0, eps, v = denoiser.predict_full(
                x, None, alpha=step.alpha_t, sigma=step.sigma_t, c=step.c, **model_kwargs
            )
            x_next = x0.mul(step.c_x0).add_(eps, alpha=step.c_eps)
        if step.log_var is not None:  # learned: std = exp((v log beta + (1 - v) log beta-tilde) / 2)
            lo, hi = step.log_var
            std = torch.exp(0.5 * (lo + (hi - lo) * v))
            x_next.add_(std * randn(x.shape, generator, device=x.device, dtype=x.dtype))
        elif step.std > 0:
            x_next.add_(randn(x.shape, generator, device=x.device, dtype=x.dtype), alpha=step.std)
        x = x_next
        if callback is not None:
            callback(k, x, x0)
    return x, {"nfe": denoiser.nfe - nfe0, "steps": len(steps)}
