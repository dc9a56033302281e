"""Noise levels of consistency training and distillation, in the noise ratio r = sigma / alpha (EDM's sigma):
Karras et al.'s discretisation between r(t_min) and r(1), iCT's curriculum of its size and lognormal
choice of an adjacent pair (Song & Dhariwal 2023, sec. 3.4-3.5), ECT's shrinking gap (Geng et al. 2024,
sec. 3), and the pseudo-Huber distance (Song & Dhariwal 2023, sec. 3.3). Times are float64; on a discrete
process they are grid times i / T."""

from __future__ import annotations

import math

import torch

from fokker.distill.consistency_model import noise_ratio
from fokker.grids import karras_ratios, times_at_log_snr
from fokker.processes import Process
from fokker.schedules import F64

HUBER_C = 0.00054  # iCT's pseudo-Huber c = 0.00054 sqrt(d) (Song & Dhariwal 2023, sec. 3.3)


def times_of_ratios(process: Process, r: torch.Tensor) -> torch.Tensor:
    """The times with noise ratio r (elementwise, clamped to [first time, 1]); on a discrete process rounded to
    the nearest grid time i / T, i >= 1."""
    t = times_at_log_snr(process, -2 * torch.log(r.to(F64)), process.first_time)
    if process.T is None:
        return t
    return torch.round(t * process.T).clamp(1, process.T) / process.T


def karras_times(process: Process, n: int) -> torch.Tensor:
    """n >= 2 increasing times t_min = t_0 < ... < t_{n-1} = 1 whose ratios follow Karras et al. 2022, eq. 5
    (rho = 7) between r(t_min) and r(1); on a discrete process rounded to grid times, repeats dropped."""
    ends = noise_ratio(process, torch.tensor([process.first_time, 1.0], dtype=F64)).tolist()
    t = times_of_ratios(process, karras_ratios(ends[1], ends[0], n).flip(0))
    t[0], t[-1] = process.first_time, 1.0
    return torch.unique(t) if process.T is not None else t


def curriculum_levels(step: int, s0: int, s1: int, every: int) -> int:
    """iCT's N(k) = min(s0 2^floor(k / K'), s1) + 1 levels at step k, doubling every K' steps (Song & Dhariwal
    2023, eq. 6)."""
    return min(s0 * 2 ** (step // every), s1) + 1


def lognormal_pair_probabilities(r: torch.Tensor, p_mean: float, p_std: float) -> torch.Tensor:
    """p(n) of the pair (r_n, r_{n+1}) of increasing ratios: the lognormal N(p_mean, p_std^2) mass of log r
    between them, erf((log r_{n+1} - P_mean) / (sqrt 2 P_std)) - erf((log r_n - P_mean) / (sqrt 2 P_std))
    normalised (Song & Dhariwal 2023, sec. 3.5)."""
    cdf = torch.erf((torch.log(r) - p_mean) / (math.sqrt(2) * p_std))
    mass = (cdf[1:] - cdf[:-1]).clamp(min=0)
    return mass / mass.sum() if mass.sum() > 0 else torch.full_like(mass, 1 / len(mass))


def pseudo_huber(a: torch.Tensor, b: torch.Tensor, c: float | None = None) -> torch.Tensor:
    """sqrt(||a - b||^2 + c^2) - c per example, c = HUBER_C sqrt(d) unless given (Song & Dhariwal 2023, eq. 8)."""
    d = a[0].numel()
    c = HUBER_C * math.sqrt(d) if c is None else c
    sq = (a - b).flatten(1).pow(2).sum(1)
    return torch.sqrt(sq + c * c) - c


def ect_gap(r: torch.Tensor, stage: int, q: float, k: float, b: float) -> torch.Tensor:
    """ECT's lower ratio r' = r (1 - n(r) / q^stage), n(r) = 1 + k sigmoid(-b r) (Geng et al. 2024, eq. 9 with
    the EDM sigma as r); stage 0 gives r' <= 0, the diffusion loss; the gap shrinks by q each stage."""
    return r * (1 - (1 + k * torch.sigmoid(-b * r)) / q**stage)
