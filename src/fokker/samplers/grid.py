"""Time grids for samplers: steps + 1 times from t = 1 down to t = 0.

Every grid starts at t = 1 (the prior) and ends at t = 0 (the data, reached without adding noise).
On a discrete process the times lie on its grid i / T: a respaced subset when steps < T
(Nichol & Dhariwal 2021, sec. 4)."""

from __future__ import annotations

import torch

from fokker.errors import UserError
from fokker.processes import Process
from fokker.schedules import F64

SPACINGS = ("uniform", "quadratic", "log_snr")


def _positions(process: Process, steps: int, spacing: str) -> torch.Tensor:
    """Increasing positions u_0 = 0 < ... < u_N = 1 (float64)."""
    k = torch.arange(steps + 1, dtype=F64) / steps
    if spacing == "uniform":
        return k
    if spacing == "quadratic":  # Song et al. 2021 (DDIM), app. D.3
        return k**2
    # log_snr: lambda(t) uniform between the first evaluation time and t = 1
    t_lo = 1.0 / process.T if process.T is not None else process.t_min
    lam = process.log_snr(torch.tensor([t_lo, 1.0], dtype=F64))
    target = lam[0] + (lam[1] - lam[0]) * (k[1:] - k[1]) / (1 - k[1]) if steps > 1 else lam[1:]
    lo, hi = torch.full_like(target, t_lo), torch.ones_like(target)
    for _ in range(64):  # bisection: log_snr decreases in t
        mid = (lo + hi) / 2
        above = process.log_snr(mid) > target
        lo, hi = torch.where(above, mid, lo), torch.where(above, hi, mid)
    return torch.cat([torch.zeros(1, dtype=F64), (lo + hi) / 2])


def time_grid(process: Process, steps: int, spacing: str = "uniform") -> torch.Tensor:
    """Descending float64 times [1, ..., 0] of length steps + 1 with the named spacing:
    "uniform" in t, "quadratic" (denser near t = 0) or "log_snr" (uniform in log alpha^2 / sigma^2)."""
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
