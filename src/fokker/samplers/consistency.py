"""Multistep consistency sampling (Song et al. 2023, Algorithm 1): at each time tau_k of the grid, one
evaluation x0 = f(x, tau_k), then fresh noise to the next time, x = alpha x0 + sigma z; at t = 0 the last
x0. One step is a one-step consistency model; on any other Denoiser it is x0-then-renoise sampling."""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from fokker.denoiser import Denoiser
from fokker.noise import randn
from fokker.samplers.registry import SamplerCall, register


@register("consistency")
def consistency(
    denoiser: Denoiser, x: torch.Tensor, times: torch.Tensor, call: SamplerCall
) -> tuple[torch.Tensor, dict]:
    """x0 = f(x_tau, tau) at each grid time tau > 0 but the last, then x = alpha_s x0 + sigma_s z at the next
    time s (the exact marginal q(x_s | x0)); a grid onto t = 0 returns the last x0, a grid that ends above 0
    the state there. len(times) - 1 evaluations: 1, 2 or 4 for a consistency model."""
    process, steps = denoiser.process, len(times) - 1
    alphas, sigmas = process.alpha(times).tolist(), process.sigma(times).tolist()
    for k in tqdm(range(steps), desc="consistency", disable=not call.progress):
        t, s = times[k], times[k + 1]
        x0 = denoiser.predict(x, t, alpha=alphas[k], sigma=sigmas[k], **call.model_kwargs)[0]
        if s > 0:
            x = alphas[k + 1] * x0 + sigmas[k + 1] * randn(x.shape, call.generator, device=x.device, dtype=x.dtype)
            if call.constraint is not None:
                x = call.constraint(x, float(s))
        else:
            x = x0
        if call.callback is not None:
            call.callback(k, x, x0)
    return x, {"nfe": steps, "steps": steps}
