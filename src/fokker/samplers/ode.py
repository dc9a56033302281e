"""Samplers of the probability-flow ODE (Song et al. 2021, eq. 13), whose marginals are those of the reverse SDE:

    dx/dt = f(x, t) - g(t)^2 / 2 grad log p_t(x) = dlog(alpha)/dt x + g(t)^2 / (2 sigma(t)) eps_hat,

solved from t = 1 down the grid by fixed-step Euler or Heun, or adaptively by torchdiffeq's dopri5. The drift
and the solver are fokker.flow's, shared with the likelihood and the latents."""

from __future__ import annotations

from functools import partial

import torch
from tqdm.auto import tqdm

from fokker.denoiser import Denoiser
from fokker.errors import UserError
from fokker.flow import Drift, ode_coefficients, reverse_euler, solve
from fokker.samplers.registry import SamplerCall, register, when
from fokker.samplers.steps import conditionings, run_table, step_table

METHODS = ("euler", "heun", "dopri5")
euler_coefficients = partial(reverse_euler, ode=True)  # x_s = x - (t - s) (f - g^2 / 2 score)


def euler(
    denoiser: Denoiser, x: torch.Tensor, times: torch.Tensor, denoise: bool, call: SamplerCall
) -> tuple[torch.Tensor, dict]:
    """Euler's method on the grid, folded into the step table:

    for t, s in zip(times[:-1], times[1:]):
        x = x + (s - t) drift(x, t)   # x0_hat at s = 0 with `denoise`"""
    return run_table(denoiser, x, step_table(denoiser, x, times, euler_coefficients, denoise), call)


@torch.no_grad()
def heun(
    denoiser: Denoiser, x: torch.Tensor, times: torch.Tensor, denoise: bool, call: SamplerCall
) -> tuple[torch.Tensor, dict]:
    """Heun's method (Karras et al. 2022, Alg. 1) on the grid. A step onto a time with sigma = 0 is an Euler
    step; with `denoise`, the step onto t = 0 returns x0_hat. call.constraint acts after each whole step:

    for t, s in zip(times[:-1], times[1:]):
        d = drift(x, t)
        x = x + (s - t) (d + drift(x + (s - t) d, s)) / 2"""
    drift, nfe0 = Drift(denoiser, call.model_kwargs), denoiser.nfe
    conds, coefs = conditionings(denoiser, times, x), ode_coefficients(denoiser.process, times)
    ts, dts, lands_on_zero = times.tolist(), (times[1:] - times[:-1]).tolist(), (times[1:] == 0).tolist()
    for k in tqdm(range(len(dts)), leave=False, disable=not call.progress):
        d1 = drift.evaluate(x, ts[k], coefs[k], conds[k])
        x0 = drift.x0
        if denoise and lands_on_zero[k]:
            x = x0
        elif coefs[k + 1][1] == 0:
            x = x + dts[k] * d1
        else:
            x = x + dts[k] / 2 * (d1 + drift.evaluate(x + dts[k] * d1, ts[k + 1], coefs[k + 1], conds[k + 1]))
        if call.constraint is not None and not lands_on_zero[k]:
            x = call.constraint(x, ts[k + 1])
        if call.callback is not None:
            call.callback(k, x, x0)
    return x, {"nfe": denoiser.nfe - nfe0, "steps": len(dts)}


@torch.no_grad()
def dopri5(
    denoiser: Denoiser, x: torch.Tensor, times: torch.Tensor, denoise: bool, call: SamplerCall, rtol: float, atol: float
) -> tuple[torch.Tensor, dict]:
    """Adaptive Dormand-Prince 5(4) from times[0] to times[-1] (only the ends of the grid are used), the
    end raised to the process's `first_time` (the lowest trained time), from which `denoise` takes x0_hat
    when the grid ends at t = 0. callback(k, x, x0_hat) runs after each accepted step k with the state at the
    step's end; the progress bar shows the time travelled. info["times"]: the times of the accepted steps."""
    start, end = float(times[0]), max(float(times[-1]), denoiser.process.first_time)
    visited, bar = [start], tqdm(total=abs(start - end), leave=False, disable=not call.progress, desc="t", unit="")

    def on_accept(drift: Drift, dt: float) -> None:
        visited.append(drift.t)
        bar.update(dt)
        if call.callback is not None:
            call.callback(drift.accepted - 1, drift.x, drift.x0)

    drift, nfe0 = Drift(denoiser, call.model_kwargs, on_accept), denoiser.nfe
    x = solve(drift, x, start, end, rtol, atol)
    bar.close()
    if denoise and times[-1] == 0:
        x = denoiser.x0(x, end, **call.model_kwargs)
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
    call: SamplerCall,
    *,
    method: str = "heun",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    denoise: bool = True,
) -> tuple[torch.Tensor, dict]:
    """The probability-flow ODE (Song et al. 2021, eq. 13) by "euler" or "heun" on the grid (NFE = steps,
    about 2 steps for Heun) or by "dopri5" to rtol / atol (only rtol / atol apply to it; it picks its own
    steps between the grid's ends, and info has its accepted and rejected steps and their times). With
    `denoise`, the end at t = 0 is Tweedie's x0_hat from the last time before it. Deterministic: the same x
    gives the same samples (dopri5: up to its tolerance, since its step sizes depend on the whole batch).
    The ODE has no noise to draw, so a model with a learned variance runs on its mean prediction. A constraint
    (SamplerCall) acts after each step of euler / heun; dopri5 refuses one."""
    if method not in METHODS:
        raise UserError(f"unknown ODE method {method!r}; expected one of {METHODS}")
    if rtol <= 0 or atol <= 0:
        raise UserError(f"rtol and atol must be positive, got {rtol} and {atol}")
    if method == "dopri5":
        if call.constraint is not None:
            raise UserError(
                "ode with method 'dopri5' cannot take a constraint (inpainting, colorization): the adaptive solver "
                "cannot change x between its steps; use method 'euler' or 'heun' on a grid"
            )
        return dopri5(denoiser, x, times, denoise, call, rtol, atol)
    return (euler if method == "euler" else heun)(denoiser, x, times, denoise, call)
