"""Distances between two sets of samples: Frechet distance of Gaussian fits (FID), kernel MMD (KID for
features, Gaussian kernels for vectors), sliced Wasserstein, and the cross-entropy of samples against
a known log-density. Everything is computed in float64."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

F64 = torch.float64


def gaussian_fit(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased covariance of the rows of x, (N, D) -> ((D,), (D, D))."""
    x = x.to(F64).flatten(1)
    if x.shape[0] < 2:
        raise ValueError(f"a covariance needs at least 2 samples, got {x.shape[0]}")
    return x.mean(0), torch.cov(x.T).reshape(x.shape[1], x.shape[1])


def _psd_sqrt(a: torch.Tensor) -> torch.Tensor:
    """Symmetric square root of a symmetric positive semi-definite matrix (negative rounding clipped)."""
    vals, vecs = torch.linalg.eigh((a + a.T) / 2)
    return (vecs * vals.clamp_min(0).sqrt()) @ vecs.T


def frechet_distance(mean1: torch.Tensor, cov1: torch.Tensor, mean2: torch.Tensor, cov2: torch.Tensor) -> float:
    """Squared 2-Wasserstein distance between N(mean1, cov1) and N(mean2, cov2) (Heusel et al. 2017, eq. 6):
    |m1 - m2|^2 + tr(C1) + tr(C2) - 2 tr((C1^1/2 C2 C1^1/2)^1/2), the trace term from eigenvalues."""
    mean1, cov1, mean2, cov2 = (a.to(F64) for a in (mean1, cov1, mean2, cov2))
    root1 = _psd_sqrt(cov1)
    middle = root1 @ cov2 @ root1
    cross = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0).sqrt().sum()
    value = (mean1 - mean2).pow(2).sum() + cov1.trace() + cov2.trace() - 2 * cross
    return float(value.clamp_min(0))


def fid(features1: torch.Tensor, features2: torch.Tensor) -> float:
    """Frechet distance between Gaussian fits of two feature sets (N1, D), (N2, D)."""
    return frechet_distance(*gaussian_fit(features1), *gaussian_fit(features2))


def mmd2_unbiased(kxx: torch.Tensor, kyy: torch.Tensor, kxy: torch.Tensor) -> torch.Tensor:
    """Unbiased estimate of MMD^2 from kernel matrices (Gretton et al. 2012, eq. 3): off-diagonal means of
    k(x, x') and k(y, y') minus twice the mean of k(x, y). Its expectation is 0 when p = q."""
    m, n = kxx.shape[0], kyy.shape[0]
    xx = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
    yy = (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
    return xx + yy - 2 * kxy.mean()


def kid(
    features1: torch.Tensor,
    features2: torch.Tensor,
    *,
    subsets: int = 50,
    subset_size: int = 1000,
    generator: torch.Generator | None = None,
) -> tuple[float, float]:
    """Kernel Inception Distance (Binkowski et al. 2018): unbiased MMD^2 with the cubic polynomial kernel
    k(x, y) = (x.y / D + 1)^3, averaged over random subsets; returns (mean, standard deviation over subsets)."""
    x, y = features1.to(F64).flatten(1), features2.to(F64).flatten(1)
    size = min(subset_size, x.shape[0], y.shape[0])
    if size < 2:
        raise ValueError("KID needs at least 2 samples in each set")

    def kernel(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return (u @ v.T / x.shape[1] + 1) ** 3

    values = []
    for _ in range(subsets):
        a = x[torch.randperm(x.shape[0], generator=generator)[:size]]
        b = y[torch.randperm(y.shape[0], generator=generator)[:size]]
        values.append(mmd2_unbiased(kernel(a, a), kernel(b, b), kernel(a, b)))
    values = torch.stack(values)
    return float(values.mean()), float(values.std()) if subsets > 1 else 0.0


def mmd(x: torch.Tensor, y: torch.Tensor, bandwidths: Sequence[float] = (0.05, 0.1, 0.2, 0.5, 1.0)) -> float:
    """Unbiased MMD^2 with a sum of Gaussian kernels exp(-|x - y|^2 / (2 h^2)) over the bandwidths h."""
    x, y = x.to(F64).flatten(1), y.to(F64).flatten(1)

    def kernel(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        d2 = torch.cdist(u, v).pow(2)
        return sum(torch.exp(-d2 / (2 * h**2)) for h in bandwidths)

    return float(mmd2_unbiased(kernel(x, x), kernel(y, y), kernel(x, y)))


def sliced_wasserstein(
    x: torch.Tensor, y: torch.Tensor, *, projections: int = 256, generator: torch.Generator | None = None
) -> float:
    """Sliced 2-Wasserstein distance: the root mean, over random unit directions, of the squared 1-D W2
    distance between the projections (the mean squared gap of their quantile functions; sorted values
    when both sets have the same size, quantiles at (i + 1/2) / m otherwise)."""
    x, y = x.to(F64).flatten(1), y.to(F64).flatten(1)
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    d = torch.randn(x.shape[1], projections, generator=generator, dtype=F64)
    d /= d.norm(dim=0, keepdim=True)
    px, py = (x @ d).sort(dim=0).values, (y @ d).sort(dim=0).values
    if px.shape[0] != py.shape[0]:
        m = min(px.shape[0], py.shape[0])
        levels = (torch.arange(m, dtype=F64) + 0.5) / m
        px, py = torch.quantile(px, levels, dim=0), torch.quantile(py, levels, dim=0)
    return float(((px - py) ** 2).mean().sqrt())


def cross_entropy(samples: torch.Tensor, log_prob: Callable[[torch.Tensor], torch.Tensor]) -> tuple[float, float]:
    """Cross-entropy H(q, p) = -E_q[log p(x)] = H(q) + KL(q || p) of samples from q against a known density
    p, in nats, with its standard error. It equals the entropy of p when q = p."""
    nll = -log_prob(samples.to(F64)).to(F64)
    return float(nll.mean()), float(nll.std() / nll.numel() ** 0.5)


def gaussian_kl(mean1: torch.Tensor, cov1: torch.Tensor, mean2: torch.Tensor, cov2: torch.Tensor) -> float:
    """KL(N(mean1, cov1) || N(mean2, cov2)) = (tr(C2^-1 C1) + d' C2^-1 d - D + log det C2 - log det C1) / 2,
    d = mean2 - mean1."""
    mean1, cov1, mean2, cov2 = (a.to(F64) for a in (mean1, cov1, mean2, cov2))
    inv = torch.linalg.inv(cov2)
    d = mean2 - mean1
    value = torch.trace(inv @ cov1) + d @ inv @ d - mean1.numel() + torch.logdet(cov2) - torch.logdet(cov1)
    return float(value / 2)
