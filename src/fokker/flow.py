"""The reverse-time drift and the probability-flow ODE, shared by the samplers and the analysis
(likelihood, latents).

The reverse SDE and the probability-flow ODE of dx = f(x, t) dt + g(t) dw (Song et al. 2021, eq. 6 and 13)
have one drift, with w = 1 (SDE) or 1/2 (ODE):

    f(x, t) - w g(t)^2 grad log p_t(x) = dlog(alpha)/dt x + w g(t)^2 / sigma(t) eps_hat,

since grad log p_t = -eps_hat / sigma (Tweedie). `reverse_drift` gives its two coefficients; the ODE's
right-hand side (`Drift`) and every Euler step on it are built from them."""

from __future__ import annotations

from collections.abc import Callable

import torch

from fokker.denoiser import Denoiser
from fokker.processes import Process


def reverse_drift(
    process: Process, t: torch.Tensor, ode: bool = False, dt: torch.Tensor | float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(dlog(alpha)/dt, w g^2 / sigma) at t, times dt: the reverse drift is d x + h eps_hat, score_sde's
    `drift - diffusion**2 * score * (0.5 if probability_flow else 1.)` (Song et al. 2021, eq. 6 and 13)."""
    weight = 0.5 if ode else 1.0
    return process.d_log_alpha(t) * dt, weight * process.diffusion(t) ** 2 * dt / process.sigma(t)


def reverse_euler(
    process: Process, t: torch.Tensor, s: torch.Tensor, ode: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(c_x0, c_eps, std) of one Euler(-Maruyama) step t -> s < t on the reverse SDE (ode=False; Song et al.
    2021, eq. 6) or the probability-flow ODE (ode=True; eq. 13): x_s = x - (t - s) drift + g sqrt(t - s) z
    (no noise on the ODE), as x_s = c_x0 x0_hat + c_eps eps_hat + std z with x = alpha_t x0_hat + sigma_t eps_hat."""
    dt = t - s
    d_dt, h_dt = reverse_drift(process, t, ode, dt)
    keep = 1 - d_dt
    std = torch.zeros_like(t) if ode else (process.diffusion(t) ** 2 * dt).sqrt()
    return keep * process.alpha(t), keep * process.sigma(t) - h_dt, std


def ode_coefficients(process: Process, t: torch.Tensor) -> list[tuple[float, float, float, float]]:
    """(alpha, sigma, dlog(alpha)/dt, g^2 / (2 sigma)) at each of the times t (float64, 1-D): what `Drift`
    needs at a time, the last two the probability-flow drift's (`reverse_drift` with ode=True)."""
    columns = (process.alpha(t), process.sigma(t), *reverse_drift(process, t, ode=True))
    return list(zip(*(v.tolist() for v in columns), strict=True))


class Drift:
    """The probability-flow ODE's right-hand side, callable as torchdiffeq calls it, counting accepted and
    rejected adaptive steps through torchdiffeq's callbacks. `t`, `x` and `x0` are the time, state and x0_hat
    of the latest evaluation: after an accepted dopri5 step, those of the step's end (its last stage,
    first-same-as-last). `on_accept(drift, dt)`, if given, runs after each accepted step of size dt."""

    def __init__(self, denoiser: Denoiser, model_kwargs: dict, on_accept: Callable | None = None):
        self.denoiser, self.model_kwargs, self.on_accept = denoiser, model_kwargs, on_accept
        self.accepted = self.rejected = 0
        self.t: float | None = None
        self.x: torch.Tensor | None = None
        self.x0: torch.Tensor | None = None

    def evaluate(self, x: torch.Tensor, t, coefficients: tuple, cond: torch.Tensor | None = None) -> torch.Tensor:
        """dlog(alpha)/dt x + g^2 / (2 sigma) eps_hat, the `ode_coefficients` at t given."""
        alpha, sigma, d_log_alpha, h = coefficients
        self.x0, eps = self.denoiser.predict(x, t, alpha=alpha, sigma=sigma, cond=cond, **self.model_kwargs)
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


def solve(func: Callable, y0, t0: float, t1: float, rtol: float, atol: float):
    """y(t1) from y(t0) = y0 by torchdiffeq's adaptive dopri5 (Dormand & Prince 1980; either direction; y0 a
    tensor or a tuple of them). The last step lands on t1 exactly: otherwise torchdiffeq steps past it and
    evaluates func beyond the interval (at t < 0, where sigma is undefined)."""
    from torchdiffeq import odeint

    span = torch.tensor([t0, t1], dtype=torch.float64)
    y = odeint(func, y0, span, rtol=rtol, atol=atol, method="dopri5", options={"step_t": span[1:]})
    return tuple(v[-1] for v in y) if isinstance(y, tuple) else y[-1]
