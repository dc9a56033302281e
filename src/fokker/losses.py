"""Training losses. Each returns one value per example (a mean over dimensions) so callers can weight
or average them. Times are uniform on the process's training times unless given.

- `simple_loss`: L_simple and its x0 / v variants (Ho et al. 2020, eq. 14).
- `dsm_loss`: denoising score matching with lambda(t) = sigma^2 or the likelihood weighting g^2.
- `ssm_loss`: sliced score matching (random projections); `ism_loss`: implicit (Hyvarinen) score
  matching with the exact Jacobian trace. Both match the model's score to p_t, the noised data.

The three score losses share one scale: each is, up to a constant that does not depend on the model, the
weighted Fisher divergence 1/2 lambda(t) E ||s_theta(x_t, t) - grad log p_t(x_t)||^2 / D (notes 002,
eqs. 1.7.8-1.7.13; Vincent 2011; Song & Ermon 2019, eq. 5), so switching between them keeps the
gradients' scale. With lambda = sigma^2, DSM is 1/2 L_simple.
- `vlb_loss`: a one-term estimate of the variational bound L_vlb; `hybrid_loss`: L_simple + lambda L_vlb
  with the mean stopped in L_vlb, which trains a learned variance (Nichol & Dhariwal 2021, sec. 3.1).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from fokker.denoiser import PREDICTIONS, Denoiser, from_x0_eps, to_x0_eps
from fokker.errors import UserError
from fokker.noise import randn
from fokker.processes import Process, expand_as
from fokker.vlb import check_bound_grid, model_step_nll

WEIGHTINGS = ("sigma2", "likelihood")
PROJECTIONS = ("rademacher", "gaussian")
LOSSES = ("simple", "dsm", "ssm", "ism", "vlb", "hybrid")
BOUND_LOSSES = ("vlb", "hybrid")  # with a term of the variational bound: they train a learned variance v
HYBRID_WEIGHT = 0.001  # lambda of L_hybrid = L_simple + lambda L_vlb (Nichol & Dhariwal 2021, sec. 3.1)
MAX_ISM_DIM = 256  # the exact trace costs one backward pass per dimension


def _times_and_noise(denoiser: Denoiser, x0: torch.Tensor, t, noise, generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Training times (float64 on the CPU) and noise, drawn when not given."""
    if t is None:
        t = denoiser.process.sample_time(x0.shape[0], generator, device=x0.device)
    if noise is None:
        noise = randn(x0.shape, generator, device=x0.device, dtype=x0.dtype)
    return denoiser.process.snap(t.double().cpu()), noise


def simple_loss(
    denoiser: Denoiser,
    x0: torch.Tensor,
    *,
    target: str | None = None,
    t: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    model_kwargs: dict | None = None,
) -> torch.Tensor:
    """L_simple family: || target - prediction ||^2 averaged over dimensions, per example, with
    t uniform on the process's training times and x_t = alpha x_0 + sigma eps (Ho et al. 2020, eq. 14).

    `target` is "eps" (L_simple), "x0" or "v" (Salimans & Ho 2022); by default what the denoiser
    predicts. The network's output is converted to the target through Tweedie's formula when the
    two differ, so an eps-network can be trained on an x0 loss and vice versa."""
    target = target or denoiser.prediction
    if target not in PREDICTIONS or target == "score":
        raise UserError(f"unknown loss target {target!r}; expected 'eps', 'x0' or 'v'")
    process = denoiser.process
    t64, noise = _times_and_noise(denoiser, x0, t, noise, generator)
    alpha, sigma = expand_as(process.alpha(t64), x0), expand_as(process.sigma(t64), x0)
    x_t = alpha * x0 + sigma * noise
    out = denoiser.raw(x_t, t64, **(model_kwargs or {}))
    if target == denoiser.prediction:
        pred = out
    else:
        pred = from_x0_eps(*to_x0_eps(out, x_t, alpha, sigma, denoiser.prediction), alpha, sigma, target)
    true = from_x0_eps(x0, noise, alpha, sigma, target)
    return (pred - true).pow(2).flatten(1).mean(1)


def check_weighting(weighting: str) -> None:
    """A UserError unless `weighting` is one of WEIGHTINGS."""
    if weighting not in WEIGHTINGS:
        raise UserError(f"unknown weighting {weighting!r}; expected one of {WEIGHTINGS}")


def score_weight(process: Process, t: torch.Tensor, weighting: str) -> torch.Tensor:
    """lambda(t) of a score-matching loss: sigma(t)^2 ("sigma2", Song & Ermon 2019; Song et al. 2021,
    eq. 7) or g(t)^2 ("likelihood", Song et al. 2021b: the DSM loss is then a bound on the NLL)."""
    check_weighting(weighting)
    return process.sigma(t) ** 2 if weighting == "sigma2" else process.diffusion(t) ** 2


def dsm_loss(
    denoiser: Denoiser,
    x0: torch.Tensor,
    *,
    weighting: str = "sigma2",
    t: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    model_kwargs: dict | None = None,
) -> torch.Tensor:
    """Denoising score matching 1/2 lambda(t) || s_theta(x_t, t) + eps / sigma(t) ||^2, mean over dimensions
    (notes 002, eq. 1.7.13; Vincent 2011; Song & Ermon 2019, eq. 5; Song et al. 2021, eq. 7): the Fisher
    divergence of the module docstring up to a constant. With s_theta = -eps_hat / sigma it is
    lambda / (2 sigma^2) || eps_hat - eps ||^2, so lambda = sigma^2 gives NCSN's loss (eq. 1.7.14), which
    is 1/2 L_simple; on a discrete VE process the times are its geometric sigma ladder."""
    t64, noise = _times_and_noise(denoiser, x0, t, noise, generator)
    process = denoiser.process
    weight = (0.5 * score_weight(process, t64, weighting) / process.sigma(t64) ** 2).to(x0)
    return weight * simple_loss(denoiser, x0, target="eps", t=t64, noise=noise, model_kwargs=model_kwargs)


def _noised_score(
    denoiser: Denoiser, x0: torch.Tensor, t, noise, generator, model_kwargs
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_t with requires_grad, the model's score at x_t, t) for the score-matching losses on p_t."""
    process = denoiser.process
    t64, noise = _times_and_noise(denoiser, x0, t, noise, generator)
    alpha, sigma = expand_as(process.alpha(t64), x0), expand_as(process.sigma(t64), x0)
    x_t = (alpha * x0 + sigma * noise).detach().requires_grad_(True)
    out = denoiser.raw(x_t, t64, **(model_kwargs or {}))
    return x_t, -to_x0_eps(out, x_t, alpha, sigma, denoiser.prediction)[1] / sigma, t64


def ssm_loss(
    denoiser: Denoiser,
    x0: torch.Tensor,
    *,
    projection: str = "rademacher",
    n_projections: int = 1,
    weighting: str = "sigma2",
    t: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    model_kwargs: dict | None = None,
) -> torch.Tensor:
    """Sliced score matching on p_t (Song et al. 2019, eq. 8, the variance-reduced form):
    lambda(t) [v' grad_x(v' s_theta) + ||s_theta||^2 / 2] / D with v Rademacher or Gaussian (E[v v'] = I,
    so the slice is an unbiased estimate of the trace of grad_x s_theta), averaged over n_projections.
    Its minimiser is the score of p_t, like `ism_loss`; one extra backward pass per projection."""
    if projection not in PROJECTIONS:
        raise UserError(f"unknown projection {projection!r}; expected one of {PROJECTIONS}")
    if n_projections < 1:
        raise UserError(f"n_projections must be at least 1, got {n_projections}")
    x_t, score, t64 = _noised_score(denoiser, x0, t, noise, generator, model_kwargs)
    trace = 0.0
    for _ in range(n_projections):
        v = randn(x0.shape, generator, device=x0.device, dtype=x0.dtype)
        if projection == "rademacher":
            v = v.sign()
        (jv,) = torch.autograd.grad((score * v).sum(), x_t, create_graph=True)  # v' J per example
        trace = trace + (jv * v).flatten(1).sum(1) / n_projections
    return _score_matching(denoiser.process, t64, weighting, trace, score)


def ism_loss(
    denoiser: Denoiser,
    x0: torch.Tensor,
    *,
    weighting: str = "sigma2",
    t: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    model_kwargs: dict | None = None,
) -> torch.Tensor:
    """Implicit score matching on p_t (Hyvarinen 2005, Thm. 1): lambda(t) [tr(grad_x s_theta) +
    ||s_theta||^2 / 2] / D, the trace exact by one backward pass per dimension (so D <= 256)."""
    dim = x0[0].numel()
    if dim > MAX_ISM_DIM:
        raise UserError(f"implicit score matching needs D backward passes; D = {dim} > {MAX_ISM_DIM}, use 'ssm'")
    x_t, score, t64 = _noised_score(denoiser, x0, t, noise, generator, model_kwargs)
    flat = score.flatten(1)
    trace = 0.0
    for i in range(dim):
        (row,) = torch.autograd.grad(flat[:, i].sum(), x_t, create_graph=True)
        trace = trace + row.flatten(1)[:, i]
    return _score_matching(denoiser.process, t64, weighting, trace, score)


def _score_matching(process: Process, t64: torch.Tensor, weighting: str, trace, score: torch.Tensor) -> torch.Tensor:
    """lambda(t) [tr(J) + ||s||^2 / 2] / D per example: Hyvarinen's objective (2005, Thm. 1), which is
    1/2 lambda(t) E ||s - grad log p_t||^2 / D less a constant, the scale `dsm_loss` shares."""
    weight = score_weight(process, t64, weighting).to(score)
    return weight * (trace + 0.5 * score.flatten(1).pow(2).sum(1)) / score[0].numel()


def _vlb_and_prediction(
    denoiser: Denoiser, x0: torch.Tensor, t, noise, generator, model_kwargs, levels: int | None, mean_grad: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(T L_{t-1} / (D ln 2) per example, the network's prediction, t, noise): the term of the bound at a
    grid time t = i / T, i uniform on 1..T, scaled so that its mean over t is the whole bound (less L_T,
    which has no parameters) in bits per dimension."""
    process = denoiser.process
    if process.T is None:
        raise UserError("the 'vlb' and 'hybrid' losses need a discrete process (process.T steps)")
    check_bound_grid(process, "the 'vlb' and 'hybrid' losses", "use simple, dsm, ssm or ism")
    t64, noise = _times_and_noise(denoiser, x0, t, noise, generator)
    i = torch.round(t64 * process.T)  # float32 times i / T back onto the grid exactly
    t64, s64 = i / process.T, (i - 1).clamp(min=0) / process.T
    variance = denoiser.reverse_variance(None)
    kw = model_kwargs or {}
    nats, out = model_step_nll(denoiser, x0, t64, s64, variance, levels, noise, kw, mean_grad, clip=False)
    scale = process.T / (x0[0].numel() * math.log(2))
    return (nats * scale).to(x0.dtype), out, t64, noise


def vlb_loss(
    denoiser: Denoiser,
    x0: torch.Tensor,
    *,
    levels: int | None = None,
    t: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    model_kwargs: dict | None = None,
) -> torch.Tensor:
    """L_vlb estimated by one term per example, T L_{t-1} in bits per dimension (Ho et al. 2020, eq. 5;
    Nichol & Dhariwal 2021, sec. 3.1), with the model's learned variance if it has one (else beta-tilde).
    L_0 is the discretized decoder for `levels`-level data, else the Gaussian density. Unbiased for the
    bound (less L_T) under uniform t; an importance sampler of t reweights it (fokker.timesteps)."""
    return _vlb_and_prediction(denoiser, x0, t, noise, generator, model_kwargs, levels, mean_grad=True)[0]


def hybrid_loss(
    denoiser: Denoiser,
    x0: torch.Tensor,
    *,
    weight: float = HYBRID_WEIGHT,
    levels: int | None = None,
    t: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    model_kwargs: dict | None = None,
) -> torch.Tensor:
    """L_hybrid = L_simple + lambda L_vlb (Nichol & Dhariwal 2021, eq. 16, lambda = 0.001) from one network
    evaluation: L_simple on the prediction, L_vlb (`vlb_loss`) with the mean stopped, so that L_vlb trains
    only the learned variance and L_simple the mean."""
    if not denoiser.learned_variance:
        raise UserError("the hybrid loss trains a learned variance: set model.variance: learned")
    vlb, out, t64, noise = _vlb_and_prediction(denoiser, x0, t, noise, generator, model_kwargs, levels, mean_grad=False)
    alpha, sigma = expand_as(denoiser.process.alpha(t64), x0), expand_as(denoiser.process.sigma(t64), x0)
    true = from_x0_eps(x0, noise, alpha, sigma, denoiser.prediction)
    return (out - true).pow(2).flatten(1).mean(1) + weight * vlb


def training_loss(
    name: str,
    weighting: str = "sigma2",
    target: str | None = None,
    levels: int | None = None,
    hybrid_weight: float = HYBRID_WEIGHT,
) -> Callable[..., torch.Tensor]:
    """The loss `fokker train` optimises: "simple" (L_simple with `target`), "dsm", "ssm" or "ism" (with
    `weighting`), "vlb" or "hybrid" (with the data's `levels` for the decoder); called as
    loss(denoiser, x0, generator=..., t=...)."""
    if name not in LOSSES:
        raise UserError(f"unknown loss {name!r}; expected one of {LOSSES}")
    check_weighting(weighting)
    if name == "simple":
        return lambda denoiser, x0, **kw: simple_loss(denoiser, x0, target=target, **kw)
    if name == "vlb":
        return lambda denoiser, x0, **kw: vlb_loss(denoiser, x0, levels=levels, **kw)
    if name == "hybrid":
        return lambda denoiser, x0, **kw: hybrid_loss(denoiser, x0, weight=hybrid_weight, levels=levels, **kw)
    fn = {"dsm": dsm_loss, "ssm": ssm_loss, "ism": ism_loss}[name]
    return lambda denoiser, x0, **kw: fn(denoiser, x0, weighting=weighting, **kw)
