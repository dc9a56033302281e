"""DDPM ancestral sampling and DDIM: one Gaussian step from t to s < t,

    x_s = alpha_s x0_hat + c_eps eps_hat + std z,   z ~ N(0, I),

whose coefficients are computed for the whole grid before the loop. On a respaced grid they come
from alpha-bar on the subset (Nichol & Dhariwal 2021, sec. 4). The last step lands on t = 0 and
returns x0_hat with no noise added."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from tqdm.auto import tqdm

from fokker.denoiser import Denoiser, linear_coefficients
from fokker.errors import UserError
from fokker.samplers.noise import Generators, randn
from fokker.samplers.registry import register

VARIANCES = ("beta_tilde", "beta")


class Step(NamedTuple):
    """One step t -> s of a grid, coefficients as python floats: x_s = alpha_s x0_hat + c_eps eps_hat
    + std z, and the same folded into x_s = A x_t + B out + std z, out being the network's output."""

    c: torch.Tensor  # the network's noise conditioning at t, shape (batch,)
    alpha_t: float
    sigma_t: float
    alpha_s: float
    c_eps: float
    std: float
    A: float
    B: float


def _steps(denoiser: Denoiser, x: torch.Tensor, times: torch.Tensor, std_fn: Callable) -> list[Step]:
    """The coefficients of every step between consecutive grid times, computed once in float64."""
    process = denoiser.process
    t, s = times[:-1], times[1:]
    alpha_t, sigma_t = process.alpha(t), process.sigma(t)
    alpha_s, sigma_s = process.alpha(s), process.sigma(s)
    a_ts, var_ts = process.transition(s, t)
    var_post = var_ts * sigma_s**2 / sigma_t**2  # beta-tilde on the grid (Ho et al. 2020, eq. 7)
    std, c_eps = std_fn(var_post, var_ts, a_ts, sigma_s, sigma_t)
    last = s == 0  # land on the data: x0_hat, no noise
    alpha_s, c_eps, std = alpha_s.where(~last, 1.0), c_eps.where(~last, 0.0), std.where(~last, 0.0)
    a0, b0, a1, b1 = linear_coefficients(alpha_t, sigma_t, denoiser.prediction)
    A, B = alpha_s * a0 + c_eps * a1, alpha_s * b0 + c_eps * b1
    cond = denoiser.condition(t).to(device=x.device, dtype=x.dtype)[:, None].expand(-1, x.shape[0]).unbind(0)
    columns = (alpha_t, sigma_t, alpha_s, c_eps, std, A, B)
    return [Step(c, *row) for c, row in zip(cond, zip(*(v.tolist() for v in columns), strict=True), strict=True)]


@torch.no_grad()
def _run(
    denoiser: Denoiser,
    x: torch.Tensor,
    steps: list[Step],
    generator: Generators,
    callback: Callable | None,
    model_kwargs: dict | None,
    progress: bool,
) -> tuple[torch.Tensor, dict]:
    """The loop. Without clipping or a callback, which need x0_hat itself, each step is two tensor
    operations on the network's output (plus the noise); otherwise x0_hat and eps_hat are formed."""
    nfe0, model_kwargs = denoiser.nfe, model_kwargs or {}
    folded = denoiser.clip is None and callback is None
    for k, step in enumerate(tqdm(steps, leave=False) if progress else steps):
        if folded:
            out = denoiser.raw(x, None, step.c, **model_kwargs)
            x_next = torch.add(x * step.A, out, alpha=step.B)
        else:
            x0, eps = denoiser.predict(x, None, alpha=step.alpha_t, sigma=step.sigma_t, c=step.c, **model_kwargs)
            x_next = x0.mul(step.alpha_s).add_(eps, alpha=step.c_eps)
        if step.std > 0:
            x_next.add_(randn(x.shape, generator, device=x.device, dtype=x.dtype), alpha=step.std)
        x = x_next
        if callback is not None:
            callback(k, x, x0)
    return x, {"nfe": denoiser.nfe - nfe0, "steps": len(steps)}


@register("ddpm")
def ddpm(
    denoiser: Denoiser,
    x: torch.Tensor,
    times: torch.Tensor,
    *,
    variance: str = "beta_tilde",
    generator: Generators = None,
    callback: Callable | None = None,
    model_kwargs: dict | None = None,
    progress: bool = False,
) -> tuple[torch.Tensor, dict]:
    """Ancestral sampling, x_s ~ N(mu-tilde(x_t, x0_hat), sigma^2 I) (Ho et al. 2020, Alg. 2, eq. 11),
    with sigma^2 = beta-tilde ("beta_tilde", the posterior variance) or beta ("beta", the forward
    transition variance 1 - alpha-bar_t / alpha-bar_s on a respaced grid)."""
    if variance not in VARIANCES:
        raise UserError(f"unknown variance {variance!r}; expected one of {VARIANCES}")

    def std_fn(var_post, var_ts, a_ts, sigma_s, sigma_t):
        # mu-tilde in terms of (x0, eps): alpha_s x0 + a_ts sigma_s^2 / sigma_t eps
        var = var_post if variance == "beta_tilde" else var_ts
        return var.sqrt(), a_ts * sigma_s**2 / sigma_t

    return _run(denoiser, x, _steps(denoiser, x, times, std_fn), generator, callback, model_kwargs, progress)


@register("ddim")
def ddim(
    denoiser: Denoiser,
    x: torch.Tensor,
    times: torch.Tensor,
    *,
    eta: float = 0.0,
    generator: Generators = None,
    callback: Callable | None = None,
    model_kwargs: dict | None = None,
    progress: bool = False,
) -> tuple[torch.Tensor, dict]:
    """DDIM (Song, Meng & Ermon 2021, eq. 12 and 16): x_s = alpha_s x0_hat + sqrt(sigma_s^2 - std^2) eps_hat
    + std z with std = eta sqrt(beta-tilde). eta = 0 is deterministic; eta = 1 is ancestral sampling
    with beta-tilde."""
    if not 0.0 <= eta <= 1.0:
        raise UserError(f"eta must be in [0, 1], got {eta}")

    def std_fn(var_post, var_ts, a_ts, sigma_s, sigma_t):
        std = eta * var_post.sqrt()
        return std, (sigma_s**2 - std**2).clamp(min=0).sqrt()

    return _run(denoiser, x, _steps(denoiser, x, times, std_fn), generator, callback, model_kwargs, progress)
