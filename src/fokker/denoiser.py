"""The Denoiser: any callable fn(x, t) plus a process plus what fn predicts.

Tweedie's formula ties the four things a network may predict (notes 002, sec. on Tweedie;
Song et al. 2021, eq. 13; Salimans & Ho 2022, eq. 9), with x_t = alpha x_0 + sigma eps:

    score = -eps / sigma,   x_0 = (x_t - sigma eps) / alpha,   v = alpha eps - sigma x_0
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from fokker.errors import UserError
from fokker.processes import Process, expand_as

PREDICTIONS = ("eps", "x0", "v", "score")
CONDITIONINGS = ("time", "index", "sigma", "log_sigma")
VARIANCES = ("fixed", "learned")
REVERSE_VARIANCES = ("beta_tilde", "beta", "learned")  # the variance of a reverse step p(x_s | x_t)

Coef = torch.Tensor | float


def to_x0_eps(
    out: torch.Tensor, x: torch.Tensor, alpha: Coef, sigma: Coef, prediction: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_0, eps) from a prediction of type `prediction` at x_t = x. alpha and sigma broadcast against x.

    v: solving x = alpha x0 + sigma eps, v = alpha eps - sigma x0 gives
    x0 = (alpha x - sigma v) / r, eps = (sigma x + alpha v) / r with r = alpha^2 + sigma^2 (= 1 for VP)."""
    if prediction == "eps":
        return (x - sigma * out) / alpha, out
    if prediction == "x0":
        return out, (x - alpha * out) / sigma
    if prediction == "v":
        r = alpha * alpha + sigma * sigma
        return (alpha * x - sigma * out) / r, (sigma * x + alpha * out) / r
    if prediction == "score":
        return (x + sigma * sigma * out) / alpha, -sigma * out
    raise UserError(f"unknown prediction {prediction!r}; expected one of {PREDICTIONS}")


def linear_coefficients(alpha: Coef, sigma: Coef, prediction: str) -> tuple[Coef, Coef, Coef, Coef]:
    """(a0, b0, a1, b1) with x_0 = a0 x + b0 out and eps = a1 x + b1 out: `to_x0_eps` is linear in
    (x, out) for every prediction type, so a sampler step that is linear in (x_0, eps) folds into
    one update x_s = A x + B out with coefficients computed before the loop."""
    if prediction == "eps":
        return 1 / alpha, -sigma / alpha, 0.0 * alpha, 1.0 + 0.0 * alpha
    if prediction == "x0":
        return 0.0 * sigma, 1.0 + 0.0 * sigma, 1 / sigma, -alpha / sigma
    if prediction == "v":
        r = alpha * alpha + sigma * sigma
        return alpha / r, -sigma / r, sigma / r, alpha / r
    if prediction == "score":
        return 1 / alpha, sigma * sigma / alpha, 0.0 * sigma, -sigma
    raise UserError(f"unknown prediction {prediction!r}; expected one of {PREDICTIONS}")


def from_x0_eps(x0: torch.Tensor, eps: torch.Tensor, alpha: Coef, sigma: Coef, prediction: str) -> torch.Tensor:
    """The quantity of type `prediction` given (x_0, eps): the inverse of `to_x0_eps`."""
    if prediction == "eps":
        return eps
    if prediction == "x0":
        return x0
    if prediction == "v":
        return alpha * eps - sigma * x0
    if prediction == "score":
        return -eps / sigma
    raise UserError(f"unknown prediction {prediction!r}; expected one of {PREDICTIONS}")


class Denoiser:
    """A model of E[x_0 | x_t] for a process, whatever fn predicts.

    fn(x, c, **model_kwargs) gets the noise conditioning c of shape (batch,):
    "time" t in [0, 1] (default), "index" t * T (DDPM's step number), "sigma" or "log_sigma".
    `clip` = (lo, hi) clamps predicted x_0 to the data range (eps is then recomputed from it).
    `variance` = "learned": fn also outputs v, the interpolation of the reverse variance between
    beta and beta-tilde (Nichol & Dhariwal 2021, eq. 15), as the second half of its channels (dim 1);
    `raw` and `predict` return the first half, `raw_and_variance` both. `nfe` counts evaluations of fn.
    """

    def __init__(
        self,
        fn: Callable[..., torch.Tensor],
        process: Process,
        prediction: str = "eps",
        clip: tuple[float, float] | None = None,
        conditioning: str = "time",
        variance: str = "fixed",
    ):
        if prediction not in PREDICTIONS:
            raise UserError(f"unknown prediction {prediction!r}; expected one of {PREDICTIONS}")
        if conditioning not in CONDITIONINGS:
            raise UserError(f"unknown conditioning {conditioning!r}; expected one of {CONDITIONINGS}")
        if conditioning == "index" and process.T is None:
            raise UserError("conditioning 'index' needs a discrete process (T steps)")
        if variance not in VARIANCES:
            raise UserError(f"unknown variance {variance!r}; expected one of {VARIANCES}")
        self.fn, self.process, self.prediction = fn, process, prediction
        self.clip, self.conditioning, self.variance = clip, conditioning, variance
        self.nfe = 0

    @property
    def learned_variance(self) -> bool:
        """Whether fn outputs the reverse-variance interpolation v besides its prediction."""
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
        """The network's noise input for times t (float64 in, float64 out)."""
        if self.conditioning == "time":
            return t
        if self.conditioning == "index":
            return self.process.snap(t) * self.process.T
        sigma = self.process.sigma(t)
        return sigma if self.conditioning == "sigma" else torch.log(sigma)

    def _batch_times(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=torch.float64)
        return t.expand(x.shape[0]) if t.dim() == 0 else t

    def raw(
        self, x: torch.Tensor, t: torch.Tensor | float, c: torch.Tensor | None = None, **model_kwargs
    ) -> torch.Tensor:
        """One evaluation of fn at (x, t): its prediction (without v when the variance is learned).
        `c` is the precomputed conditioning (samplers hoist it)."""
        return self.raw_and_variance(x, t, c, **model_kwargs)[0]

    def raw_and_variance(
        self, x: torch.Tensor, t: torch.Tensor | float, c: torch.Tensor | None = None, **model_kwargs
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One evaluation of fn at (x, t): (prediction, v), v None unless the variance is learned."""
        if c is None:
            c = self.condition(self._batch_times(x, t)).to(device=x.device, dtype=x.dtype)
        self.nfe += 1
        out = self.fn(x, c, **model_kwargs)
        if not self.learned_variance:
            return out, None
        if out.shape[1] != 2 * x.shape[1]:
            raise UserError(
                f"a learned-variance model must output 2 x {x.shape[1]} channels (prediction, v), got {out.shape[1]}"
            )
        pred, v = out.chunk(2, dim=1)
        return pred, v

    def predict(
        self,
        x: torch.Tensor,
        t: torch.Tensor | float,
        *,
        alpha: Coef | None = None,
        sigma: Coef | None = None,
        c: torch.Tensor | None = None,
        **model_kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_0, eps) at x_t = x from one network evaluation. Samplers pass alpha, sigma and the
        conditioning c precomputed for their grid; otherwise they come from the process."""
        return self.predict_full(x, t, alpha=alpha, sigma=sigma, c=c, **model_kwargs)[:2]

    def predict_full(
        self,
        x: torch.Tensor,
        t: torch.Tensor | float,
        *,
        alpha: Coef | None = None,
        sigma: Coef | None = None,
        c: torch.Tensor | None = None,
        **model_kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(x_0, eps, v) from one network evaluation, v the learned-variance output (None if fixed)."""
        if alpha is None or sigma is None:
            tb = self._batch_times(x, t)
            alpha, sigma = expand_as(self.process.alpha(tb), x), expand_as(self.process.sigma(tb), x)
        out, v = self.raw_and_variance(x, t, c, **model_kwargs)
        x0, eps = to_x0_eps(out, x, alpha, sigma, self.prediction)
        if self.clip is not None:
            x0 = x0.clamp(*self.clip)
            eps = (x - alpha * x0) / sigma
        return x0, eps, v

    def x0(self, x: torch.Tensor, t: torch.Tensor | float, **model_kwargs) -> torch.Tensor:
        """E[x_0 | x_t] (Tweedie)."""
        return self.predict(x, t, **model_kwargs)[0]

    def eps(self, x: torch.Tensor, t: torch.Tensor | float, **model_kwargs) -> torch.Tensor:
        """Predicted noise, eps = (x_t - alpha x_0) / sigma."""
        return self.predict(x, t, **model_kwargs)[1]

    def score(self, x: torch.Tensor, t: torch.Tensor | float, **model_kwargs) -> torch.Tensor:
        """grad log p_t(x) = -eps / sigma (notes 002, Tweedie)."""
        eps = self.eps(x, t, **model_kwargs)
        return -eps / expand_as(self.process.sigma(self._batch_times(x, t)), x)

    def v(self, x: torch.Tensor, t: torch.Tensor | float, **model_kwargs) -> torch.Tensor:
        """v = alpha eps - sigma x_0 (Salimans & Ho 2022)."""
        tb = self._batch_times(x, t)
        alpha, sigma = expand_as(self.process.alpha(tb), x), expand_as(self.process.sigma(tb), x)
        x0, eps = self.predict(x, t, alpha=alpha, sigma=sigma, **model_kwargs)
        return alpha * eps - sigma * x0
