"""Training losses, each a small object whose options are its fields (EDM's `EDMLoss`), called as
loss(denoiser, x0, t=..., noise=..., generator=..., model_kwargs=...) with one value per example (a mean
over dimensions) so callers can weight or average them. Times are uniform on the process's training times
and noise standard normal unless given; x_t = alpha x_0 + sigma eps is the process's `q_sample`.

- `SimpleLoss`: L_simple and its x0 / v variants (Ho et al. 2020, eq. 14).
- `DSMLoss`: denoising score matching with lambda(t) = sigma^2 or the likelihood weighting g^2.
- `SSMLoss`: sliced score matching (random probes); `ISMLoss`: implicit (Hyvarinen) score matching with
  the exact Jacobian trace. Both match the model's score to p_t, the noised data.

The three score losses share one scale: each is, up to a constant that does not depend on the model, the
weighted Fisher divergence 1/2 lambda(t) E ||s_theta(x_t, t) - grad log p_t(x_t)||^2 / D (Hyvarinen 2005,
Thm. 1; Vincent 2011; Song & Ermon 2019, eq. 5), so switching between them keeps the gradients' scale.
With lambda = sigma^2, DSM is 1/2 L_simple.
- `VLBLoss`: a one-term estimate of the variational bound L_vlb; `HybridLoss`: L_simple + lambda L_vlb
  with the mean stopped in L_vlb, which trains a learned variance (Nichol & Dhariwal 2021, sec. 3.1).

`LOSS_TYPES` maps each name to its class; `training_loss` builds one by name. The functions `simple_loss`,
`dsm_loss`, ... are one-call spellings of the objects (options and draws as keywords).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import torch

from fokker.denoiser import PREDICTIONS, Denoiser, from_x0_eps, to_x0_eps
from fokker.divergence import MAX_EXACT_DIM, check_probe, divergence, draw_probe
from fokker.errors import UserError
from fokker.processes import Process, expand_as
from fokker.samplers.noise import randn
from fokker.vlb import check_bound_grid, model_step_nll

WEIGHTINGS = ("sigma2", "likelihood")
HYBRID_WEIGHT = 0.001  # lambda of L_hybrid = L_simple + lambda L_vlb (Nichol & Dhariwal 2021, sec. 3.1)
MAX_ISM_DIM = MAX_EXACT_DIM  # the exact trace costs one backward pass per dimension


def _times_and_noise(denoiser: Denoiser, x0: torch.Tensor, t, noise, generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Training times (float64 on the CPU) and noise, drawn (times first) when not given."""
    if t is None:
        t = denoiser.process.sample_time(x0.shape[0], generator, device=x0.device)
    if noise is None:
        noise = randn(x0.shape, generator, device=x0.device, dtype=x0.dtype)
    return denoiser.process.snap(t.double().cpu()), noise


def _scales(process: Process, t64: torch.Tensor, x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """alpha(t) and sigma(t), broadcast against x0."""
    return expand_as(process.alpha(t64), x0), expand_as(process.sigma(t64), x0)


def _squared_error(pred, x0, noise, alpha, sigma, target: str) -> torch.Tensor:
    """|| target - prediction ||^2 per example, averaged over dimensions, the target from (x0, eps)."""
    return (pred - from_x0_eps(x0, noise, alpha, sigma, target)).pow(2).flatten(1).mean(1)


@dataclass(frozen=True)
class Loss:
    """A training loss: its options are its fields; `check` refuses what cannot work before anything is
    drawn, then times t and noise are drawn (when not given) and `per_example` computes the loss."""

    name: ClassVar[str]
    trains_variance: ClassVar[bool] = False  # has a term of the variational bound: trains a learned variance

    def __call__(
        self,
        denoiser: Denoiser,
        x0: torch.Tensor,
        *,
        t: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        model_kwargs: dict | None = None,
    ) -> torch.Tensor:
        self.check(denoiser, x0)
        t64, noise = _times_and_noise(denoiser, x0, t, noise, generator)
        return self.per_example(denoiser, x0, t64, noise, generator, model_kwargs or {})

    def check(self, denoiser: Denoiser, x0: torch.Tensor) -> None:
        """A UserError for an option that does not fit this denoiser or data."""

    def per_example(
        self, denoiser: Denoiser, x0: torch.Tensor, t64: torch.Tensor, noise: torch.Tensor, generator, kw: dict
    ) -> torch.Tensor:
        """The loss per example at times t64 (float64, CPU) with noise eps."""
        raise NotImplementedError  # abstract


@dataclass(frozen=True)
class SimpleLoss(Loss):
    """L_simple family: || target - prediction ||^2 averaged over dimensions, per example, with t uniform on
    the process's training times and x_t = alpha x_0 + sigma eps (Ho et al. 2020, eq. 14).

    `target` is "eps" (L_simple), "x0" or "v" (Salimans & Ho 2022); by default (None) what the denoiser
    predicts. The network's output is converted to the target through Tweedie's formula when the two
    differ, so an eps-network can be trained on an x0 loss and vice versa."""

    name: ClassVar[str] = "simple"
    target: str | None = None

    def check(self, denoiser: Denoiser, x0: torch.Tensor) -> None:
        target = self.target or denoiser.prediction
        if target not in PREDICTIONS or target == "score":
            raise UserError(f"unknown loss target {target!r}; expected 'eps', 'x0' or 'v'")

    def per_example(self, denoiser, x0, t64, noise, generator, kw) -> torch.Tensor:
        target, process = self.target or denoiser.prediction, denoiser.process
        alpha, sigma = _scales(process, t64, x0)
        x_t = process.q_sample(x0, t64, noise)
        out = denoiser.raw(x_t, t64, **kw)
        if target != denoiser.prediction:
            out = from_x0_eps(*to_x0_eps(out, x_t, alpha, sigma, denoiser.prediction), alpha, sigma, target)
        return _squared_error(out, x0, noise, alpha, sigma, target)


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
        alpha, sigma = _scales(process, t64, x0)
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
        alpha, sigma = _scales(denoiser.process, t64, x0)
        return _squared_error(out, x0, noise, alpha, sigma, denoiser.prediction) + self.weight * vlb


LOSS_TYPES: dict[str, type[Loss]] = {
    cls.name: cls for cls in (SimpleLoss, DSMLoss, SSMLoss, ISMLoss, VLBLoss, HybridLoss)
}  # name -> class
LOSSES = tuple(LOSS_TYPES)
BOUND_LOSSES = tuple(name for name, cls in LOSS_TYPES.items() if cls.trains_variance)


def training_loss(
    name: str,
    weighting: str = "sigma2",
    target: str | None = None,
    levels: int | None = None,
    hybrid_weight: float = HYBRID_WEIGHT,
) -> Loss:
    """The loss `fokker train` optimises, by name (LOSS_TYPES): "simple" (L_simple with `target`), "dsm",
    "ssm" or "ism" (with `weighting`), "vlb" or "hybrid" (with the data's `levels` for the decoder; hybrid
    with `hybrid_weight`); each takes the options among these that are its fields."""
    if name not in LOSSES:
        raise UserError(f"unknown loss {name!r}; expected one of {LOSSES}")
    check_weighting(weighting)
    options = {"weighting": weighting, "target": target, "levels": levels, "weight": hybrid_weight}
    cls = LOSS_TYPES[name]
    return cls(**{f.name: options[f.name] for f in fields(cls) if f.name in options})


# One-call spellings: `draws` are the call's keywords t, noise, generator and model_kwargs (see `Loss`).
def simple_loss(denoiser: Denoiser, x0: torch.Tensor, *, target: str | None = None, **draws: Any) -> torch.Tensor:
    """`SimpleLoss(target)(denoiser, x0, **draws)`: L_simple (Ho et al. 2020, eq. 14) and its x0 / v variants."""
    return SimpleLoss(target)(denoiser, x0, **draws)


def dsm_loss(denoiser: Denoiser, x0: torch.Tensor, *, weighting: str = "sigma2", **draws: Any) -> torch.Tensor:
    """`DSMLoss(weighting)(denoiser, x0, **draws)`: denoising score matching (Vincent 2011)."""
    return DSMLoss(weighting)(denoiser, x0, **draws)


def ssm_loss(
    denoiser: Denoiser,
    x0: torch.Tensor,
    *,
    projection: str = "rademacher",
    n_projections: int = 1,
    weighting: str = "sigma2",
    **draws: Any,
) -> torch.Tensor:
    """`SSMLoss(...)(denoiser, x0, **draws)`: sliced score matching (Song et al. 2019, eq. 8)."""
    return SSMLoss(weighting, projection, n_projections)(denoiser, x0, **draws)


def ism_loss(denoiser: Denoiser, x0: torch.Tensor, *, weighting: str = "sigma2", **draws: Any) -> torch.Tensor:
    """`ISMLoss(weighting)(denoiser, x0, **draws)`: implicit score matching (Hyvarinen 2005, Thm. 1)."""
    return ISMLoss(weighting)(denoiser, x0, **draws)


def vlb_loss(denoiser: Denoiser, x0: torch.Tensor, *, levels: int | None = None, **draws: Any) -> torch.Tensor:
    """`VLBLoss(levels)(denoiser, x0, **draws)`: one term of the bound (Ho et al. 2020, eq. 5) in bits/dim."""
    return VLBLoss(levels)(denoiser, x0, **draws)


def hybrid_loss(
    denoiser: Denoiser, x0: torch.Tensor, *, weight: float = HYBRID_WEIGHT, levels: int | None = None, **draws: Any
) -> torch.Tensor:
    """`HybridLoss(levels, weight)(denoiser, x0, **draws)`: L_simple + weight L_vlb (Nichol & Dhariwal 2021)."""
    return HybridLoss(levels, weight)(denoiser, x0, **draws)
