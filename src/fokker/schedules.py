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
    (Nichol & Dhariwal 2021, eq. 17). It reaches 0 at t = 1."""
    t = as_time(t)
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    return f / math.cos(s / (1 + s) * math.pi / 2) ** 2


def ddpm_terminal_alpha_bar() -> float:
    """alpha-bar_T of Ho et al.'s linear schedule at T = 1000 (4.04e-5, log-SNR -10.1): chosen so that
    L_T = KL(q(x_T | x_0) || N(0, I)) is about 1e-5 bits per dimension (Ho et al. 2020, sec. 4)."""
    return math.exp(torch.log1p(-linear_betas(1000)).sum().item())


def cosine_end_time(min_alpha_bar: float, s: float = 0.008) -> float:
    """The time t_end < 1 at which the closed-form cosine alpha-bar equals min_alpha_bar."""
    f0 = math.cos(s / (1 + s) * math.pi / 2) ** 2
    return (1 + s) * 2 / math.pi * math.acos(math.sqrt(min_alpha_bar * f0)) - s


def cosine_betas(T: int, s: float = 0.008, min_alpha_bar: float | None = None) -> torch.Tensor:
    """Cosine betas beta_i = 1 - abar(t_i) / abar(t_{i-1}) with abar the closed form of Nichol & Dhariwal
    (2021, eq. 17) on the times t_i = t_end i / T, where t_end is the time at which abar reaches
    `min_alpha_bar` (default: Ho et al.'s terminal alpha-bar_T = 4.04e-5, `ddpm_terminal_alpha_bar`).

    Nichol & Dhariwal instead run the closed form to t = 1, where abar = 0, and clip beta_i at 0.999. That
    clip leaves alpha-bar_T = 2.4e-9 at T = 1000 (alpha(1) = 4.9e-5): an eps- or score-model's x0_hat at
    t = 1 then amplifies its error by sigma / alpha = 2e4, and the last steps' rates (g^2(1) = 6,908) make
    every sampler's first step ill-conditioned, for no gain: the last four steps only take alpha-bar from
    4e-5 to 2.4e-9, signal that is already lost (L_T ~ 1e-5 bits/dim). Ending at Ho et al.'s terminal SNR
    keeps the schedule's shape and fixes this at its source for every sampler. `min_alpha_bar=0` gives
    Nichol & Dhariwal's clipped betas exactly (to load models trained with them)."""
    if min_alpha_bar is None:
        min_alpha_bar = ddpm_terminal_alpha_bar()
    if not 0 <= min_alpha_bar < 1:
        from fokker.errors import UserError

        raise UserError(f"min_alpha_bar must be in [0, 1), got {min_alpha_bar}")
    grid = torch.arange(T + 1, dtype=F64) / T
    if min_alpha_bar == 0:
        abar = cosine_alpha_bar(grid, s)
        return torch.clamp(1 - abar[1:] / abar[:-1], max=0.999)
    abar = cosine_alpha_bar(grid * cosine_end_time(min_alpha_bar, s), s)
    return 1 - abar[1:] / abar[:-1]


def geometric_sigmas(sigma_min: float, sigma_max: float, n: int) -> torch.Tensor:
    """SMLD / NCSN noise ladder sigma_1 > ... > sigma_n, a geometric sequence from sigma_max down to
    sigma_min (Song & Ermon 2019, sec. 4.1)."""
    return torch.exp(torch.linspace(math.log(sigma_max), math.log(sigma_min), n, dtype=F64))


GRID_RTOL = 4 * 2.0**-24  # four float32 ulps: a time this close (relative) to a grid time i / T is i / T


def snap_to_grid(t: torch.Tensor, T: int) -> torch.Tensor:
    """t with every time within float32 rounding of a grid time i / T replaced by i / T exactly (float64)."""
    t = as_time(t)
    u = t * T
    k = torch.round(u)
    return torch.where((u - k).abs() <= GRID_RTOL * k.clamp(min=1), k / T, t)


class DiscreteVPSchedule:
    """log alpha-bar of a T-step VP schedule, alpha-bar_i = prod_{j <= i} (1 - beta_j) (Ho et al. 2020,
    eq. 4), linear in t between grid points t_i = i / T."""

    def __init__(self, betas: torch.Tensor):
        self.betas = betas.to(F64)
        self.T = len(betas)
        self.log_alpha_bars = torch.cat([torch.zeros(1, dtype=F64), torch.cumsum(torch.log1p(-self.betas), 0)])

    def _locate(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(i, frac) with t T = i + frac, i the step [i / T, (i + 1) / T] holding t. At a grid time t_k, k >= 1,
        it is the step below (i = k - 1, frac = 1): the one whose beta_k carries x_{k-1} to x_k. A time within
        float32 rounding of t_k is t_k, so t_k gives the same values in float32 and float64."""
        u = snap_to_grid(as_time(t).clamp(0, 1), self.T) * self.T
        i = (torch.ceil(u) - 1).clamp(0, self.T - 1)
        return i.long(), u - i

    def log_alpha_bar(self, t: torch.Tensor | float) -> torch.Tensor:
        i, frac = self._locate(t)
        lab = self.log_alpha_bars
        return lab[i] + frac * (lab[i + 1] - lab[i])

    def d_log_alpha_bar(self, t: torch.Tensor | float) -> torch.Tensor:
        """d/dt log alpha-bar = T log(1 - beta_k) on the step holding t, at a grid time t_k the step below it
        (beta_k; the first step at t = 0): the discrete beta(t)."""
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
