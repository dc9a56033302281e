"""Time grids for samplers: steps + 1 times from t = 1 down to t = 0.

Every grid starts at t = 1 (the prior) and ends at t = 0 (the data, reached without adding noise).
On a discrete process the times lie on its grid i / T: a respaced subset when steps < T
(Nichol & Dhariwal 2021, sec. 4)."""

from __future__ import annotations

import torch

from fokker.errors import UserError
from fokker.processes import Process
from fokker.schedules import F64

SPACINGS = ("uniform", "quadratic", "log_snr", "karras")
KARRAS_RHO = 7.0  # Karras et al. 2022, eq. 5 and sec. 3: rho = 7


def noise_ratio(process: Process, t: torch.Tensor) -> torch.Tensor:
    """rho(t) = sigma(t) / alpha(t) = exp(-lambda(t) / 2), the noise-to-signal ratio: EDM's sigma (Karras et al.
    2022, sec. 4: x / alpha is the VE process x_0 + rho eps)."""
    return torch.exp(-0.5 * process.log_snr(t))


def times_at_log_snr(
    process: Process, target: torch.Tensor, lo: torch.Tensor | float, hi: torch.Tensor | float = 1.0
) -> torch.Tensor:
    """The times t in [lo, hi] with log_snr(t) = target (float64, elementwise), by 64 bisections: log_snr
    decreases in t. A target outside [log_snr(hi), log_snr(lo)] gives the nearer end."""
    lo = torch.as_tensor(lo, dtype=F64).expand_as(target).clone()
    hi = torch.as_tensor(hi, dtype=F64).expand_as(target).clone()
    for _ in range(64):
        mid = (lo + hi) / 2
        above = process.log_snr(mid) > target
        lo, hi = torch.where(above, mid, lo), torch.where(above, hi, mid)
    return (lo + hi) / 2


def first_evaluation_time(process: Process) -> float:
    """The lowest time a grid evaluates the model at, before its last step onto t = 0: 1 / T on a discrete
    process, t_min on a continuous one."""
    return 1.0 / process.T if process.T is not None else process.t_min


def karras_ratios(r_max: float, r_min: float, n: int, rho: float = KARRAS_RHO) -> torch.Tensor:
    """n noise ratios from r_max down to r_min, uniform in r^(1/rho) (Karras et al. 2022, eq. 5), float64."""
    if n == 1:
        return torch.tensor([r_max], dtype=F64)
    i = torch.arange(n, dtype=F64)
    return (r_max ** (1 / rho) + i / (n - 1) * (r_min ** (1 / rho) - r_max ** (1 / rho))) ** rho


def _positions(process: Process, steps: int, spacing: str) -> torch.Tensor:
    """Increasing positions u_0 = 0 < ... < u_N = 1 (float64)."""
    k = torch.arange(steps + 1, dtype=F64) / steps
    if spacing == "uniform":
        return k
    if spacing == "quadratic":  # Song et al. 2021 (DDIM), app. D.3
        return k**2
    t_lo = first_evaluation_time(process)
    lam = process.log_snr(torch.tensor([t_lo, 1.0], dtype=F64))
    if spacing == "log_snr":  # lambda(t) uniform between the first evaluation time and t = 1
        target = lam[0] + (lam[1] - lam[0]) * (k[1:] - k[1]) / (1 - k[1]) if steps > 1 else lam[1:]
    else:  # karras: the ratio rho(t) by eq. 5 from rho(1) down to rho(t_lo), then t = 0
        r_min, r_max = torch.exp(-0.5 * lam).tolist()
        target = -2 * torch.log(karras_ratios(r_max, r_min, steps).flip(0))
    return torch.cat([torch.zeros(1, dtype=F64), times_at_log_snr(process, target, t_lo)])


def time_grid(process: Process, steps: int, spacing: str = "uniform") -> torch.Tensor:
    """Descending float64 times [1, ..., 0] of length steps + 1 with the named spacing:
    "uniform" in t, "quadratic" (denser near t = 0), "log_snr" (uniform in log alpha^2 / sigma^2) or "karras"
    (the noise ratio sigma / alpha uniform in its 1/7th power, Karras et al. 2022, eq. 5, down to the first
    evaluation time)."""
    if spacing == "optimized":
        raise UserError(
            "the optimized spacing depends on the data and the sampler: compute the grid with "
            "fokker.samplers.optimize_grid (or `fokker grid`), or load a run's with fokker.samplers.load_grid, "
            "and pass its times as times="
        )
    if spacing not in SPACINGS:
        raise UserError(f"unknown spacing {spacing!r}; expected one of {SPACINGS}")
    if steps < 1:
        raise UserError(f"steps must be at least 1, got {steps}")
    if process.T is not None and steps > process.T:
        raise UserError(f"steps must be at most T = {process.T} for this discrete process, got {steps}")
    u = _positions(process, steps, spacing)
    u[0], u[-1] = 0.0, 1.0
    if process.T is None:
        return u.flip(0)
    idx = torch.round(u * process.T).long().tolist()
    idx[0], idx[-1] = 0, process.T
    for k in range(1, steps + 1):  # make the indices strictly increasing, keeping both ends
        idx[k] = max(idx[k], idx[k - 1] + 1)
    idx[-1] = process.T
    for k in range(steps - 1, -1, -1):
        idx[k] = min(idx[k], idx[k + 1] - 1)
    return (torch.tensor(idx, dtype=F64) / process.T).flip(0)
