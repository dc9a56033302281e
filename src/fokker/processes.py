"""Gaussian diffusion processes x_t = alpha(t) x_0 + sigma(t) eps on t in [0, 1].

Everything follows from alpha and sigma (Kingma et al. 2021; Song et al. 2021, app. B):
the SDE f(x, t) = dlog(alpha)/dt x, g(t)^2 = d(sigma^2)/dt - 2 dlog(alpha)/dt sigma^2, the transition
q(x_t | x_s) and the posterior q(x_s | x_t, x_0) between any two times s < t. A discrete process
is the continuous view plus its grid of T + 1 times t_i = i / T.
"""

from __future__ import annotations

import math

import torch

from fokker.errors import UserError
from fokker.noise import randn
from fokker.schedules import F64, as_time, snap_to_grid, vp_schedule

Scalar = torch.Tensor | float


def expand_as(c: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor | float:
    """Broadcast a per-example coefficient of shape (B,) (or a scalar) against x of shape (B, ...)."""
    if not isinstance(c, torch.Tensor):
        return c
    if c.dim() == 0:
        return c.to(device=x.device, dtype=x.dtype)
    return c.to(device=x.device, dtype=x.dtype).reshape(-1, *([1] * (x.dim() - 1)))


class Process:
    """Base class: subclasses give log_alpha, sigma and their time derivatives (float64)."""

    T: int | None = None
    prior_std: float = 1.0
    t_min: float = 1e-3  # smallest time used by training and likelihoods of a continuous process

    # -- the two functions that define a process ------------------------------------------------
    def log_alpha(self, t: Scalar) -> torch.Tensor:
        """log alpha(t), the signal scale of x_t = alpha(t) x_0 + sigma(t) eps."""
        raise NotImplementedError  # abstract

    def sigma(self, t: Scalar) -> torch.Tensor:
        """sigma(t), the noise scale of x_t = alpha(t) x_0 + sigma(t) eps."""
        raise NotImplementedError  # abstract

    def d_log_alpha(self, t: Scalar) -> torch.Tensor:
        """d/dt log alpha(t)."""
        raise NotImplementedError  # abstract

    def d_sigma2(self, t: Scalar) -> torch.Tensor:
        """d/dt sigma(t)^2."""
        raise NotImplementedError  # abstract

    # -- derived quantities -----------------------------------------------------------------------
    def alpha(self, t: Scalar) -> torch.Tensor:
        """alpha(t) = exp(log alpha(t)); sqrt(alpha-bar_t) for VP (Ho et al. 2020, eq. 4)."""
        return torch.exp(self.log_alpha(t))

    def log_snr(self, t: Scalar) -> torch.Tensor:
        """lambda(t) = log(alpha^2 / sigma^2) (Kingma et al. 2021, eq. 2)."""
        return 2 * self.log_alpha(t) - 2 * torch.log(self.sigma(t))

    def snap(self, t: Scalar) -> torch.Tensor:
        """t as float64, a time within float32 rounding of a grid time i / T of a discrete process set to it."""
        return as_time(t) if self.T is None else snap_to_grid(t, self.T)

    @property
    def grid(self) -> torch.Tensor | None:
        """The T + 1 times t_i = i / T of a discrete process (None when continuous)."""
        return None if self.T is None else torch.arange(self.T + 1, dtype=F64) / self.T

    def marginal(self, x0: torch.Tensor, t: Scalar) -> tuple[torch.Tensor, torch.Tensor | float]:
        """Mean and std of q(x_t | x_0) = N(alpha(t) x_0, sigma(t)^2 I) (Ho et al. 2020, eq. 4)."""
        return expand_as(self.alpha(t), x0) * x0, expand_as(self.sigma(t), x0)

    def q_sample(self, x0: torch.Tensor, t: Scalar, noise: torch.Tensor) -> torch.Tensor:
        """Closed-form draw x_t = alpha(t) x_0 + sigma(t) eps (Ho et al. 2020, eq. 4)."""
        mean, std = self.marginal(x0, t)
        return mean + std * noise

    @property
    def first_time(self) -> float:
        """The earliest time the model is trained at, where a solve toward t = 0 stops: the first grid time
        1 / T of a discrete process (sigma(1 / T), the lowest level of a VE ladder), else t_min. Below it the
        network was never trained (and for VP, sigma(0) = 0 makes the probability-flow drift singular)."""
        return 1.0 / self.T if self.T is not None else self.t_min

    # Two times are always given later first: (t, s) with s < t, as a reverse step t -> s.
    def transition(self, t: Scalar, s: Scalar) -> tuple[torch.Tensor, torch.Tensor]:
        """q(x_t | x_s) = N(a x_s, var I) for s < t: a = alpha_t / alpha_s, var = sigma_t^2 - a^2 sigma_s^2.
        For s = t - 1/T on a VP grid, a = sqrt(1 - beta_t) and var = beta_t (Ho et al. 2020, eq. 2)."""
        a = torch.exp(self.log_alpha(t) - self.log_alpha(s))
        return a, self.sigma(t) ** 2 - a**2 * self.sigma(s) ** 2

    def posterior_variance(self, t: Scalar, s: Scalar) -> torch.Tensor:
        """beta-tilde = var sigma_s^2 / sigma_t^2, the variance of q(x_s | x_t, x_0) for s < t, var the
        transition variance (Ho et al. 2020, eq. 7); beta-tilde_t on the T-step VP grid."""
        return self.transition(t, s)[1] * self.sigma(s) ** 2 / self.sigma(t) ** 2

    def posterior_coefficients(self, t: Scalar, s: Scalar) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q(x_s | x_t, x_0) = N(c_t x_t + c_0 x_0, beta-tilde I) for s < t, the Gaussian product of
        q(x_t | x_s) and q(x_s | x_0): c_t = a sigma_s^2 / sigma_t^2, c_0 = alpha_s var / sigma_t^2
        (Ho et al. 2020, eq. 6-7: mu-tilde and beta-tilde)."""
        a, var = self.transition(t, s)
        sig_s2, sig_t2 = self.sigma(s) ** 2, self.sigma(t) ** 2
        return a * sig_s2 / sig_t2, self.alpha(s) * var / sig_t2, self.posterior_variance(t, s)

    def posterior(
        self, x_t: torch.Tensor, x0: torch.Tensor, t: Scalar, s: Scalar
    ) -> tuple[torch.Tensor, torch.Tensor | float]:
        """Mean and variance of q(x_s | x_t, x_0), s < t (Ho et al. 2020, eq. 6-7)."""
        c_t, c_0, var = self.posterior_coefficients(t, s)
        return expand_as(c_t, x_t) * x_t + expand_as(c_0, x0) * x0, expand_as(var, x_t)

    def log_variance_range(self, t: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log beta-tilde, log beta) of a reverse step t -> s < t: beta = sigma_t^2 - a^2 sigma_s^2 (the
        transition variance; beta_t on the T-step grid), beta-tilde its posterior variance (Ho et al. 2020,
        eq. 7), the two ends of a learned variance (Nichol & Dhariwal 2021, eq. 15). On a step onto s = 0,
        where beta-tilde = 0, it is that of the step 2t -> t above it (improved-diffusion's clipped log
        variance: beta-tilde_2 at t_1 on the T-step grid); for t = 1, beta."""
        t, s = as_time(t), as_time(s)
        beta = self.transition(t, s)[1]
        up = (2 * t).clamp(max=1.0)
        above = self.posterior_variance(up, t)
        beta_tilde = torch.where(s > 0, self.posterior_variance(t, s), torch.where(up > t, above, beta))
        return torch.log(beta_tilde), torch.log(beta)

    def sde(self, x: torch.Tensor, t: Scalar) -> tuple[torch.Tensor, torch.Tensor | float]:
        """Forward SDE dx = f(x, t) dt + g(t) dw (Song et al. 2021, eq. 5), with
        f = dlog(alpha)/dt x and g^2 = d(sigma^2)/dt - 2 dlog(alpha)/dt sigma^2."""
        return expand_as(self.d_log_alpha(t), x) * x, expand_as(self.diffusion(t), x)

    def diffusion(self, t: Scalar) -> torch.Tensor:
        """g(t) of the forward SDE."""
        g2 = self.d_sigma2(t) - 2 * self.d_log_alpha(t) * self.sigma(t) ** 2
        return torch.sqrt(g2.clamp(min=0))

    def prior_sample(
        self,
        shape: tuple[int, ...],
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """x_T ~ N(0, prior_std^2 I)."""
        return self.prior_std * randn(shape, generator, device=device, dtype=dtype)

    def prior_logp(self, x: torch.Tensor) -> torch.Tensor:
        """log N(x; 0, prior_std^2 I) summed per example."""
        d = x[0].numel()
        sq = x.flatten(1).double().pow(2).sum(1)
        return -0.5 * d * math.log(2 * math.pi * self.prior_std**2) - 0.5 * sq / self.prior_std**2

    def sample_time(
        self, n: int, generator: torch.Generator | None = None, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """Uniform training times: t = i / T with i ~ U{1..T} for a discrete process, else
        t ~ U(t_min, 1). Returned as float32 on `device`."""
        if self.T is not None:
            i = torch.randint(1, self.T + 1, (n,), generator=generator, device=generator.device if generator else None)
            return (i.to(torch.float32) / self.T).to(device)
        u = torch.rand(n, generator=generator, device=generator.device if generator else None)
        return (self.t_min + (1 - self.t_min) * u).to(device)

    def config(self) -> dict:
        """A JSON-able description from which `process_from_config` rebuilds the process."""
        raise NotImplementedError  # abstract


class VP(Process):
    """Variance preserving: alpha = sqrt(abar), sigma = sqrt(1 - abar) (DDPM, Ho et al. 2020; the VP SDE,
    Song et al. 2021, eq. 11). Discrete with T steps, or continuous (T=None, linear beta(t))."""

    def __init__(self, T: int | None = 1000, schedule: str = "linear", **schedule_params: float):
        self.T, self.schedule_name, self.schedule_params = T, schedule, schedule_params
        self.schedule = vp_schedule(schedule, T, **schedule_params)

    def log_alpha(self, t: Scalar) -> torch.Tensor:
        return 0.5 * self.schedule.log_alpha_bar(t)

    def alpha_bar(self, t: Scalar) -> torch.Tensor:
        """alpha-bar(t) = alpha(t)^2 (Ho et al. 2020, eq. 4)."""
        return torch.exp(self.schedule.log_alpha_bar(t))

    def sigma(self, t: Scalar) -> torch.Tensor:
        return torch.sqrt(-torch.expm1(self.schedule.log_alpha_bar(t)))

    def d_log_alpha(self, t: Scalar) -> torch.Tensor:
        return 0.5 * self.schedule.d_log_alpha_bar(t)

    def d_sigma2(self, t: Scalar) -> torch.Tensor:
        return -self.schedule.d_log_alpha_bar(t) * self.alpha_bar(t)

    def config(self) -> dict:
        return {"type": "vp", "T": self.T, "schedule": self.schedule_name, **self.schedule_params}


class SubVP(VP):
    """sub-VP: alpha as VP, sigma = 1 - abar (Song et al. 2021, eq. 12); g^2 = beta (1 - abar^2).
    The marginal variance never exceeds the VP one. T gives a grid of t_i = i / T."""

    def __init__(self, T: int | None = None, beta_min: float = 0.1, beta_max: float = 20.0):
        super().__init__(None, "linear", beta_min=beta_min, beta_max=beta_max)
        self.T = T

    def sigma(self, t: Scalar) -> torch.Tensor:
        return -torch.expm1(self.schedule.log_alpha_bar(t))

    def d_sigma2(self, t: Scalar) -> torch.Tensor:
        abar = self.alpha_bar(t)
        return -2 * (1 - abar) * abar * self.schedule.d_log_alpha_bar(t)

    def config(self) -> dict:
        return {"type": "subvp", "T": self.T, **self.schedule_params}


class VE(Process):
    """Variance exploding: alpha = 1, sigma(t) = sigma_min (sigma_max / sigma_min)^t (SMLD / NCSN,
    Song et al. 2021, eq. 9); g^2 = 2 log(sigma_max / sigma_min) sigma^2. Prior N(0, sigma_max^2 I).
    T gives a grid t_i = i / T, whose sigmas sigma(t_1) < ... < sigma(t_T) = sigma_max form a
    geometric ladder."""

    t_min = 1e-5

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0, T: int | None = None):
        if not 0 < sigma_min < sigma_max:
            raise UserError(f"VE needs 0 < sigma_min < sigma_max, got {sigma_min} and {sigma_max}")
        self.sigma_min, self.sigma_max, self.T = sigma_min, sigma_max, T
        self.prior_std = sigma_max
        self._log_ratio = math.log(sigma_max / sigma_min)

    def log_alpha(self, t: Scalar) -> torch.Tensor:
        return torch.zeros_like(as_time(t))

    def sigma(self, t: Scalar) -> torch.Tensor:
        return self.sigma_min * torch.exp(as_time(t) * self._log_ratio)

    def d_log_alpha(self, t: Scalar) -> torch.Tensor:
        return torch.zeros_like(as_time(t))

    def d_sigma2(self, t: Scalar) -> torch.Tensor:
        return 2 * self._log_ratio * self.sigma(t) ** 2

    def config(self) -> dict:
        return {"type": "ve", "sigma_min": self.sigma_min, "sigma_max": self.sigma_max, "T": self.T}


PROCESSES = {"vp": VP, "subvp": SubVP, "ve": VE}


def process_from_config(config: dict) -> Process:
    """Rebuild a process from `Process.config()` (used by checkpoints and the CLI)."""
    params = dict(config)
    kind = params.pop("type", None)
    if kind not in PROCESSES:
        raise UserError(f"unknown process type {kind!r}; expected one of {sorted(PROCESSES)}")
    try:
        return PROCESSES[kind](**params)
    except TypeError as err:
        raise UserError(f"bad options for process {kind!r}: {err}") from None
