"""Losses with a term of the variational bound, which train a learned variance: `VLBLoss` (one term of
L_vlb) and `HybridLoss` (L_simple + lambda L_vlb, Nichol & Dhariwal 2021, sec. 3.1)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from fokker.denoiser import Denoiser
from fokker.errors import UserError
from fokker.losses.base import Loss, scales, squared_error
from fokker.vlb import check_bound_grid, model_step_nll

HYBRID_WEIGHT = 0.001  # lambda of L_hybrid = L_simple + lambda L_vlb (Nichol & Dhariwal 2021, sec. 3.1)


@dataclass(frozen=True)
class VLBLoss(Loss):
    """L_vlb estimated by one term per example, T L_{t-1} in bits per dimension (Ho et al. 2020, eq. 5;
    Nichol & Dhariwal 2021, sec. 3.1), with the model's learned variance if it has one (else beta-tilde).
    L_0 is the discretized decoder for `levels`-level data, else the Gaussian density. Unbiased for the
    bound (less L_T) under uniform t; an importance sampler of t reweights it (fokker.timesteps)."""

    name: ClassVar[str] = "vlb"
    trains_variance: ClassVar[bool] = True
    levels: int | None = None

    def check(self, denoiser: Denoiser, x0: torch.Tensor) -> None:
        if denoiser.process.T is None:
            raise UserError("the 'vlb' and 'hybrid' losses need a discrete process (process.T steps)")
        check_bound_grid(denoiser.process, "the 'vlb' and 'hybrid' losses", "use simple, dsm, ssm or ism")

    def bound_term(self, denoiser, x0, t64, noise, kw, mean_grad: bool) -> tuple[torch.Tensor, ...]:
        """(T L_{t-1} / (D ln 2) per example, the network's prediction, t): the term of the bound at the grid
        time t = i / T, scaled so that its mean over i uniform on 1..T is the whole bound (less L_T, which
        has no parameters) in bits per dimension."""
        process = denoiser.process
        i = torch.round(t64 * process.T)  # float32 times i / T back onto the grid exactly
        t64, s64 = i / process.T, (i - 1).clamp(min=0) / process.T
        variance = denoiser.reverse_variance(None)
        nats, out = model_step_nll(denoiser, x0, t64, s64, variance, self.levels, noise, kw, mean_grad, clip=False)
        scale = process.T / (x0[0].numel() * math.log(2))
        return (nats * scale).to(x0.dtype), out, t64

    def per_example(self, denoiser, x0, t64, noise, generator, kw) -> torch.Tensor:
        return self.bound_term(denoiser, x0, t64, noise, kw, mean_grad=True)[0]


@dataclass(frozen=True)
class HybridLoss(VLBLoss):
    """L_hybrid = L_simple + lambda L_vlb (Nichol & Dhariwal 2021, eq. 16; lambda = `weight`, 0.001) from
    one network evaluation: L_simple on the prediction, L_vlb (`VLBLoss`) with the mean stopped, so that
    L_vlb trains only the learned variance and L_simple the mean."""

    name: ClassVar[str] = "hybrid"
    weight: float = HYBRID_WEIGHT

    def check(self, denoiser: Denoiser, x0: torch.Tensor) -> None:
        if not denoiser.learned_variance:
            raise UserError("the hybrid loss trains a learned variance: set model.variance: learned")
        super().check(denoiser, x0)

    def per_example(self, denoiser, x0, t64, noise, generator, kw) -> torch.Tensor:
        vlb, out, t64 = self.bound_term(denoiser, x0, t64, noise, kw, mean_grad=False)
        alpha, sigma = scales(denoiser.process, t64, x0)
        return squared_error(out, x0, noise, alpha, sigma, denoiser.prediction) + self.weight * vlb
