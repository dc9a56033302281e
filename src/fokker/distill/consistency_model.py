"""The consistency function as a Denoiser (Song et al. 2023, sec. 3 and app. C):

    f(x_t, t) = c_skip(r) x_t / alpha_t + (1 - c_skip(r)) F(x_t, t),   c_skip(r) = s^2 / ((r - r_min)^2 + s^2)

with r = sigma_t / alpha_t the noise ratio (EDM's sigma: x_t / alpha_t = x_0 + r eps is the VE process,
Karras et al. 2022, sec. 4), s = sigma_data, r_min the ratio at the process's first time t_min, and F the
inner network's estimate of x_0 in its own prediction type (eps, x0 or v, through Tweedie's table). At
t = t_min, c_skip = 1 exactly, so f(x, t_min) = x / alpha(t_min) (= x for VE) for any network: the
boundary condition holds by construction. Away from t_min, c_skip falls to 0 and f is F's Tweedie
estimate, which is why a diffusion model is a consistency model's natural starting point (Geng et al.
2024). f is an x_0 prediction, so every sampler, guide and metric takes this Denoiser as it is."""

from __future__ import annotations

from collections.abc import Callable

import torch

from fokker.denoiser import Denoiser, batch_times, to_x0_eps
from fokker.errors import UserError
from fokker.processes import Process, expand_as

SIGMA_DATA = 0.5  # the data's standard deviation in c_skip (Karras et al. 2022, sec. 5; Song et al. 2023)
INNER_PREDICTIONS = ("eps", "x0", "v")


def noise_ratio(process: Process, t: torch.Tensor) -> torch.Tensor:
    """r(t) = sigma(t) / alpha(t) (float64)."""
    return process.sigma(t) / process.alpha(t)


def skip_coefficient(r: torch.Tensor, r_min: float, sigma_data: float = SIGMA_DATA) -> torch.Tensor:
    """c_skip(r) = s^2 / ((r - r_min)^2 + s^2) (Song et al. 2023, app. C): exactly 1 at r = r_min."""
    return sigma_data**2 / ((r - r_min) ** 2 + sigma_data**2)


class ConsistencyDenoiser(Denoiser):
    """A consistency model f(x_t, t) (module docstring) around fn, whose output is of type `inner` (eps, x0 or
    v); as a Denoiser it predicts x0. The other arguments are the Denoiser's."""

    def __init__(
        self,
        fn: Callable[..., torch.Tensor],
        process: Process,
        inner: str = "v",
        clip: tuple[float, float] | None = None,
        conditioning: str = "time",
        num_classes: int | None = None,
        sigma_data: float = SIGMA_DATA,
    ):
        if inner not in INNER_PREDICTIONS:
            raise UserError(f"a consistency model's network predicts one of {INNER_PREDICTIONS}, not {inner!r}")
        if not sigma_data > 0:
            raise UserError(f"sigma_data must be positive, got {sigma_data}")
        super().__init__(fn, process, "x0", clip, conditioning, "fixed", num_classes)
        self.inner, self.sigma_data = inner, float(sigma_data)
        self.t_min = process.first_time
        self.r_min = float(noise_ratio(process, torch.tensor(self.t_min, dtype=torch.float64)))

    def raw_and_variance(
        self, x: torch.Tensor, t: torch.Tensor | float, cond: torch.Tensor | None = None, **model_kwargs
    ) -> tuple[torch.Tensor, None]:
        """(f(x, t), None): one evaluation of fn, combined with x by c_skip (module docstring)."""
        out, _ = super().raw_and_variance(x, t, cond, **model_kwargs)
        tb = self.process.snap(batch_times(x, t))
        alpha, sigma = self.process.alpha(tb), self.process.sigma(tb)
        skip = skip_coefficient(sigma / alpha, self.r_min, self.sigma_data)
        x0 = to_x0_eps(out, x, expand_as(alpha, x), expand_as(sigma, x), self.inner)[0]
        skip_x = expand_as(skip, x)
        return skip_x * (x / expand_as(alpha, x)) + (1 - skip_x) * x0, None
