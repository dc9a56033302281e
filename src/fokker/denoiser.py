"""The Denoiser: any callable fn(x, t) plus a process plus what fn predicts.

Tweedie's formula ties the four things a network may predict (Efron 2011; Song et al. 2021, eq. 13;
Salimans & Ho 2022, eq. 9), with x_t = alpha x_0 + sigma eps:

    score = -eps / sigma,   x_0 = (x_t - sigma eps) / alpha,   v = alpha eps - sigma x_0
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from fokker.errors import UserError
from fokker.processes import Process, expand_as

PREDICTIONS = ("eps", "x0", "v", "score")
CONDITIONINGS = ("time", "index", "sigma", "log_sigma")
VARIANCES = ("fixed", "learned")
REVERSE_VARIANCES = ("beta_tilde", "beta", "learned")  # the variance of a reverse step p(x_s | x_t)

Coef = torch.Tensor | float


def _const(c: Coef, k: int) -> bool:
    """Whether c is the time-independent constant k of the table (a python int, not a float or tensor)."""
    return isinstance(c, int) and c == k


class Linear(NamedTuple):
    """(a u + b w) / den: one quantity as a linear combination of two others. The table's constants 0, 1
    and -1 (python ints) are not multiplied out, nor a den of 1 divided by."""

    a: Coef
    b: Coef
    den: Coef = 1

    def __call__(self, u: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        pairs = ((c, z) for c, z in ((self.a, u), (self.b, w)) if not _const(c, 0))
        kept = [z if _const(c, 1) else -z if _const(c, -1) else c * z for c, z in pairs]
        out = kept[0] if len(kept) == 1 else kept[0] + kept[1]
        return out if _const(self.den, 1) else out / self.den

    def coefficients(self) -> tuple[Coef, Coef]:
        """(a / den, b / den), the combination with the denominator folded in."""
        if _const(self.den, 1):
            return tuple(float(c) if isinstance(c, int) else c for c in (self.a, self.b))
        return tuple(0.0 if _const(c, 0) else c / self.den for c in (self.a, self.b))


class Parameterisation(NamedTuple):
    """A prediction type at x_t = alpha x_0 + sigma eps: x_0 and eps from (x_t, out), and out from (x_0, eps)."""

    x0: Linear
    eps: Linear
    out: Linear


def parameterisation(alpha: Coef, sigma: Coef, prediction: str) -> Parameterisation:
    """The one table of the four prediction types (Song et al. 2021, eq. 13; Salimans & Ho 2022, sec. 4), from
    x_t = alpha x_0 + sigma eps, score = -eps / sigma and v = alpha eps - sigma x_0. For v, solving the two
    gives x_0 = (alpha x - sigma v) / r, eps = (sigma x + alpha v) / r with r = alpha^2 + sigma^2 (1 for VP)."""
    if prediction == "eps":
        return Parameterisation(Linear(1, -sigma, alpha), Linear(0, 1), Linear(0, 1))
    if prediction == "x0":
        return Parameterisation(Linear(0, 1), Linear(1, -alpha, sigma), Linear(1, 0))
    if prediction == "v":
        r = alpha * alpha + sigma * sigma
        return Parameterisation(Linear(alpha, -sigma, r), Linear(sigma, alpha, r), Linear(-sigma, alpha))
    if prediction == "score":
        return Parameterisation(Linear(1, sigma * sigma, alpha), Linear(0, -sigma), Linear(0, -1, sigma))
    raise UserError(f"unknown prediction {prediction!r}; expected one of {PREDICTIONS}")


def to_x0_eps(
    out: torch.Tensor, x: torch.Tensor, alpha: Coef, sigma: Coef, prediction: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_0, eps) from a prediction of type `prediction` at x_t = x (`parameterisation`); alpha and sigma
    broadcast against x."""
    table = parameterisation(alpha, sigma, prediction)
    return table.x0(x, out), table.eps(x, out)


def linear_coefficients(alpha: Coef, sigma: Coef, prediction: str) -> tuple[Coef, Coef, Coef, Coef]:
    """(a0, b0, a1, b1) with x_0 = a0 x + b0 out and eps = a1 x + b1 out: `to_x0_eps` is linear in
    (x, out) for every prediction type, so a sampler step that is linear in (x_0, eps) folds into
    one update x_s = fold_x x + fold_out out with coefficients computed before the loop."""
    table = parameterisation(alpha, sigma, prediction)
    return (*table.x0.coefficients(), *table.eps.coefficients())


def from_x0_eps(x0: torch.Tensor, eps: torch.Tensor, alpha: Coef, sigma: Coef, prediction: str) -> torch.Tensor:
    """The quantity of type `prediction` given (x_0, eps): the inverse of `to_x0_eps`."""
    return parameterisation(alpha, sigma, prediction).out(x0, eps)


def check_conditioning(conditioning: str, process: Process) -> None:
    """A UserError unless `conditioning` is one of CONDITIONINGS and fits the process ("index" needs T steps)."""
    if conditioning not in CONDITIONINGS:
        raise UserError(f"unknown conditioning {conditioning!r}; expected one of {CONDITIONINGS}")
    if conditioning == "index" and process.T is None:
        raise UserError("conditioning 'index' needs a discrete process (T steps)")


def noise_condition(process: Process, conditioning: str, t: torch.Tensor) -> torch.Tensor:
    """A network's noise input c for times t (float64 in, float64 out): "time" t, "index" t T (DDPM's step
    number, Ho et al. 2020), "sigma" sigma(t) or "log_sigma" log sigma(t) (Song & Ermon 2019; Karras et al.
    2022 feed a multiple of it)."""
    if conditioning == "time":
        return t
    if conditioning == "index":
        return process.snap(t) * process.T
    sigma = process.sigma(t)
    return sigma if conditioning == "sigma" else torch.log(sigma)


def batch_times(x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """Times t (a float, a 0-dim tensor or one per example) as float64 of shape (batch,) for the batch x."""
    t = torch.as_tensor(t, dtype=torch.float64)
    return t.expand(x.shape[0]) if t.dim() == 0 else t


def network_condition(process: Process, conditioning: str, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """The conditioning c a network of (x, c) gets at x_t = x, times t: `noise_condition` of the batch's times,
    on x's device and in x's dtype (the one conversion of t for a Denoiser and a NoisyClassifier alike)."""
    return noise_condition(process, conditioning, batch_times(x, t)).to(device=x.device, dtype=x.dtype)


class Denoiser:
    """A model of E[x_0 | x_t] for a process, whatever fn predicts.

    fn(x, c, **model_kwargs) gets the noise conditioning c of shape (batch,):
    "time" t in [0, 1] (default), "index" t * T (DDPM's step number), "sigma" or "log_sigma".
    `clip` = (lo, hi) clamps predicted x_0 to the data range (eps is then recomputed from it).
    `variance` = "learned": fn also outputs var_frac (Nichol & Dhariwal's v), the interpolation of the reverse
    variance between beta and beta-tilde (Nichol & Dhariwal 2021, eq. 15), as the second half of its channels (dim 1);
    `raw` and `predict` return the first half, `raw_and_variance` both. `nfe` counts evaluations of fn.
    `num_classes` = K on a class-conditional fn, which takes labels y in 0..K-1 and the null class K as the
    keyword argument y (fokker.labels); None on an unconditional one.

    A sampler gives every evaluation the time t of its step, with the conditioning of t precomputed (`cond`):
    a guided model (fokker.guidance) is a Denoiser that needs t itself.
    """

    shifts_mean = False  # a guide that moves the mean of each Gaussian reverse step (`mean_shift`)
    space = None  # a latent diffusion model's latent space (fokker.autoencoder.LatentSpace): `to_data`

    def __init__(
        self,
        fn: Callable[..., torch.Tensor],
        process: Process,
        prediction: str = "eps",
        clip: tuple[float, float] | None = None,
        conditioning: str = "time",
        variance: str = "fixed",
        num_classes: int | None = None,
    ):
        if prediction not in PREDICTIONS:
            raise UserError(f"unknown prediction {prediction!r}; expected one of {PREDICTIONS}")
        check_conditioning(conditioning, process)
        if variance not in VARIANCES:
            raise UserError(f"unknown variance {variance!r}; expected one of {VARIANCES}")
        self.fn, self.process, self.prediction = fn, process, prediction
        self.clip, self.conditioning, self.variance = clip, conditioning, variance
        self.num_classes = num_classes
        self.nfe = 0

    def to_data(self, x: torch.Tensor) -> torch.Tensor:
        """What the model draws as data: x itself, or a latent diffusion model's latents decoded by its
        autoencoder, D(x / scale) (Rombach et al. 2022)."""
        return x if self.space is None else self.space.decode(x)

    @property
    def learned_variance(self) -> bool:
        """Whether fn outputs the reverse-variance interpolation var_frac besides its prediction."""
        return self.variance == "learned"

    def reverse_variance(self, variance: str | None) -> str:
        """The variance of a reverse step: as given (beta_tilde, beta or learned), else learned for a model
        with a learned variance and beta_tilde otherwise (Nichol & Dhariwal 2021, eq. 15; Ho et al. 2020,
        sec. 3.2). "learned" needs such a model."""
        variance = variance or ("learned" if self.learned_variance else "beta_tilde")
        if variance not in REVERSE_VARIANCES:
            raise UserError(f"unknown variance {variance!r}; expected one of {REVERSE_VARIANCES}")
        if variance == "learned" and not self.learned_variance:
            raise UserError("variance 'learned' needs a model with a learned variance (model.variance: learned)")
        return variance

    def condition(self, t: torch.Tensor) -> torch.Tensor:
        """The network's noise input for times t (float64 in, float64 out): `noise_condition`."""
        return noise_condition(self.process, self.conditioning, t)

    def _batch_times(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        return batch_times(x, t)

    def raw(
        self, x: torch.Tensor, t: torch.Tensor | float, cond: torch.Tensor | None = None, **model_kwargs
    ) -> torch.Tensor:
        """One evaluation of fn at (x, t): its prediction (without the variance fraction when it is learned).
        `cond` is the precomputed conditioning (samplers hoist it)."""
        return self.raw_and_variance(x, t, cond, **model_kwargs)[0]

    def raw_and_variance(
        self, x: torch.Tensor, t: torch.Tensor | float, cond: torch.Tensor | None = None, **model_kwargs
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One evaluation of fn at (x, t): (prediction, var_frac), var_frac None unless the variance is learned."""
        if cond is None:
            cond = network_condition(self.process, self.conditioning, x, t)
        self.nfe += 1
        out = self.fn(x, cond, **model_kwargs)
        if not self.learned_variance:
            return out, None
        if out.shape[1] != 2 * x.shape[1]:
            raise UserError(
                f"a learned-variance model must output 2 x {x.shape[1]} channels (prediction, v), got {out.shape[1]}"
            )
        pred, var_frac = out.chunk(2, dim=1)
        return pred, var_frac

    def _coefficients(self, x: torch.Tensor, t: torch.Tensor | float) -> tuple[Coef, Coef]:
        """alpha(t), sigma(t) broadcast against x."""
        tb = self._batch_times(x, t)
        return expand_as(self.process.alpha(tb), x), expand_as(self.process.sigma(tb), x)

    def predict_full(
        self,
        x: torch.Tensor,
        t: torch.Tensor | float,
        *,
        alpha: Coef | None = None,
        sigma: Coef | None = None,
        cond: torch.Tensor | None = None,
        **model_kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(x_0, eps, var_frac) at x_t = x from one network evaluation, var_frac the learned-variance output
        (None if fixed). Samplers pass alpha, sigma and the conditioning `cond` precomputed for their grid;
        otherwise they come from the process."""
        if alpha is None or sigma is None:
            alpha, sigma = self._coefficients(x, t)
        out, var_frac = self.raw_and_variance(x, t, cond, **model_kwargs)
        x0, eps = to_x0_eps(out, x, alpha, sigma, self.prediction)
        if self.clip is not None:
            x0 = x0.clamp(*self.clip)
            eps = to_x0_eps(x0, x, alpha, sigma, "x0")[1]
        return x0, eps, var_frac

    def predict(self, x: torch.Tensor, t: torch.Tensor | float, **options) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_0, eps) at x_t = x from one network evaluation: `predict_full` (same options) without var_frac."""
        return self.predict_full(x, t, **options)[:2]

    def x0(self, x: torch.Tensor, t: torch.Tensor | float, **model_kwargs) -> torch.Tensor:
        """E[x_0 | x_t] (Tweedie's formula; Efron 2011)."""
        return self.predict(x, t, **model_kwargs)[0]

    def eps(self, x: torch.Tensor, t: torch.Tensor | float, **model_kwargs) -> torch.Tensor:
        """Predicted noise, eps = (x_t - alpha x_0) / sigma."""
        return self.predict(x, t, **model_kwargs)[1]

    def score(self, x: torch.Tensor, t: torch.Tensor | float, **model_kwargs) -> torch.Tensor:
        """grad log p_t(x) = -eps / sigma (Tweedie's formula; Song et al. 2021, eq. 13; Vincent 2011)."""
        alpha, sigma = self._coefficients(x, t)
        eps = self.eps(x, t, **model_kwargs)
        return from_x0_eps(None, eps, alpha, sigma, "score")

    def mean_shift(self, x: torch.Tensor, t: float, variance: torch.Tensor | float, **model_kwargs) -> torch.Tensor:
        """The shift of the mean of a Gaussian reverse step from x_t = x with this variance, for a guide with
        `shifts_mean` (Dhariwal & Nichol 2021, Algorithm 1); the ancestral sampler adds it before the noise."""
        raise NotImplementedError(f"{type(self).__name__} does not shift the mean of reverse steps")

    def v(self, x: torch.Tensor, t: torch.Tensor | float, **model_kwargs) -> torch.Tensor:
        """v = alpha eps - sigma x_0 (Salimans & Ho 2022, sec. 4)."""
        alpha, sigma = self._coefficients(x, t)
        x0, eps = self.predict(x, t, alpha=alpha, sigma=sigma, **model_kwargs)
        return from_x0_eps(x0, eps, alpha, sigma, "v")
