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
- `CrossEntropyLoss`: a noise-conditional classifier's -log p(y | x_t, t) (Dhariwal & Nichol 2021,
  sec. 4.1); its `task` is "classifier", so it takes a `fokker.classifier.NoisyClassifier`, not a Denoiser.
- `VAELoss`, `VQLoss`: an autoencoder's reconstruction error with the VAE's weighted KL (Kingma & Welling
  2014, eq. 10) or the VQ-VAE's commitment term (van den Oord et al. 2017, eq. 3); their `task` is
  "autoencoder", so they take the network itself (fokker.nets.VAE, fokker.nets.VQVAE) and draw no times.

`LOSS_TYPES` maps each name to its class (fokker.losses.registry; `loss_names` filters it); `training_loss`
builds one by name. The functions `simple_loss`,
`dsm_loss`, ... are one-call spellings of the objects (options and draws as keywords).
"""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any

import torch

from fokker.denoiser import Denoiser
from fokker.errors import UserError
from fokker.losses.base import Loss, SimpleLoss
from fokker.losses.bound import HYBRID_WEIGHT, HybridLoss, VLBLoss
from fokker.losses.classification import CrossEntropyLoss
from fokker.losses.reconstruction import VAELoss, VQLoss, gaussian_kl
from fokker.losses.registry import LOSS_TYPES, loss_names, register_loss
from fokker.losses.score_matching import (
    MAX_ISM_DIM,
    WEIGHTINGS,
    DSMLoss,
    ISMLoss,
    SSMLoss,
    check_weighting,
    score_weight,
)

__all__ = [
    "HYBRID_WEIGHT",
    "LOSS_TYPES",
    "MAX_ISM_DIM",
    "WEIGHTINGS",
    "CrossEntropyLoss",
    "DSMLoss",
    "HybridLoss",
    "ISMLoss",
    "Loss",
    "SSMLoss",
    "SimpleLoss",
    "VAELoss",
    "VLBLoss",
    "VQLoss",
    "check_weighting",
    "dsm_loss",
    "gaussian_kl",
    "hybrid_loss",
    "ism_loss",
    "loss_from_section",
    "loss_names",
    "register_loss",
    "score_weight",
    "simple_loss",
    "ssm_loss",
    "training_loss",
    "vlb_loss",
]

for _loss in (SimpleLoss, DSMLoss, SSMLoss, ISMLoss, VLBLoss, HybridLoss, CrossEntropyLoss, VAELoss, VQLoss):
    register_loss(_loss)


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
    if name not in LOSS_TYPES:
        raise UserError(f"unknown loss {name!r}; expected one of {loss_names()}")
    check_weighting(weighting)
    options = {"weighting": weighting, "target": target, "levels": levels, "weight": hybrid_weight}
    cls = LOSS_TYPES[name]
    return cls(**{f.name: options[f.name] for f in fields(cls) if f.name in options})


def loss_from_section(train: Any, levels: int | None = None) -> Loss:
    """The loss a config's train section names, with its options: train.loss_options for a distillation loss
    (takes_loss_options; a curriculum's doubling_every from train.steps when not given), else `training_loss`."""
    if not LOSS_TYPES[train.loss].takes_loss_options:
        return training_loss(train.loss, train.weighting, train.loss_target, levels, train.hybrid_weight)
    cls = LOSS_TYPES[train.loss]
    known = [f.name for f in fields(cls) if f.name != "step"]
    options = dict(train.loss_options)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise UserError(f"train.loss {train.loss} has no option {unknown[0]!r}; its options: {', '.join(known)}")
    if "doubling_every" in known and options.get("doubling_every") is None and train.steps is not None:
        options["doubling_every"] = default_doubling(cls, options, train.steps)
    return cls(**options)


def default_doubling(cls: type[Loss], options: dict, steps: int) -> int:
    """The steps per stage of a curriculum spread over `steps`: iCT's K' = floor(K / (log2(s1 / s0) + 1))
    (Song & Dhariwal 2023, eq. 6); ECT's 8 stages (Geng et al. 2024, sec. 4: d = K / 8)."""
    if "s0" in {f.name for f in fields(cls)}:
        s0, s1 = options.get("s0", 10), options.get("s1", 1280)
        return max(1, int(steps // (math.log2(s1 / s0) + 1)))
    return max(1, steps // 8)


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
