"""Training losses. Each returns one value per example so callers can weight or average them."""

from __future__ import annotations

import torch

from fokker.denoiser import PREDICTIONS, Denoiser, from_x0_eps, to_x0_eps
from fokker.errors import UserError
from fokker.processes import expand_as
from fokker.samplers.noise import randn


def simple_loss(
    denoiser: Denoiser,
    x0: torch.Tensor,
    *,
    target: str | None = None,
    t: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    model_kwargs: dict | None = None,
) -> torch.Tensor:
    """L_simple family: || target - prediction ||^2 averaged over dimensions, per example, with
    t uniform on the process's training times and x_t = alpha x_0 + sigma eps (Ho et al. 2020, eq. 14).

    `target` is "eps" (L_simple), "x0" or "v" (Salimans & Ho 2022); by default what the denoiser
    predicts. The network's output is converted to the target through Tweedie's formula when the
    two differ, so an eps-network can be trained on an x0 loss and vice versa."""
    target = target or denoiser.prediction
    if target not in PREDICTIONS or target == "score":
        raise UserError(f"unknown loss target {target!r}; expected 'eps', 'x0' or 'v'")
    process = denoiser.process
    if t is None:
        t = process.sample_time(x0.shape[0], generator, device=x0.device)
    if noise is None:
        noise = randn(x0.shape, generator, device=x0.device, dtype=x0.dtype)
    t64 = t.double().cpu()
    alpha, sigma = expand_as(process.alpha(t64), x0), expand_as(process.sigma(t64), x0)
    x_t = alpha * x0 + sigma * noise
    out = denoiser.raw(x_t, t64, **(model_kwargs or {}))
    if target == denoiser.prediction:
        pred = out
    else:
        pred = from_x0_eps(*to_x0_eps(out, x_t, alpha, sigma, denoiser.prediction), alpha, sigma, target)
    true = from_x0_eps(x0, noise, alpha, sigma, target)
    return (pred - true).pow(2).flatten(1).mean(1)
