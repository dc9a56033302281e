"""Score matching on p_t, the noised data: denoising (`DSMLoss`), sliced (`SSMLoss`) and implicit
(`ISMLoss`), all on the scale of the weighted Fisher divergence 1/2 lambda(t) E ||s_theta - grad log p_t||^2 / D
up to a constant in the model (Hyvarinen 2005, Thm. 1; Vincent 2011; Song & Ermon 2019, eq. 5)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from fokker.denoiser import Denoiser, to_x0_eps
from fokker.divergence import MAX_EXACT_DIM, check_probe, divergence, draw_probe
from fokker.errors import UserError
from fokker.losses.base import Loss, SimpleLoss, scales
from fokker.processes import Process

WEIGHTINGS = ("sigma2", "likelihood")
MAX_ISM_DIM = MAX_EXACT_DIM  # the exact trace costs one backward pass per dimension


def check_weighting(weighting: str) -> None:
    """A UserError unless `weighting` is one of WEIGHTINGS."""
    if weighting not in WEIGHTINGS:
        raise UserError(f"unknown weighting {weighting!r}; expected one of {WEIGHTINGS}")


def score_weight(process: Process, t: torch.Tensor, weighting: str) -> torch.Tensor:
    """lambda(t) of a score-matching loss: sigma(t)^2 ("sigma2", Song & Ermon 2019; Song et al. 2021,
    eq. 7) or g(t)^2 ("likelihood", Song et al. 2021b: the DSM loss is then a bound on the NLL)."""
    check_weighting(weighting)
    return process.sigma(t) ** 2 if weighting == "sigma2" else process.diffusion(t) ** 2


@dataclass(frozen=True)
class DSMLoss(Loss):
    """Denoising score matching 1/2 lambda(t) || s_theta(x_t, t) + eps / sigma(t) ||^2, mean over dimensions
    (Vincent 2011; Song & Ermon 2019, eq. 5; Song et al. 2021, eq. 7): the Fisher divergence of the module
    docstring up to a constant. With s_theta = -eps_hat / sigma it is lambda / (2 sigma^2) || eps_hat - eps ||^2,
    so lambda = sigma^2 gives NCSN's weighting (Song & Ermon 2019, sec. 4.2), which is 1/2 L_simple; on a
    discrete VE process the times are its geometric sigma ladder."""

    name: ClassVar[str] = "dsm"
    weighting: str = "sigma2"

    def check(self, denoiser: Denoiser, x0: torch.Tensor) -> None:
        check_weighting(self.weighting)

    def per_example(self, denoiser, x0, t64, noise, generator, kw) -> torch.Tensor:
        process = denoiser.process
        weight = (0.5 * score_weight(process, t64, self.weighting) / process.sigma(t64) ** 2).to(x0)
        return weight * SimpleLoss("eps").per_example(denoiser, x0, t64, noise, generator, kw)


@dataclass(frozen=True)
class _ScoreMatching(Loss):
    """lambda(t) [tr(grad_x s_theta) + ||s_theta||^2 / 2] / D per example, Hyvarinen's objective (2005,
    Thm. 1) on p_t: 1/2 lambda(t) E ||s_theta - grad log p_t||^2 / D less a constant, the scale DSM shares.
    Subclasses give the trace."""

    weighting: str = "sigma2"

    def check(self, denoiser: Denoiser, x0: torch.Tensor) -> None:
        check_weighting(self.weighting)

    def trace(self, score: torch.Tensor, x_t: torch.Tensor, x0: torch.Tensor, generator) -> torch.Tensor:
        """tr(grad_x s_theta) per example at x_t, differentiable (probes drawn shaped like x0)."""
        raise NotImplementedError  # abstract

    def per_example(self, denoiser, x0, t64, noise, generator, kw) -> torch.Tensor:
        process = denoiser.process
        alpha, sigma = scales(process, t64, x0)
        x_t = process.q_sample(x0, t64, noise).detach().requires_grad_(True)
        score = -to_x0_eps(denoiser.raw(x_t, t64, **kw), x_t, alpha, sigma, denoiser.prediction)[1] / sigma
        trace = self.trace(score, x_t, x0, generator)
        weight = score_weight(process, t64, self.weighting).to(score)
        return weight * (trace + 0.5 * score.flatten(1).pow(2).sum(1)) / score[0].numel()


@dataclass(frozen=True)
class SSMLoss(_ScoreMatching):
    """Sliced score matching on p_t (Song et al. 2019, eq. 8, the variance-reduced form):
    lambda(t) [probe' grad_x(probe' s_theta) + ||s_theta||^2 / 2] / D with a Rademacher or Gaussian
    `projection` probe (E[probe probe'] = I, so the slice is an unbiased estimate of the trace of
    grad_x s_theta), averaged over `n_projections`. Its minimiser is the score of p_t, like `ISMLoss`;
    one extra backward pass per projection."""

    name: ClassVar[str] = "ssm"
    projection: str = "rademacher"
    n_projections: int = 1

    def check(self, denoiser: Denoiser, x0: torch.Tensor) -> None:
        check_probe(self.projection, "projection")
        if self.n_projections < 1:
            raise UserError(f"n_projections must be at least 1, got {self.n_projections}")

    def trace(self, score: torch.Tensor, x_t: torch.Tensor, x0: torch.Tensor, generator) -> torch.Tensor:
        total = 0.0
        for _ in range(self.n_projections):
            probe = draw_probe(x0, self.projection, generator)
            total = total + divergence(score, x_t, probe, create_graph=True) / self.n_projections
        return total


@dataclass(frozen=True)
class ISMLoss(_ScoreMatching):
    """Implicit score matching on p_t (Hyvarinen 2005, Thm. 1): lambda(t) [tr(grad_x s_theta) +
    ||s_theta||^2 / 2] / D, the trace exact by one backward pass per dimension (so D <= 256)."""

    name: ClassVar[str] = "ism"

    def check(self, denoiser: Denoiser, x0: torch.Tensor) -> None:
        dim = x0[0].numel()
        if dim > MAX_ISM_DIM:
            raise UserError(f"implicit score matching needs D backward passes; D = {dim} > {MAX_ISM_DIM}, use 'ssm'")

    def trace(self, score: torch.Tensor, x_t: torch.Tensor, x0: torch.Tensor, generator) -> torch.Tensor:
        return divergence(score, x_t, None, create_graph=True)
