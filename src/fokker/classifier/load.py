"""Loading a trained noise-conditional classifier: `load_classifier`, the counterpart of
fokker.model.load_model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from fokker.classifier.noisy import NoisyClassifier

if TYPE_CHECKING:
    from fokker.config import RunConfig


def load_classifier(checkpoint: str | Path, device: torch.device | str = "cpu") -> tuple[NoisyClassifier, RunConfig]:
    """(NoisyClassifier in eval mode, config) from a classifier's run folder or its exported .safetensors file;
    the network needs no gradients, but its log_probs are differentiable with respect to x. A diffusion
    model's run is a UserError (load it with fokker.model.load_model). One trained on an autoencoder's latents
    has that latent space (fokker.autoencoder.LatentSpace) as its `space`."""
    from fokker.model import classifier_for, load_with_space  # fokker.model builds NoisyClassifiers: imported here

    network, config, space = load_with_space(checkpoint, "classifier", device)
    return classifier_for(network, config, space), config
