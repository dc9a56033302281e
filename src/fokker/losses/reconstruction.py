"""The losses of fokker's autoencoders (task "autoencoder": fokker.nets.VAE, fokker.nets.VQVAE), their first
argument the network itself; they draw no times and no diffusion noise. Both reconstruct with the squared
error averaged over the data's dimensions: PSNR, the figure they are judged by, is a function of it alone
(L1, latent diffusion's choice with its perceptual and adversarial terms, is not the quantity reported).
Their options are train.loss_options."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch

from fokker.errors import UserError
from fokker.losses.base import Loss

if TYPE_CHECKING:
    from torch import nn

KL_WEIGHT = 1e-6  # latent diffusion's KL weight (Rombach et al. 2022, app. G): the latent stays near-free
COMMITMENT_WEIGHT = 0.25  # beta of van den Oord et al. 2017, sec. 4.1


def gaussian_kl(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) per example, summed over the latent's dimensions:
    -1/2 sum(1 + logvar - mean^2 - exp(logvar)) (Kingma & Welling 2014, eq. 10 and app. B)."""
    return -0.5 * (1 + logvar - mean.pow(2) - logvar.exp()).flatten(1).sum(1)


def reconstruction_error(reconstruction: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """||x_hat - x||^2 per example, averaged over the data's dimensions."""
    return (reconstruction - x0).pow(2).flatten(1).mean(1)


def _check_weight(value: object, name: str) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
    if not ok:
        raise UserError(f"bad value for train.loss_options.{name}: {value!r}; expected a non-negative number")


@dataclass(frozen=True)
class AutoencoderLoss(Loss):
    """A loss of the network itself on clean data x0: no times, no noise (`draw`), no model_kwargs."""

    task: ClassVar[str] = "autoencoder"
    takes_loss_options: ClassVar[bool] = True

    def draw(self, network: nn.Module, x0: torch.Tensor, t, noise, generator) -> tuple[None, None]:
        """Nothing: an autoencoder is trained on x0 alone (given times or noise are refused)."""
        if t is not None or noise is not None:
            raise UserError(f"train.loss {self.name} trains an autoencoder on clean data: it takes no times or noise")
        return None, None

    def per_example(self, network, x0, t64, noise, generator, kw) -> torch.Tensor:
        if kw:
            raise UserError(f"train.loss {self.name} takes no model_kwargs, got {sorted(kw)}")
        return self.terms(network, x0, generator)

    def terms(self, network: nn.Module, x0: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """The loss per example."""
        raise NotImplementedError  # abstract


@dataclass(frozen=True)
class VAELoss(AutoencoderLoss):
    """The negative ELBO with a weighted KL, per data dimension: ||x_hat - x||^2 / D + kl_weight KL(q(z | x) ||
    N(0, I)) / D, x_hat decoded from a reparameterised sample z ~ q(z | x) drawn from the run's generator
    (Kingma & Welling 2014, eq. 10; latent diffusion's KL-reg., Rombach et al. 2022, sec. 3.1). Both terms are
    divided by the D dimensions of x, so kl_weight keeps latent diffusion's ratio of the KL to the summed
    reconstruction error (1e-6)."""

    name: ClassVar[str] = "vae"
    kl_weight: float = KL_WEIGHT

    def __post_init__(self) -> None:
        _check_weight(self.kl_weight, "kl_weight")

    def terms(self, network, x0, generator) -> torch.Tensor:
        reconstruction, mean, logvar = network(x0, True, generator)
        kl = gaussian_kl(mean.float(), logvar.float()) / x0[0].numel()
        return reconstruction_error(reconstruction.float(), x0.float()) + self.kl_weight * kl


@dataclass(frozen=True)
class VQLoss(AutoencoderLoss):
    """The VQ-VAE loss without its codebook term: ||x_hat - x||^2 / D + commitment_weight ||z_e - sg(z_q)||^2 /
    D_z (van den Oord et al. 2017, eq. 3); the codebook follows the encoder by its EMA update instead of the
    term ||sg(z_e) - z_q||^2 (app. A.1), inside the network's quantiser in training mode."""

    name: ClassVar[str] = "vq"
    commitment_weight: float = COMMITMENT_WEIGHT

    def __post_init__(self) -> None:
        _check_weight(self.commitment_weight, "commitment_weight")

    def terms(self, network, x0, generator) -> torch.Tensor:
        reconstruction, commitment, _ = network(x0)
        return reconstruction_error(reconstruction.float(), x0.float()) + self.commitment_weight * commitment.float()
