"""The guided Denoiser: a Denoiser that steers another one, so that every sampler, loss and metric runs on
it unchanged. It has the base's process, prediction, clipping, conditioning, variance and classes; a guide
overrides `raw_and_variance` (the network's output at (x, t)) and, for a guide that moves the mean of
Gaussian reverse steps, `mean_shift`. Guides compose: a guided Denoiser can be the base of another."""

from __future__ import annotations

import torch

from fokker.denoiser import Coef, Denoiser, from_x0_eps, to_x0_eps
from fokker.errors import UserError


class GuidedDenoiser(Denoiser):
    """A Denoiser around `base`; its nfe is the base's (network evaluations, both halves of a doubled
    batch counted)."""

    def __init__(self, base: Denoiser) -> None:  # no Denoiser.__init__: every attribute is the base's
        self.base = base

    fn = property(lambda self: self.base.fn)
    process = property(lambda self: self.base.process)
    prediction = property(lambda self: self.base.prediction)
    clip = property(lambda self: self.base.clip)
    conditioning = property(lambda self: self.base.conditioning)
    variance = property(lambda self: self.base.variance)
    num_classes = property(lambda self: self.base.num_classes)
    shifts_mean = property(lambda self: self.base.shifts_mean)
    space = property(lambda self: self.base.space)

    @property
    def nfe(self) -> int:
        return self.base.nfe

    @nfe.setter
    def nfe(self, value: int) -> None:
        self.base.nfe = value

    def mean_shift(self, x: torch.Tensor, t: float, variance: torch.Tensor | float, **model_kwargs) -> torch.Tensor:
        return self.base.mean_shift(x, t, variance, **model_kwargs)

    def times_and_condition(
        self, x: torch.Tensor, t: torch.Tensor | float, cond: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(t as float64 of shape (batch,), the network's conditioning of t on x's device and dtype)."""
        tb = self._batch_times(x, t)
        if cond is None:
            cond = self.condition(tb).to(device=x.device, dtype=x.dtype)
        return tb, cond

    def x0_eps(self, out: torch.Tensor, x: torch.Tensor, alpha: Coef, sigma: Coef) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_0, eps) of the network output `out` at x_t = x (`fokker.denoiser.to_x0_eps`)."""
        return to_x0_eps(out, x, alpha, sigma, self.prediction)

    def output(self, x0: torch.Tensor, eps: torch.Tensor, alpha: Coef, sigma: Coef) -> torch.Tensor:
        """The network output of the prediction type that gives (x_0, eps) (`fokker.denoiser.from_x0_eps`)."""
        return from_x0_eps(x0, eps, alpha, sigma, self.prediction)


def labels_of(model_kwargs: dict, batch: int, device: torch.device, who: str) -> torch.Tensor:
    """The class labels y of the model_kwargs as a long tensor of shape (batch,) (an int or a one-element
    tensor is broadcast), or a UserError: a guide needs the class to steer to."""
    y = model_kwargs.get("y")
    if y is None:
        raise UserError(f"{who} needs the class to sample: model_kwargs={{'y': labels}} (fokker sample --class)")
    y = torch.as_tensor(y, device=device)
    if torch.is_floating_point(y) or y.dtype == torch.bool:
        raise UserError(f"class labels must be integers, got dtype {y.dtype}")
    return (y.reshape(1).expand(batch) if y.numel() == 1 else y.reshape(-1)).long()
