"""Classifier-free guidance (Ho & Salimans 2022), with guidance rescale (Lin et al. 2024) and a guidance
interval (Kynkäänniemi et al. 2024), as a Denoiser.

fokker's scale w follows the convention of most libraries (diffusers' guidance_scale, GLIDE, Imagen):

    eps_hat = eps(x, null) + w (eps(x, y) - eps(x, null)),

so w = 1 is the plain conditional model, w = 0 the unconditional one and w > 1 guides. Ho & Salimans write
eps_hat = (1 + w') eps(x, y) - w' eps(x, null): their w' is fokker's w - 1 (their w' = 0 is fokker's w = 1).
With exact models the guided score is grad log p_t(x) + w grad log p_t(y | x), the score of
p_t(x) p_t(y | x)^w (the "tilted" density, normalised) for each t separately."""

from __future__ import annotations

import math

import torch

from fokker.denoiser import Denoiser
from fokker.errors import UserError
from fokker.guidance.base import GuidedDenoiser, labels_of
from fokker.processes import expand_as


class ClassifierFree(GuidedDenoiser):
    """Classifier-free guidance of a class-conditional Denoiser trained with label dropout (model.conditional,
    train.p_uncond > 0), at scale w (the module docstring's convention).

    Both halves, conditional and unconditional (the null class), are one network call on a doubled batch;
    nfe counts it as two evaluations. `rescale` = phi in [0, 1] (Lin et al. 2024, sec. 3.4, eq. 15-16)
    rescales the guided x0_hat to the standard deviation of the conditional one, per example:
    x0 <- phi x0 std(x0_cond) / std(x0) + (1 - phi) x0 (diffusers applies the same rule to the network's
    output instead, eps or v). `interval` = (t_lo, t_hi) guides only at times t in [t_lo, t_hi]
    (Kynkäänniemi et al. 2024); elsewhere the conditional model alone is evaluated (one evaluation). A
    learned variance is the conditional half's (Nichol & Dhariwal 2021 guide the mean only)."""

    def __init__(
        self,
        base: Denoiser,
        scale: float,
        rescale: float = 0.0,
        interval: tuple[float, float] | None = None,
    ) -> None:
        super().__init__(base)
        if base.num_classes is None:
            raise UserError(
                "classifier-free guidance needs a class-conditional model (model.conditional=true, trained with "
                "train.p_uncond > 0); this one is unconditional: use classifier guidance (--classifier)"
            )
        check_finite(scale, "the guidance scale w")
        if not 0 <= rescale <= 1:
            raise UserError(f"the guidance rescale phi must be in [0, 1], got {rescale}")
        if interval is not None:
            lo, hi = interval
            if not 0 <= lo < hi <= 1:
                raise UserError(f"the guidance interval must be [t_lo, t_hi], 0 <= t_lo < t_hi <= 1; got {interval}")
        if scale == 1 and (rescale or interval is not None):
            raise UserError("guidance rescale and the guidance interval have no effect at w = 1 (no guidance)")
        self.scale, self.rescale, self.interval = float(scale), float(rescale), interval

    def weights(self, tb: torch.Tensor) -> torch.Tensor:
        """The scale at each time of tb: w inside the guidance interval (everywhere without one), else 1."""
        w = torch.full_like(tb, self.scale)
        if self.interval is None:
            return w
        lo, hi = self.interval
        return w.where((tb >= lo) & (tb <= hi), 1.0)

    def raw_and_variance(
        self, x: torch.Tensor, t: torch.Tensor | float, cond: torch.Tensor | None = None, **model_kwargs
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        tb, cond = self.times_and_condition(x, t, cond)
        y = labels_of(model_kwargs, x.shape[0], x.device, "classifier-free guidance")
        w = self.weights(tb)
        if bool((w == 1).all()):
            return self.base.raw_and_variance(x, tb, cond, **{**model_kwargs, "y": y})
        null = torch.full_like(y, self.num_classes)
        both = doubled(model_kwargs, x.shape[0]) | {"y": torch.cat([y, null])}
        out, var_frac = self.base.raw_and_variance(torch.cat([x, x]), torch.cat([tb, tb]), cond.repeat(2), **both)
        self.base.nfe += 1  # the doubled batch is two evaluations
        cond_out, uncond_out = out.chunk(2)
        guided = torch.lerp(uncond_out, cond_out, expand_as(w, x).to(x.dtype))
        if self.rescale:
            guided = self._rescaled(guided, cond_out, x, tb)
        return guided, None if var_frac is None else var_frac.chunk(2)[0]

    def _rescaled(self, guided: torch.Tensor, cond_out: torch.Tensor, x: torch.Tensor, tb: torch.Tensor):
        """The guided output with its x0_hat rescaled towards the conditional x0_hat's std, per example (Lin et
        al. 2024, eq. 15-16), and eps_hat = (x - alpha x0_hat) / sigma from it."""
        alpha, sigma = self._coefficients(x, tb)
        x0 = self.x0_eps(guided, x, alpha, sigma)[0]
        ratio = spread(self.x0_eps(cond_out, x, alpha, sigma)[0]) / spread(x0)
        x0 = x0 * (self.rescale * ratio + (1 - self.rescale))
        return self.output(x0, (x - alpha * x0) / sigma, alpha, sigma)


def spread(x: torch.Tensor) -> torch.Tensor:
    """The standard deviation of each example over all its dimensions, shaped to broadcast against x."""
    if x[0].numel() < 2:
        raise UserError("guidance rescale needs examples of more than one dimension (a standard deviation)")
    return x.flatten(1).std(dim=1).reshape(-1, *[1] * (x.dim() - 1))


def check_finite(value: float, what: str) -> None:
    """A UserError unless value is a finite number."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise UserError(f"{what} must be a finite number, got {value!r}")


def doubled(model_kwargs: dict, batch: int) -> dict:
    """The model's keyword arguments for the doubled batch [x, x]: tensors with the batch's first dimension
    repeated, the rest as they are (y, which the caller sets, aside)."""
    out = {}
    for key, value in model_kwargs.items():
        if key != "y":
            batched = isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == batch
            out[key] = torch.cat([value, value]) if batched else value
    return out
