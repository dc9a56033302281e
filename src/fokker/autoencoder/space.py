"""Latent diffusion's two maps (Rombach et al. 2022, sec. 3 and 4.3.2): a data example x to the latent a
diffusion model is trained on, z = scale * E(x), and a drawn latent back to data, x = D(z / scale), with E and D
a frozen autoencoder fokker trained and scale = 1 / std of its training latents (fokker.autoencoder.latent_scale).

A latent diffusion run keeps its autoencoder: RUN/autoencoder.safetensors (the autoencoder's exported weights,
copied when the run starts; what a resumed run encodes with) and, under AUTOENCODER_PREFIX, inside every
RUN/model.safetensors it exports, so one weights file is a whole model (`space_from_weights`)."""

from __future__ import annotations

import copy
import itertools
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from fokker.errors import UserError

if TYPE_CHECKING:
    from fokker.config import RunConfig

AUTOENCODER_FILE = "autoencoder.safetensors"  # in a latent diffusion run's folder
AUTOENCODER_PREFIX = "autoencoder."  # of the autoencoder's tensors in a latent model's exported weights


class LatentSpace:
    """z = scale * E(x) and x = D(z / scale) of a frozen autoencoder (fokker.nets.VAE or VQVAE), in chunks of
    `batch_size` examples, without gradients through the autoencoder's weights."""

    def __init__(self, autoencoder: nn.Module, scale: float, batch_size: int = 500) -> None:
        if not scale > 0:
            raise ValueError(f"the latent scale must be positive, got {scale}")
        self.autoencoder = autoencoder.eval().requires_grad_(False)
        self.scale, self.batch_size = float(scale), batch_size

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, h, w) of one latent."""
        return tuple(self.autoencoder.latent_shape)

    @property
    def data_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one data example."""
        ae = self.autoencoder
        return ae.in_channels, ae.image_size, ae.image_size

    def encode(self, x: Tensor) -> Tensor:
        """scale * E(x) of images x (B, *data_shape), on x's device: the posterior mean of a VAE, the quantised
        latent of a VQ-VAE."""
        return self._chunked(self.autoencoder.encode, x) * self.scale

    def decode(self, z: Tensor) -> Tensor:
        """D(z / scale) of latents z (B, *shape), on z's device: images (B, *data_shape), not clamped."""
        return self._chunked(self.autoencoder.decode, z / self.scale)

    def _chunked(self, fn, x: Tensor) -> Tensor:
        """fn over x in chunks of batch_size on the autoencoder's device, the result on x's device and dtype."""
        device = next(itertools.chain(self.autoencoder.parameters(), self.autoencoder.buffers())).device
        return torch.cat([fn(c.to(device)).to(x) for c in x.split(self.batch_size)])

    def same_as(self, other: LatentSpace) -> bool:
        """Whether `other` is this space: the same scale and the same autoencoder weights."""
        mine, theirs = self.autoencoder.state_dict(), other.autoencoder.state_dict()
        return (
            self.scale == other.scale
            and mine.keys() == theirs.keys()
            and all(torch.equal(v, theirs[k].to(v.device)) for k, v in mine.items())
        )

    def to(self, device: torch.device | str) -> LatentSpace:
        """The space with its autoencoder on `device`."""
        self.autoencoder.to(device)
        return self


def attach_autoencoder(config: RunConfig, source: str | Path) -> LatentSpace:
    """The latent space of a fresh latent diffusion run, from the autoencoder run `source` (its folder, or its
    model.safetensors beside its autoencoder.json), recorded in `config`'s latent section: the scale measured
    on the autoencoder's training latents, the latent shape and the autoencoder's network."""
    from fokker.autoencoder.load import load_autoencoder
    from fokker.autoencoder.report import latent_scale

    path = Path(source)
    if not path.exists():
        raise UserError(
            f"latent.autoencoder {path} does not exist: train the autoencoder first (fokker train --preset "
            f"vae-mnist --out {path}) or name another with --autoencoder RUN"
        )
    network, ae_config = load_autoencoder(path)
    scale = latent_scale(path if path.is_dir() else path.parent)
    config.latent.scale, config.latent.shape = scale, list(network.latent_shape)
    config.latent.network = copy.deepcopy(ae_config.model.network)
    return LatentSpace(network, scale)


def reattach_autoencoder(config: RunConfig, out: Path) -> LatentSpace:
    """The latent space of a resumed latent diffusion run: its own copy of the autoencoder (AUTOENCODER_FILE),
    or, for a run stopped before it wrote one, the autoencoder it names if that is still the one recorded."""
    from fokker.autoencoder.load import load_autoencoder

    own = out / AUTOENCODER_FILE
    network, ae_config = load_autoencoder(own if own.exists() else config.latent.autoencoder)
    if ae_config.model.network != config.latent.network or tuple(network.latent_shape) != tuple(config.latent.shape):
        raise UserError(
            f"the autoencoder {config.latent.autoencoder} is no longer the one the run in {out} started with "
            f"(model.network {ae_config.model.network} against the run's latent.network {config.latent.network})"
        )
    return LatentSpace(network, config.latent.scale)


def keep_autoencoder(space: LatentSpace, config: RunConfig, out: Path) -> None:
    """Write the run's own copy of its autoencoder (AUTOENCODER_FILE) unless it has one: the weights with a
    config of the autoencoder (its network, the run's data), which fokker.autoencoder.load_autoencoder reads."""
    from fokker.weights import export_weights

    path = out / AUTOENCODER_FILE
    if not path.exists():
        own = {"data": config.data.to_dict(), "model": {"network": config.latent.network}}
        export_weights(path, space.autoencoder.state_dict(), own)


def space_from_weights(
    state: dict[str, Tensor], config: RunConfig, source: str | Path
) -> tuple[dict[str, Tensor], LatentSpace]:
    """(the diffusion network's tensors, the latent space) of a latent model's exported weights, which hold the
    autoencoder's tensors under AUTOENCODER_PREFIX and its network in the config's latent section."""
    from fokker.nets import build_network
    from fokker.weights import load_strict

    own, theirs = split_weights(state)
    if not theirs:
        raise UserError(f"{source} is a latent diffusion model without its autoencoder's weights; the file is damaged")
    network = build_network(config.latent.network)
    load_strict(network, theirs, source)
    return own, LatentSpace(network, config.latent.scale)


def split_weights(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """(the diffusion network's tensors, the autoencoder's without AUTOENCODER_PREFIX) of a latent model's
    exported weights."""
    n = len(AUTOENCODER_PREFIX)
    own = {k: v for k, v in state.items() if not k.startswith(AUTOENCODER_PREFIX)}
    return own, {k[n:]: v for k, v in state.items() if k.startswith(AUTOENCODER_PREFIX)}


def prefixed(space: LatentSpace) -> dict[str, Tensor]:
    """The autoencoder's tensors as a latent model's exported weights hold them (`space_from_weights`)."""
    return {AUTOENCODER_PREFIX + k: v for k, v in space.autoencoder.state_dict().items()}


def check_data(space: LatentSpace, data_shape: tuple[int, ...], source: str) -> None:
    """A UserError when the autoencoder does not take the run's data."""
    if tuple(data_shape) != space.data_shape:
        raise UserError(
            f"the autoencoder {source} takes images of shape {space.data_shape}, but the data has shape "
            f"{tuple(data_shape)}: train the autoencoder on the same data (data.name, data.image_size)"
        )
