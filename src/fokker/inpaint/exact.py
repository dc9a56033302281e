"""The exact answer inpainting should give on a Gaussian: the conditional of the unknown coordinates given the
known ones, in closed form (the Schur complement; e.g. Bishop 2006, eq. 2.81-2.82), and a distance of fitted
samples to it. The oracle of the tests, the docs and bench/inpaint_vs_diffusers.py."""

from __future__ import annotations

import torch

from fokker.metrics.distances import gaussian_fit, gaussian_kl
from fokker.schedules import F64


def conditional_gaussian(
    mean: torch.Tensor, cov: torch.Tensor, known: torch.Tensor, values: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and covariance of x_U given x_K = values[K] for x ~ N(mean, cov), K the coordinates where the bool
    `known` (D,) is True and U the others: mu_U + S_UK S_KK^-1 (x_K - mu_K), S_UU - S_UK S_KK^-1 S_KU."""
    mean, cov, values, k = mean.to(F64), cov.to(F64), values.to(F64), known.bool()
    u = ~k
    gain = torch.linalg.solve(cov[k][:, k], cov[k][:, u]).T  # S_UK S_KK^-1
    return mean[u] + gain @ (values[k] - mean[k]), cov[u][:, u] - gain @ cov[k][:, u]


def rotated_gaussian(
    mean: torch.Tensor, cov: torch.Tensor, basis: torch.Tensor, channels: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """N(mean, cov) over x = (C, P) flattened channel-major (C channels of P pixels) mapped by u = B x per pixel,
    B (C, C) orthogonal: N(R mean, R cov R^T) with R = B (x) I_P."""
    rotation = torch.kron(basis.to(F64), torch.eye(mean.numel() // channels, dtype=F64))
    return rotation @ mean.to(F64), rotation @ cov.to(F64) @ rotation.T


def conditional_error(samples: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> dict[str, float]:
    """How far samples (N, d) of the unknown coordinates are from their exact conditional N(mean, cov): the KL
    of the Gaussian fitted to them from the exact one, the mean error |m - mean| in units of the conditional's
    scale (its covariance's square root: the Mahalanobis length), and the relative error of the covariance,
    ||C - cov||_F / ||cov||_F."""
    fit_mean, fit_cov = gaussian_fit(samples)
    diff = (fit_mean - mean.to(F64)).unsqueeze(-1)
    return {
        "kl": gaussian_kl(fit_mean, fit_cov, mean, cov),
        "mean": float((diff.T @ torch.linalg.solve(cov.to(F64), diff)).sqrt()),
        "cov": float(torch.linalg.matrix_norm(fit_cov - cov) / torch.linalg.matrix_norm(cov.to(F64))),
    }
