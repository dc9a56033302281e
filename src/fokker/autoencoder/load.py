"""Loading a trained autoencoder: `load_autoencoder`, the counterpart of fokker.model.load_model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from torch import nn

    from fokker.config import RunConfig


def load_autoencoder(checkpoint: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, RunConfig]:
    """(network in eval mode, without gradients, config) from an autoencoder's run folder or its exported
    .safetensors file: a fokker.nets.VAE or VQVAE with its `encode`, `decode` and `latent_shape` (its latent
    scale factor: fokker.autoencoder.latent_scale of the run). A run of another task is a UserError naming
    its loader."""
    from fokker.model import load_network  # fokker.model imports the config, which imports this package

    return load_network(checkpoint, "autoencoder", device)
