"""Encoding data into the prior along the probability-flow ODE, decoding back, and interpolation.

The ODE's flow is a bijection: `encode` maps x (taken at t_eps, the solve's first time, 1 / T for a
discrete process) to z = x(1) and `decode` maps z back to x(t_eps), exactly up to the solver's tolerance
(Song et al. 2021, sec. 4.3). Interpolation: spherical between two encodings, or Ho et al.'s (2020,
sec. 4.3 and app. D): diffuse both images to x_t, mix linearly, denoise by the reverse process."""

from __future__ import annotations

from typing import Any

import torch

from fokker.denoiser import Denoiser
from fokker.errors import UserError
from fokker.flow import Drift, solve
from fokker.noise import rand, randn
from fokker.samplers import get_sampler, time_grid

INTERPOLATIONS = ("slerp", "ddpm")
TOLERANCE = 1e-5  # default rtol and atol of the adaptive solve


def _flow(
    denoiser: Denoiser,
    x: torch.Tensor,
    to_prior: bool,
    *,
    rtol: float = TOLERANCE,
    atol: float = TOLERANCE,
    t_eps: float | None = None,
    model_kwargs: dict | None = None,
) -> tuple[torch.Tensor, dict]:
    """x carried by the probability-flow ODE from t_eps to 1 (`to_prior`) or from 1 back to t_eps, and
    {"nfe", "accepted", "rejected", "t_eps"}."""
    t_eps = denoiser.process.first_time if t_eps is None else t_eps
    if rtol <= 0 or atol <= 0:
        raise UserError(f"rtol and atol must be positive, got {rtol} and {atol}")
    t0, t1 = (t_eps, 1.0) if to_prior else (1.0, t_eps)
    drift, nfe0 = Drift(denoiser, model_kwargs or {}), denoiser.nfe
    with torch.no_grad():
        y = solve(drift, x, t0, t1, rtol, atol)
    return y, {"nfe": denoiser.nfe - nfe0, "accepted": drift.accepted, "rejected": drift.rejected, "t_eps": t_eps}


def encode(denoiser: Denoiser, x: torch.Tensor, **options: Any) -> tuple[torch.Tensor, dict]:
    """(z, info): x at t_eps carried to t = 1 by the probability-flow ODE (Song et al. 2021, eq. 13),
    adaptively (dopri5). Options: rtol and atol (default 1e-5), t_eps (default the process's smallest
    time, 1 / T for a discrete process), model_kwargs. info has "nfe", the accepted / rejected steps and
    "t_eps"."""
    return _flow(denoiser, x, True, **options)


def decode(denoiser: Denoiser, z: torch.Tensor, **options: Any) -> tuple[torch.Tensor, dict]:
    """(x, info): z at t = 1 carried back to t_eps by the probability-flow ODE, the inverse of `encode`,
    with its options (rtol, atol, t_eps, model_kwargs) and info."""
    return _flow(denoiser, z, False, **options)


def slerp(a: torch.Tensor, b: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation (Shoemake 1985) between a and b (one example each, any shape) at each
    weight w in [0, 1]: (sin((1 - w) theta) a + sin(w theta) b) / sin(theta), theta the angle between them.
    Falls back to linear interpolation when a and b are (anti)parallel. Returns (len(weights), *a.shape)."""
    fa, fb = a.flatten().double(), b.flatten().double()
    cos = (fa @ fb / (fa.norm() * fb.norm())).clamp(-1, 1)
    theta, w = torch.arccos(cos), weights.double()[:, None]
    if torch.sin(theta) < 1e-6:
        out = (1 - w) * fa + w * fb
    else:
        out = (torch.sin((1 - w) * theta) * fa + torch.sin(w * theta) * fb) / torch.sin(theta)
    return out.to(a.dtype).reshape(len(weights), *a.shape)


def interpolate(
    denoiser: Denoiser,
    a: torch.Tensor,
    b: torch.Tensor,
    num: int = 8,
    *,
    method: str = "slerp",
    t: float | None = None,
    steps: int | None = None,
    generator: torch.Generator | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    model_kwargs: dict | None = None,
    progress: bool = False,
) -> tuple[torch.Tensor, dict]:
    """(num interpolants from a to b, info). a and b are single examples (no batch dimension).

    "slerp": encode both along the ODE, interpolate the encodings spherically, decode; the ends
    reproduce a and b up to the solver tolerance. "ddpm" (Ho et al. 2020, sec. 4.3): both diffused to
    x_t ~ q(x_t | x_0), mixed as (1 - w) x_t^a + w x_t^b, then denoised by DDPM ancestral sampling from t
    to 0 (on `steps` of the grid, all of a discrete process's by default) with the same noise for every
    w. Larger t: more mixing, less faithful ends. Options of one method only (slerp: rtol, atol, default
    1e-5; ddpm: t, default 0.5, steps, generator) are refused with the other, where they would do nothing.
    A latent diffusion model interpolates the latents of a and b (its autoencoder's encoding, Rombach et al.
    2022) and decodes the interpolants."""
    own = {"slerp": {"rtol": rtol, "atol": atol}, "ddpm": {"t": t, "steps": steps, "generator": generator}}
    _check_interpolation(method, own, num, a, b)
    if denoiser.space is not None:
        with torch.no_grad():
            a, b = denoiser.space.encode(torch.stack([a, b]))
    weights = torch.linspace(0, 1, num, dtype=torch.float64)
    if method == "slerp":
        x, info = _slerp_interpolation(denoiser, a, b, weights, rtol, atol, model_kwargs)
    else:
        t = 0.5 if t is None else t
        x, info = _ddpm_interpolation(denoiser, a, b, weights, t, steps, generator, model_kwargs, progress)
    return denoiser.to_data(x), info


def _check_interpolation(method: str, own: dict[str, dict], num: int, a: torch.Tensor, b: torch.Tensor) -> None:
    """A UserError for an unknown method, an option (given, not None) of the other method, num < 2, or
    endpoints of different shapes."""
    if method not in INTERPOLATIONS:
        raise UserError(f"unknown interpolation {method!r}; expected one of {INTERPOLATIONS}")
    for other, options in own.items():
        given = [k for k, v in options.items() if v is not None]
        if other != method and given:
            raise UserError(f"interpolation {method!r} takes no {', '.join(given)} (only {other!r} does)")
    if num < 2:
        raise UserError(f"num must be at least 2, got {num}")
    if a.shape != b.shape:
        raise UserError(f"a and b must have one shape, got {tuple(a.shape)} and {tuple(b.shape)}")


def _slerp_interpolation(denoiser, a, b, weights, rtol, atol, model_kwargs) -> tuple[torch.Tensor, dict]:
    """Encode a and b, interpolate the encodings spherically at `weights`, decode."""
    tol = {
        "rtol": TOLERANCE if rtol is None else rtol,
        "atol": TOLERANCE if atol is None else atol,
        "model_kwargs": model_kwargs,
    }
    z, info = encode(denoiser, torch.stack([a, b]), **tol)
    x, back = decode(denoiser, slerp(z[0], z[1], weights), **tol)
    return x, {"nfe": info["nfe"] + back["nfe"], "weights": weights}


def _ddpm_interpolation(
    denoiser, a, b, weights, t, steps, generator, model_kwargs, progress
) -> tuple[torch.Tensor, dict]:
    """Diffuse a and b to x_t, mix linearly at `weights`, denoise by DDPM from t with one noise for all."""
    process = denoiser.process
    if not 0 < t <= 1:
        raise UserError(f"t must be in (0, 1], got {t}")
    grid = time_grid(process, steps or process.T or 1000)
    if process.T is not None:
        t = round(t * process.T) / process.T
        if t == 0:
            raise UserError(f"t rounds to 0 on this process's grid of {process.T} steps")
    times = torch.cat([torch.tensor([t], dtype=torch.float64), grid[grid < t]])
    noise = randn((2, *a.shape), generator, device=a.device, dtype=a.dtype)
    x_t = process.q_sample(torch.stack([a, b]), torch.tensor([t, t], dtype=torch.float64), noise)
    w = weights.to(a)[:, None].reshape(-1, *([1] * a.dim()))
    mixed = (1 - w) * x_t[0] + w * x_t[1]
    # the same reverse-process noise for every w: one generator state, copied per interpolant
    seed = int(rand((1,), generator, dtype=torch.float64).item() * 2**31)
    gens = [torch.Generator(a.device).manual_seed(seed) for _ in weights]
    x, info = get_sampler("ddpm")(denoiser, mixed, times, generator=gens, model_kwargs=model_kwargs, progress=progress)
    return x, {**info, "weights": weights, "t": t}
