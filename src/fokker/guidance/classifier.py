"""Classifier guidance (Dhariwal & Nichol 2021) and class-conditional sampling of a score SDE (Song et al.
2021, sec. 5 and app. I), as a Denoiser.

Bayes' rule on the noised marginals, grad log p_t(x | y) = grad log p_t(x) + grad log p_t(y | x), with
score = -eps / sigma, gives the score form

    eps_hat = eps(x) - s sigma grad_x log p_t(y | x)          (Dhariwal & Nichol 2021, eq. 14 with scale s),

which every sampler runs on; at s = 1 it is class-conditional sampling of a score SDE (Song et al. 2021,
sec. 5), through euler_maruyama, pc and ode as through every other sampler. The mean-shift form moves the
mean of each ancestral step instead, x_s ~ N(mu + s Sigma grad_x log p_t(y | x_t), Sigma) (their
Algorithm 1), and only the ancestral sampler `ddpm` takes it.

The classifier is any object with `process` and `log_probs(x, t) -> (batch, K)`, log p_t(y | x) for every
class, differentiable in x: a noise-conditional classifier that fokker trains (fokker.classifier) or the
exact one of a Gaussian mixture (fokker.targets.ExactClassifier). It must have been trained on the
diffusion model's own process (the same x_t at the same t)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import torch

from fokker.denoiser import Denoiser
from fokker.errors import UserError
from fokker.guidance.base import GuidedDenoiser, labels_of
from fokker.guidance.free import check_finite
from fokker.processes import Process

if TYPE_CHECKING:
    from fokker.autoencoder.space import LatentSpace

FORMS = ("score", "mean")


class Classifier(Protocol):
    """What classifier guidance needs of a classifier of noised inputs."""

    process: Process

    def log_probs(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        """log p_t(y | x) for every class y, shape (batch, K)."""
        ...


def check_same_process(a: Process, b: Process, what: str) -> None:
    """A UserError unless processes a and b noise alike: the same alpha(t) and sigma(t) on a grid of t."""
    t = torch.linspace(0, 1, 101, dtype=torch.float64).clamp(min=max(a.first_time, b.first_time))
    same = all(torch.allclose(f(a)(t), f(b)(t), rtol=1e-6, atol=0) for f in (lambda p: p.alpha, lambda p: p.sigma))
    if not same:
        raise UserError(f"{what} was trained on another process than the model's (its alpha(t), sigma(t) differ)")


def check_same_space(model: LatentSpace | None, classifier: LatentSpace | None) -> None:
    """A UserError unless the classifier classifies what the model draws: pixels, or latents of one autoencoder
    at one scale."""
    if model is None and classifier is None:
        return
    if model is None or classifier is None:
        drawn, seen = ("latents", "images") if classifier is None else ("images", "latents")
        raise UserError(
            f"the classifier was trained on {seen} but the model draws {drawn}: train the classifier on what the "
            "model draws (for latents: fokker train --preset classifier-mnist --autoencoder RUN)"
        )
    if not model.same_as(classifier):
        raise UserError("the classifier was trained on the latents of another autoencoder (or scale) than the model's")


def class_gradient(classifier: Classifier, x: torch.Tensor, tb: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """grad_x log p_t(y | x) per example, by autograd through the classifier (also under torch.no_grad); a
    class out of the classifier's range is a UserError. When x itself requires grad (a divergence, the
    likelihood's ODE), the gradient stays differentiable in x."""
    differentiable = x.requires_grad
    with torch.enable_grad():
        x = x if differentiable else x.detach().requires_grad_(True)
        log_probs = classifier.log_probs(x, tb)
        k, lo, hi = log_probs.shape[1], int(y.min()), int(y.max())
        if lo < 0 or hi >= k:
            raise UserError(f"class {lo if lo < 0 else hi} is out of the classifier's range 0..{k - 1}")
        return torch.autograd.grad(log_probs.gather(1, y[:, None]).sum(), x, create_graph=differentiable)[0]


class ClassifierGuidance(GuidedDenoiser):
    """Classifier guidance of `base` (conditional or not) by `classifier` at scale s, in the score form (every
    sampler) or the mean-shift form (ancestral `ddpm` only): the module docstring's formulas. The class is
    model_kwargs["y"], passed on to a conditional base. Classifier evaluations are not counted in nfe."""

    def __init__(self, base: Denoiser, classifier: Classifier, scale: float = 1.0, form: str = "score") -> None:
        super().__init__(base)
        check_finite(scale, "the classifier scale s")
        if form not in FORMS:
            raise UserError(f"unknown classifier-guidance form {form!r}; expected one of {FORMS}")
        check_same_process(base.process, classifier.process, "the classifier")
        check_same_space(base.space, getattr(classifier, "space", None))
        self.classifier, self.scale, self.form = classifier, float(scale), form

    shifts_mean = property(lambda self: self.form == "mean" or self.base.shifts_mean)

    def _labels(self, x: torch.Tensor, model_kwargs: dict) -> tuple[torch.Tensor, dict]:
        """(the class of each example, the keyword arguments for the base: y only if it is conditional)."""
        y = labels_of(model_kwargs, x.shape[0], x.device, "classifier guidance")
        if self.base.num_classes is None:
            model_kwargs = {k: v for k, v in model_kwargs.items() if k != "y"}
        return y, model_kwargs

    def gradient(self, x: torch.Tensor, tb: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """s grad_x log p_t(y | x) (`class_gradient`)."""
        return self.scale * class_gradient(self.classifier, x, tb, y)

    def raw_and_variance(
        self, x: torch.Tensor, t: torch.Tensor | float, cond: torch.Tensor | None = None, **model_kwargs
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        tb, cond = self.times_and_condition(x, t, cond)
        y, kw = self._labels(x, model_kwargs)
        out, var_frac = self.base.raw_and_variance(x, tb, cond, **kw)
        if self.form == "mean":
            return out, var_frac
        alpha, sigma = self._coefficients(x, tb)
        eps = self.x0_eps(out, x, alpha, sigma)[1]
        eps = eps - sigma * self.gradient(x, tb, y).to(eps.dtype)
        return self.output((x - sigma * eps) / alpha, eps, alpha, sigma), var_frac

    def mean_shift(self, x: torch.Tensor, t: float, variance: torch.Tensor | float, **model_kwargs) -> torch.Tensor:
        """s Sigma grad_x log p_t(y | x_t) (Dhariwal & Nichol 2021, Algorithm 1), plus the base's own shift."""
        tb = self._batch_times(x, t)
        y, kw = self._labels(x, model_kwargs)
        shift = variance * self.gradient(x, tb, y).to(x.dtype) if self.form == "mean" else torch.zeros_like(x)
        return shift + self.base.mean_shift(x, t, variance, **kw) if self.base.shifts_mean else shift


def conditional_score(base: Denoiser, classifier: Classifier) -> ClassifierGuidance:
    """An unconditional score model made class-conditional by Bayes' rule (Song et al. 2021, sec. 5):
    classifier guidance at s = 1 in the score form."""
    return ClassifierGuidance(base, classifier, 1.0, "score")
