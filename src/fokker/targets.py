"""Analytic targets: data distributions whose noised marginals p_t are known in closed form.

Under x_t = alpha x_0 + sigma eps, a Gaussian N(mu, S) becomes N(alpha mu, alpha^2 S + sigma^2 I) and a
mixture of Gaussians stays a mixture with the same weights, so scores, E[x_0 | x_t] and log-densities
are exact. They are the oracles of the tests and the benchmarks, and `exact_denoiser` turns a target
into a Denoiser that predicts eps exactly (eps = -sigma grad log p_t)."""

from __future__ import annotations

import math

import torch

from fokker.denoiser import Denoiser, from_x0_eps
from fokker.processes import Process
from fokker.schedules import F64


def _coefs(process: Process, t: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """alpha(t), sigma(t) as (B, 1) columns, or (1, 1) when every example shares one time."""
    t = torch.as_tensor(t, dtype=F64).reshape(-1)
    if t.numel() > 1 and bool((t == t[0]).all()):
        t = t[:1]
    return (process.alpha(t).to(like).unsqueeze(-1), process.sigma(t).to(like).unsqueeze(-1))


class GaussianTarget:
    """N(mean, cov) in D dimensions (cov symmetric positive definite)."""

    def __init__(self, mean: torch.Tensor, cov: torch.Tensor):
        self.mean, self.cov = mean.to(F64), cov.to(F64)
        self.dim = self.mean.numel()
        self.eigvals, self.eigvecs = torch.linalg.eigh(self.cov)

    @classmethod
    def anisotropic(cls, dim: int = 8, seed: int = 0) -> GaussianTarget:
        """A rotated Gaussian with variances spread log-uniformly over [0.02, 1] and a non-zero mean."""
        g = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=F64))
        var = torch.logspace(math.log10(0.02), 0, dim, dtype=F64)
        return cls(0.5 * torch.rand(dim, generator=g, dtype=F64) - 0.25, q @ torch.diag(var) @ q.T)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        z = torch.randn(n, self.dim, generator=generator, dtype=F64)
        return self.mean + (z * self.eigvals.sqrt()) @ self.eigvecs.T

    def _noised(self, x: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor):
        """(x - alpha mu) in the eigenbasis and the noised variances alpha^2 lambda + sigma^2."""
        z = (x.to(F64) - alpha * self.mean) @ self.eigvecs
        return z, alpha**2 * self.eigvals + sigma**2

    def log_prob_t(self, x: torch.Tensor, t: torch.Tensor | float, process: Process) -> torch.Tensor:
        """log p_t(x), p_t = N(alpha mu, alpha^2 S + sigma^2 I)."""
        alpha, sigma = _coefs(process, t, x.to(F64))
        z, var = self._noised(x, alpha, sigma)
        return -0.5 * ((z**2 / var).sum(-1) + torch.log(2 * math.pi * var).sum(-1))

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p_0(x)."""
        z = (x.to(F64) - self.mean) @ self.eigvecs
        return -0.5 * ((z**2 / self.eigvals).sum(-1) + torch.log(2 * math.pi * self.eigvals).sum(-1))

    def score(self, x: torch.Tensor, t: torch.Tensor | float, process: Process) -> torch.Tensor:
        """grad log p_t(x) = -(alpha^2 S + sigma^2 I)^{-1} (x - alpha mu)."""
        alpha, sigma = _coefs(process, t, x.to(F64))
        z, var = self._noised(x, alpha, sigma)
        return (-(z / var) @ self.eigvecs.T).to(x.dtype)

    def posterior_mean(self, x: torch.Tensor, t: torch.Tensor | float, process: Process) -> torch.Tensor:
        """E[x_0 | x_t = x] = mu + alpha S (alpha^2 S + sigma^2 I)^{-1} (x - alpha mu)."""
        alpha, sigma = _coefs(process, t, x.to(F64))
        z, var = self._noised(x, alpha, sigma)
        return (self.mean + (alpha * self.eigvals * z / var) @ self.eigvecs.T).to(x.dtype)

    def flow(self, x: torch.Tensor, t: float, s: float, process: Process) -> torch.Tensor:
        """The probability-flow ODE (Song et al. 2021, eq. 13) solved exactly from x_t = x to time s: for
        Gaussian data each eigen-direction of x - alpha mu scales by the ratio of the marginal stds,
        sqrt(alpha_s^2 lambda + sigma_s^2) / sqrt(alpha_t^2 lambda + sigma_t^2)."""
        a_t, s_t = _coefs(process, t, x.to(F64))
        a_s, s_s = _coefs(process, s, x.to(F64))
        z, var_t = self._noised(x, a_t, s_t)
        var_s = a_s**2 * self.eigvals + s_s**2
        return (a_s * self.mean + (z * (var_s / var_t).sqrt()) @ self.eigvecs.T).to(x.dtype)


class GaussianMixture:
    """sum_k w_k N(mu_k, s_k^2 I): isotropic components, exact noised responsibilities."""

    def __init__(self, weights: torch.Tensor, means: torch.Tensor, stds: torch.Tensor):
        self.weights = (weights / weights.sum()).to(F64)
        self.means, self.stds = means.to(F64), stds.to(F64)
        self.dim = self.means.shape[1]

    @classmethod
    def unequal_2d(cls) -> GaussianMixture:
        """Three separated 2-D modes with weights 0.2, 0.5, 0.3 inside [-1, 1]^2."""
        return cls(
            torch.tensor([0.2, 0.5, 0.3]),
            torch.tensor([[-0.6, -0.5], [0.6, -0.4], [0.0, 0.6]]),
            torch.tensor([0.08, 0.12, 0.1]),
        )

    @classmethod
    def ring(cls, modes: int = 11, radius: float = 0.8, std: float = 0.05) -> GaussianMixture:
        """`modes` 2-D modes evenly around a circle of `radius`, weights rising linearly from 1 to 2 around it
        (normalised), so that a sampler's mode-weight errors show; neighbours 2 radius sin(pi / modes) apart."""
        angle = 2 * math.pi * torch.arange(modes, dtype=F64) / modes
        means = radius * torch.stack([angle.cos(), angle.sin()], 1)
        return cls(torch.linspace(1, 2, modes, dtype=F64), means, torch.full((modes,), std, dtype=F64))

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=F64)
        return self.means[k] + self.stds[k, None] * z

    def _components(self, x: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor):
        """Per-component (x - alpha mu_k), variance v_k and log(w_k N(x; alpha mu_k, v_k I))."""
        diff = x.to(F64)[:, None, :] - alpha[:, None] * self.means  # (B, K, D)
        var = alpha**2 * self.stds**2 + sigma**2  # (B or 1, K)
        logn = -0.5 * (diff.pow(2).sum(-1) / var + self.dim * torch.log(2 * math.pi * var))
        return diff, var, torch.log(self.weights) + logn

    def log_prob_t(self, x: torch.Tensor, t: torch.Tensor | float, process: Process) -> torch.Tensor:
        alpha, sigma = _coefs(process, t, x.to(F64))
        return torch.logsumexp(self._components(x, alpha, sigma)[2], -1)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        one, zero = torch.ones(x.shape[0], 1, dtype=F64), torch.zeros(x.shape[0], 1, dtype=F64)
        return torch.logsumexp(self._components(x, one, zero)[2], -1)

    def responsibilities(self, x: torch.Tensor, t: torch.Tensor | float, process: Process) -> torch.Tensor:
        alpha, sigma = _coefs(process, t, x.to(F64))
        return torch.softmax(self._components(x, alpha, sigma)[2], -1)

    def score(self, x: torch.Tensor, t: torch.Tensor | float, process: Process) -> torch.Tensor:
        """grad log p_t(x) = -sum_k r_k(x) (x - alpha mu_k) / v_k."""
        alpha, sigma = _coefs(process, t, x.to(F64))
        diff, var, logw = self._components(x, alpha, sigma)
        r = torch.softmax(logw, -1)
        return (-(r / var)[..., None] * diff).sum(1).to(x.dtype)

    def assign(self, x: torch.Tensor) -> torch.Tensor:
        """Index of the most responsible component of each data point (at t = 0)."""
        one, zero = torch.ones(x.shape[0], 1, dtype=F64), torch.zeros(x.shape[0], 1, dtype=F64)
        return self._components(x, one, zero)[2].argmax(-1)


def exact_denoiser(
    target: GaussianTarget | GaussianMixture, process: Process, prediction: str = "eps", **kwargs
) -> Denoiser:
    """A Denoiser whose fn returns the exact eps = -sigma(t) grad log p_t(x) of `target`, or the exact x0, v or
    score of the same model for another `prediction` (fokker.denoiser.from_x0_eps; fn gets the time t)."""

    def eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return -_coefs(process, t, x)[1] * target.score(x, t, process)

    def other(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        alpha, sigma = _coefs(process, t, x)
        e = eps(x, t)
        return from_x0_eps((x - sigma * e) / alpha, e, alpha, sigma, prediction)

    return Denoiser(eps if prediction == "eps" else other, process, prediction=prediction, **kwargs)


def class_denoiser(mixture: GaussianMixture, process: Process, **kwargs) -> Denoiser:
    """A class-conditional Denoiser with one class per component of `mixture`: fn(x, t, y) returns the exact
    eps = -sigma grad log p_t(x | y) of component y, and that of the whole mixture for the null class K
    (and for y None), as a network trained with label dropout would (fokker.labels)."""
    k = len(mixture.weights)

    def eps(x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        alpha, sigma = _coefs(process, t, x.to(F64))
        diff, var, logw = mixture._components(x, alpha, sigma)
        scores = -diff / var[..., None]  # (B, K, D): each component's noised score
        marginal = (torch.softmax(logw, -1)[..., None] * scores).sum(1)
        if y is None:
            return (-sigma * marginal).to(x.dtype)
        y = torch.as_tensor(y, device=x.device).expand(x.shape[0])
        chosen = scores[torch.arange(x.shape[0]), y.clamp(max=k - 1)]
        return (-sigma * torch.where((y == k)[:, None], marginal, chosen)).to(x.dtype)

    return Denoiser(eps, process, prediction="eps", num_classes=k, **kwargs)


class ExactClassifier:
    """The exact noise-conditional classifier of a mixture with one class per component: log p_t(y | x), the
    log responsibilities of the noised components (fokker.guidance.Classifier)."""

    def __init__(self, mixture: GaussianMixture, process: Process) -> None:
        self.mixture, self.process = mixture, process

    def log_probs(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        alpha, sigma = _coefs(self.process, t, x.to(F64))
        return torch.log_softmax(self.mixture._components(x, alpha, sigma)[2], -1).to(x.dtype)
