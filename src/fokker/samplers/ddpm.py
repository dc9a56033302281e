"""DDPM ancestral sampling and DDIM: one Gaussian step from t to s < t,

    x_s = alpha_s x0_hat + c_eps eps_hat + std z,   z ~ N(0, I),

whose coefficients are computed for the whole grid before the loop. On a respaced grid they come
from alpha-bar on the subset (Nichol & Dhariwal 2021, sec. 4). The last step lands on t = 0 and
returns x0_hat with no noise added."""

from __future__ import annotations

from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from fokker.denoiser import Denoiser
from fokker.errors import UserError
from fokker.samplers.noise import Generators, randn
from fokker.samplers.registry import register

VARIANCES = ("beta_tilde", "beta")


def _steps(denoiser: Denoiser, x: torch.Tensor, times: torch.Tensor, std_fn: Callable) -> list[tuple]:
    """Per-step (conditioning, alpha_t, sigma_t, alpha_s, c_eps, std) for consecutive grid times."""
    process = denoiser.process
    t, s = times[:-1], times[1:]
    alpha_t, sigma_t = process.alpha(t), process.sigma(t)
    alpha_s, sigma_s = process.alpha(s), process.sigma(s)
    a_ts, var_ts = process.transition(s, t)
    var_post = var_ts * sigma_s**2 / sigma_t**2  # beta-tilde on the grid (Ho et al. 2020, eq. 7)
    std, c_eps = std_fn(var_post, var_ts, a_ts, sigma_s, sigma_t)
    last = s == 0  # land on the data: x0_hat, no noise
    alpha_s, c_eps, std = alpha_s.where(~last, 1.0), c_eps.where(~last, 0.0), std.where(~last, 0.0)
    cond = denoiser.condition(t).to(device=x.device, dtype=x.dtype)
    rows = zip(alpha_t.tolist(), sigma_t.tolist(), alpha_s.tolist(), c_eps.tolist(), std.tolist(), strict=True)
    return [(cond[k].expand(x.shape[0]), *row) for k, row in enumerate(rows)]


@torch.no_grad()
def _run(
    denoiser: Denoiser,
    x: torch.Tensor,
    steps: list[tuple],
    generator: Generators,
    callback: Callable | None,
    model_kwargs: dict | None,
    progress: bool,
) -> tuple[torch.Tensor, dict]:
    nfe0, model_kwargs = denoiser.nfe, model_kwargs or {}
    for k, (c, alpha_t, sigma_t, alpha_s, c_eps, std) in enumerate(tqdm(steps, disable=not progress, leave=False)):
        x0, eps = denoiser.predict(x, c, alpha=alpha_t, sigma=sigma_t, c=c, **model_kwargs)
        x_next = x0.mul(alpha_s).add_(eps, alpha=c_eps)
        if std > 0:
            x_next.add_(randn(x.shape, generator, device=x.device, dtype=x.dtype), alpha=std)
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
