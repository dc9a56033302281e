"""The loss object every training loss is (EDM's `EDMLoss`): options are fields; a call draws times and
noise (when not given) and returns one value per example. And L_simple (Ho et al. 2020, eq. 14)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from fokker.denoiser import PREDICTIONS, Denoiser, from_x0_eps, to_x0_eps
from fokker.errors import UserError
from fokker.noise import randn
from fokker.processes import Process, expand_as


def times_and_noise(denoiser: Denoiser, x0: torch.Tensor, t, noise, generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Training times (float64 on the CPU) and noise, drawn (times first) when not given."""
    if t is None:
        t = denoiser.process.sample_time(x0.shape[0], generator, device=x0.device)
    if noise is None:
        noise = randn(x0.shape, generator, device=x0.device, dtype=x0.dtype)
    return denoiser.process.snap(t.double().cpu()), noise


def scales(process: Process, t64: torch.Tensor, x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """alpha(t) and sigma(t), broadcast against x0."""
    return expand_as(process.alpha(t64), x0), expand_as(process.sigma(t64), x0)


def squared_error(pred, x0, noise, alpha, sigma, target: str) -> torch.Tensor:
    """|| target - prediction ||^2 per example, averaged over dimensions, the target from (x0, eps)."""
    return (pred - from_x0_eps(x0, noise, alpha, sigma, target)).pow(2).flatten(1).mean(1)


@dataclass(frozen=True)
class Loss:
    """A training loss: its options are its fields; `check` refuses what cannot work before anything is
    drawn, then times t and noise are drawn (when not given) and `per_example` computes the loss."""

    name: ClassVar[str]
    trains_variance: ClassVar[bool] = False  # has a term of the variational bound: trains a learned variance
    task: ClassVar[str] = "denoiser"  # what it trains (fokker.nets.TASKS); its first argument is a model of it
    takes_loss_options: ClassVar[bool] = False  # configured by train.loss_options (its fields), not train's keys

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
        t64, noise = self.draw(denoiser, x0, t, noise, generator)
        return self.per_example(denoiser, x0, t64, noise, generator, model_kwargs or {})

    def check(self, denoiser: Denoiser, x0: torch.Tensor) -> None:
        """A UserError for an option that does not fit this denoiser or data."""

    def draw(self, denoiser: Denoiser, x0: torch.Tensor, t, noise, generator) -> tuple[torch.Tensor, torch.Tensor]:
        """The call's times (float64, CPU) and noise, drawn when not given (times first)."""
        return times_and_noise(denoiser, x0, t, noise, generator)

    def at_step(self, step: int) -> Loss:
        """The loss at training step `step`: itself, or for one with a curriculum its state there."""
        return self

    def per_example(
        self, denoiser: Denoiser, x0: torch.Tensor, t64: torch.Tensor, noise: torch.Tensor, generator, kw: dict
    ) -> torch.Tensor:
        """The loss per example at times t64 (float64, CPU; None for a loss that draws its own) with noise eps."""
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
        alpha, sigma = scales(process, t64, x0)
        x_t = process.q_sample(x0, t64, noise)
        out = denoiser.raw(x_t, t64, **kw)
        if target != denoiser.prediction:
            out = from_x0_eps(*to_x0_eps(out, x_t, alpha, sigma, denoiser.prediction), alpha, sigma, target)
        return squared_error(out, x0, noise, alpha, sigma, target)
