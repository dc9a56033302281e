"""Noise schedules, all in float64.

A VP schedule is given by log alpha-bar(t) on t in [0, 1]; a VE schedule by sigma(t).
Discrete schedules (T steps) define alpha-bar at t_i = i / T; between grid points log alpha-bar
is interpolated linearly, which is the continuous view of the discrete process.
"""

from __future__ import annotations

import math

import torch

F64 = torch.float64


def as_time(t: torch.Tensor | float) -> torch.Tensor:
    """t as a float64 tensor (shape kept; a python float becomes a 0-dim tensor)."""
    return torch.as_tensor(t, dtype=F64)


def linear_betas(T: int, beta_start: float = 1e-4, beta_end: float = 0.02, max_beta: float = 0.999) -> torch.Tensor:
    """DDPM linear betas (Ho et al. 2020, sec. 4): 1e-4 to 0.02 at T = 1000, scaled by 1000 / T
    (Nichol & Dhariwal 2021) and, for very small T where the scaled end passes 1, clipped at max_beta."""
    scale = 1000.0 / T
    return torch.linspace(beta_start * scale, beta_end * scale, T, dtype=F64).clamp(max=max_beta)


def cosine_alpha_bar(t: torch.Tensor | float, s: float = 0.008) -> torch.Tensor:
    """Closed-form cosine alpha-bar f(t) / f(0), f(t) = cos^2((t + s) / (1 + s) * pi / 2)
    (Nichol & Dhariwal 2021, eq. 17)."""
    t = as_time(t)
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    return f / math.cos(s / (1 + s) * math.pi / 2) ** 2


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Cosine betas, beta_i = min(1 - abar(i/T) / abar((i-1)/T), max_beta) (Nichol & Dhariwal 2021)."""
    abar = cosine_alpha_bar(torch.arange(T + 1, dtype=F64) / T, s)
    return torch.clamp(1 - abar[1:] / abar[:-1], max=max_beta)


def geometric_sigmas(sigma_min: float, sigma_max: float, n: int) -> torch.Tensor:
    """SMLD / NCSN noise ladder sigma_1 > ... > sigma_n, a geometric sequence from sigma_max down to
    sigma_min (Song & Ermon 2019, sec. 4.1)."""
    return torch.exp(torch.linspace(math.log(sigma_max), math.log(sigma_min), n, dtype=F64))


class DiscreteVPSchedule:
    """log alpha-bar of a T-step VP schedule, alpha-bar_i = prod_{j <= i} (1 - beta_j) (Ho et al. 2020,
    eq. 4), linear in t between grid points t_i = i / T."""

    def __init__(self, betas: torch.Tensor):
        self.betas = betas.to(F64)
        self.T = len(betas)
        self.log_alpha_bars = torch.cat([torch.zeros(1, dtype=F64), torch.cumsum(torch.log1p(-self.betas), 0)])

    def _locate(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u = as_time(t).clamp(0, 1) * self.T
        i = torch.floor(u).clamp(max=self.T - 1)
        return i.long(), u - i

    def log_alpha_bar(self, t: torch.Tensor | float) -> torch.Tensor:
        i, frac = self._locate(t)
        lab = self.log_alpha_bars
        return lab[i] + frac * (lab[i + 1] - lab[i])

    def d_log_alpha_bar(self, t: torch.Tensor | float) -> torch.Tensor:
        """d/dt log alpha-bar: -T log(1 / (1 - beta_i)) on the step holding t (the discrete beta(t))."""
        i, _ = self._locate(t)
        return (self.log_alpha_bars[i + 1] - self.log_alpha_bars[i]) * self.T


class LinearVPSchedule:
    """Continuous VP linear beta(t) = beta_min + t (beta_max - beta_min) (Song et al. 2021, eq. 33);
    log alpha-bar(t) = -(beta_min t + (beta_max - beta_min) t^2 / 2)."""

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0):
        self.beta_min, self.beta_max = beta_min, beta_max
        self.T = None

    def beta(self, t: torch.Tensor | float) -> torch.Tensor:
        return self.beta_min + as_time(t) * (self.beta_max - self.beta_min)

    def log_alpha_bar(self, t: torch.Tensor | float) -> torch.Tensor:
        t = as_time(t)
        return -(self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2)

    def d_log_alpha_bar(self, t: torch.Tensor | float) -> torch.Tensor:
        return -self.beta(t)


def vp_schedule(name: str, T: int | None, **params: float) -> DiscreteVPSchedule | LinearVPSchedule:
    """A VP schedule by name: "linear" (discrete DDPM betas when T is given, else the continuous
    beta(t)) or "cosine" (discrete only)."""
    from fokker.errors import UserError

    if name == "linear":
        if T is None:
            return LinearVPSchedule(**params)
        return DiscreteVPSchedule(linear_betas(T, **params))
    if name == "cosine":
        if T is None:
            raise UserError("the cosine schedule is discrete: give the number of steps T")
        return DiscreteVPSchedule(cosine_betas(T, **params))
    raise UserError(f"unknown VP schedule {name!r}; expected 'linear' or 'cosine'")
