"""The probability-flow ODE (Song et al. 2021, eq. 13), whose marginals are those of the reverse SDE:

    dx/dt = f(x, t) - g(t)^2 / 2 grad log p_t(x) = dlog(alpha)/dt x + g(t)^2 / (2 sigma(t)) eps_hat,

solved from t = 1 down the grid by fixed-step Euler or Heun, or adaptively by torchdiffeq's dopri5."""

from __future__ import annotations

from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from fokker.denoiser import Denoiser
from fokker.errors import UserError
from fokker.processes import Process
from fokker.samplers.noise import Generators
from fokker.samplers.registry import register, when
from fokker.samplers.steps import conditionings, run_table, step_table

METHODS = ("euler", "heun", "dopri5")


def euler_coefficients(process: Process, t: torch.Tensor, s: torch.Tensor):
    """x_s = x - dt (f - g^2 / 2 score), dt = t - s, in terms of (x0, eps) with x = alpha_t x0 + sigma_t eps."""
    dt, g2 = t - s, process.diffusion(t) ** 2
    keep = 1 - process.d_log_alpha(t) * dt
    sigma_t = process.sigma(t)
    return keep * process.alpha(t), keep * sigma_t - 0.5 * g2 * dt / sigma_t, torch.zeros_like(t)


def ode_coefficients(process: Process, t: torch.Tensor) -> list[tuple[float, float, float, float]]:
    """(alpha, sigma, dlog(alpha)/dt, g^2 / (2 sigma)) at each of the times t (float64, 1-D)."""
    sigma = process.sigma(t)
    columns = (process.alpha(t), sigma, process.d_log_alpha(t), process.diffusion(t) ** 2 / (2 * sigma))
    return list(zip(*(v.tolist() for v in columns), strict=True))


class Drift:
    """The ODE's right-hand side, callable as torchdiffeq calls it, counting accepted and rejected adaptive
    steps through torchdiffeq's callbacks. `t`, `x` and `x0` are the time, state and x0_hat of the latest
    evaluation: after an accepted dopri5 step, those of the step's end (its last stage, first-same-as-last).
    `on_accept(drift, dt)`, if given, runs after each accepted step of size dt."""

    def __init__(self, denoiser: Denoiser, model_kwargs: dict, on_accept: Callable | None = None):
        self.denoiser, self.model_kwargs, self.on_accept = denoiser, model_kwargs, on_accept
        self.accepted = self.rejected = 0
        self.t: float | None = None
        self.x: torch.Tensor | None = None
        self.x0: torch.Tensor | None = None

    def evaluate(self, x: torch.Tensor, t, coefficients: tuple, c: torch.Tensor | None = None) -> torch.Tensor:
        """dlog(alpha)/dt x + g^2 / (2 sigma) eps_hat, the coefficients at t given."""
        alpha, sigma, d_log_alpha, h = coefficients
        self.x0, eps = self.denoiser.predict(x, t, alpha=alpha, sigma=sigma, c=c, **self.model_kwargs)
        return x * d_log_alpha + h * eps

    def __call__(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        t = t.detach().to(torch.float64)
        self.t, self.x = t.item(), x
        return self.evaluate(x, t, ode_coefficients(self.denoiser.process, t.reshape(1))[0])

    def callback_accept_step(self, t0, y0, dt) -> None:
        self.accepted += 1
        if self.on_accept is not None:
            self.on_accept(self, abs(float(dt)))

    def callback_reject_step(self, t0, y0, dt) -> None:
        self.rejected += 1


def smallest_time(process: Process) -> float:
    """The earliest time the model is trained at, where an adaptive solve toward t = 0 stops: the first
    grid time 1 / T of a discrete process (sigma(1 / T), the lowest level of a VE ladder), else the
    process's t_min. Below it the network was never trained (and for VP, sigma(0) = 0 makes the drift
    singular)."""
    return 1.0 / process.T if process.T is not None else process.t_min


def solve(func: Callable, y0, t0: float, t1: float, rtol: float, atol: float):
    """y(t1) from y(t0) = y0 by torchdiffeq's adaptive dopri5 (either direction; y0 a tensor or a tuple of
    them). The last step lands on t1 exactly: otherwise torchdiffeq steps past it and evaluates func
    beyond the interval (at t < 0, where sigma is undefined)."""
    from torchdiffeq import odeint

    span = torch.tensor([t0, t1], dtype=torch.float64)
    y = odeint(func, y0, span, rtol=rtol, atol=atol, method="dopri5", options={"step_t": span[1:]})
    return tuple(v[-1] for v in y) if isinstance(y, tuple) else y[-1]


@torch.no_grad()
def heun(
    denoiser: Denoiser,
    x: torch.Tensor,
    times: torch.Tensor,
    denoise: bool,
    callback: Callable | None,
    model_kwargs: dict,
    progress: bool,
) -> tuple[torch.Tensor, dict]:
    """Heun's method (Karras et al. 2022, Alg. 1) on the grid: an Euler step to s, then the average of
    the drifts at t and s. A step onto a time with sigma = 0 is an Euler step; with `denoise`, the step
    onto t = 0 returns x0_hat."""
    drift, nfe0 = Drift(denoiser, model_kwargs), denoiser.nfe
    conds, coefs = conditionings(denoiser, times, x), ode_coefficients(denoiser.process, times)
    dts, lands_on_zero = (times[1:] - times[:-1]).tolist(), (times[1:] == 0).tolist()
    for k in tqdm(range(len(dts)), leave=False, disable=not progress):
        d1 = drift.evaluate(x, None, coefs[k], conds[k])
        x0 = drift.x0
        if denoise and lands_on_zero[k]:
            x = x0
        elif coefs[k + 1][1] == 0:
            x = x + dts[k] * d1
        else:
            x = x + dts[k] / 2 * (d1 + drift.evaluate(x + dts[k] * d1, None, coefs[k + 1], conds[k + 1]))
        if callback is not None:
            callback(k, x, x0)
    return x, {"nfe": denoiser.nfe - nfe0, "steps": len(dts)}


@torch.no_grad()
def dopri5(
    denoiser: Denoiser,
    x: torch.Tensor,
    times: torch.Tensor,
    rtol: float,
    atol: float,
    denoise: bool,
    callback: Callable | None,
    model_kwargs: dict,
    progress: bool,
) -> tuple[torch.Tensor, dict]:
    """Adaptive Dormand-Prince 5(4) from times[0] to times[-1] (only the ends of the grid are used), the
    end raised to `smallest_time` (the lowest trained time), from which `denoise` takes x0_hat when the
    grid ends at t = 0. callback(k, x, x0_hat) runs after each accepted step k with the state at the step's
    end; the progress bar shows the time travelled. info["times"]: the times of the accepted steps."""
    start, end = float(times[0]), max(float(times[-1]), smallest_time(denoiser.process))
    visited, bar = [start], tqdm(total=abs(start - end), leave=False, disable=not progress, desc="t", unit="")

    def on_accept(drift: Drift, dt: float) -> None:
        visited.append(drift.t)
        bar.update(dt)
        if callback is not None:
            callback(drift.accepted - 1, drift.x, drift.x0)

    drift, nfe0 = Drift(denoiser, model_kwargs, on_accept), denoiser.nfe
    x = solve(drift, x, start, end, rtol, atol)
    bar.close()
    if denoise and times[-1] == 0:
        x = denoiser.x0(x, end, **model_kwargs)
        visited.append(0.0)
    info = {"nfe": denoiser.nfe - nfe0, "steps": drift.accepted, "accepted": drift.accepted}
    return x, {**info, "rejected": drift.rejected, "t_end": end, "times": torch.tensor(visited, dtype=torch.float64)}


# rtol / atol are dopri5's; the grid (steps, spacing) is used by the fixed-step methods only
ADAPTIVE = when("method", "dopri5")
FIXED = when("method", "euler", "heun")
ODE_RULES = {"rtol": ADAPTIVE, "atol": ADAPTIVE, "steps": FIXED, "spacing": FIXED}


@register("ode", only_when=ODE_RULES)
def ode(
    denoiser: Denoiser,
    x: torch.Tensor,
    times: torch.Tensor,
    *,
    method: str = "heun",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    denoise: bool = True,
    generator: Generators = None,
    callback: Callable | None = None,
    model_kwargs: dict | None = None,
    progress: bool = False,
) -> tuple[torch.Tensor, dict]:
    """The probability-flow ODE (Song et al. 2021, eq. 13) by "euler" or "heun" on the grid (NFE = steps,
    about 2 steps for Heun) or by "dopri5" to rtol / atol (only rtol / atol apply to it; it picks its own
    steps between the grid's ends, and info has its accepted and rejected steps and their times). With
    `denoise`, the end at t = 0 is Tweedie's x0_hat from the last time before it. Deterministic: the same x
    gives the same samples (dopri5: up to its tolerance, since its step sizes depend on the whole batch).
    The ODE has no noise to draw, so a model with a learned variance runs on its mean prediction."""
    if method not in METHODS:
        raise UserError(f"unknown ODE method {method!r}; expected one of {METHODS}")
    if rtol <= 0 or atol <= 0:
        raise UserError(f"rtol and atol must be positive, got {rtol} and {atol}")
    model_kwargs = model_kwargs or {}
    if method == "euler":
        steps = step_table(denoiser, x, times, euler_coefficients, denoise)
        return run_table(denoiser, x, steps, generator, callback, model_kwargs, progress)
    if method == "heun":
        return heun(denoiser, x, times, denoise, callback, model_kwargs, progress)
    return dopri5(denoiser, x, times, rtol, atol, denoise, callback, model_kwargs, progress)
