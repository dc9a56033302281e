"""The exact answer inpainting should give on a Gaussian: the conditional of the unknown coordinates given the
known ones, in closed form (the Schur complement; e.g. Bishop 2006, eq. 2.81-2.82), and a distance of fitted
samples to it. The oracle of the tests, the docs and bench/inpaint_vs_diffusers.py."""

from __future__ import annotations

import torch

from fokker.metrics.distances import gaussian_fit, gaussian_kl
from fokker.schedules import F64
from fokker.targets import GaussianTarget


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


def correlated_pairs(pairs: int = 8, rho: float = 0.9, std: float = 0.5) -> GaussianTarget:
    """`pairs` independent 2-D Gaussians (x_i, y_i), each with means (0.2, -0.1), standard deviations `std` and
    correlation `rho`, as one GaussianTarget of 2 pairs coordinates (x_0, y_0, x_1, y_1, ...): the test case of
    inpainting, y given x, whose exact conditional y_i | x_i ~ N(-0.1 + rho (x_i - 0.2), (1 - rho^2) std^2) is
    independent across pairs (so many pairs give many samples of it, in a dimension where pc's corrector works)."""
    block = std**2 * torch.tensor([[1.0, rho], [rho, 1.0]], dtype=F64)
    return GaussianTarget(torch.tensor([0.2, -0.1], dtype=F64).repeat(pairs), torch.block_diag(*[block] * pairs))


def coordinate_kl(samples: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> float:
    """The mean over coordinates of KL(N(m_i, v_i) || N(mean_i, var_i)), (m_i, v_i) the sample mean and variance
    of coordinate i of samples (N, d): the distance to an exact conditional with independent coordinates."""
    x = samples.to(F64)
    ratio = x.var(0) / var.to(F64)
    return float((0.5 * (ratio - 1 - torch.log(ratio)) + 0.5 * (x.mean(0) - mean) ** 2 / var).mean())
