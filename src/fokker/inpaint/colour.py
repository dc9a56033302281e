"""Colorization (Song et al. 2021, app. I.3): an orthogonal colour basis whose first channel is the grey level,
u = M x per pixel with M's first row (1, 1, 1) / sqrt(3); given a grey image g (the mean of R, G and B),
u_0 = sqrt(3) g is known and the other two channels are sampled, by replacement or RePaint in the M basis
(fokker.inpaint.complete): since M is orthogonal, the noise of M x_t is N(0, sigma^2 I) too."""

from __future__ import annotations

import math
from typing import Any

import torch

from fokker.denoiser import Denoiser
from fokker.errors import UserError
from fokker.inpaint.complete import complete
from fokker.inpaint.observation import Observation

# rows: grey (1, 1, 1) / sqrt 3, then (-2, 1, 1) / sqrt 6 and (0, 1, -1) / sqrt 2, the completion of score_sde's
# colorizer (Song et al. 2021, app. I.3; their M holds these as columns)
COLOUR_BASIS = torch.tensor(
    [
        [1 / math.sqrt(3), 1 / math.sqrt(3), 1 / math.sqrt(3)],
        [-2 / math.sqrt(6), 1 / math.sqrt(6), 1 / math.sqrt(6)],
        [0.0, 1 / math.sqrt(2), -1 / math.sqrt(2)],
    ],
    dtype=torch.float64,
)


def grey_of(images: torch.Tensor) -> torch.Tensor:
    """The grey level (B, 1, H, W) of images: a 1-channel image itself, a 3-channel one the mean of R, G, B."""
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise UserError(f"colorization takes (B, 1, H, W) or (B, 3, H, W) images, got shape {tuple(images.shape)}")
    return images if images.shape[1] == 1 else images.mean(1, keepdim=True)


def grey_observation(grey: torch.Tensor) -> Observation:
    """The Observation of the grey level of `grey` (see `grey_of`) for RGB x_0: channel 0 of M x_0, sqrt(3) g."""
    g = grey_of(grey)
    values = torch.cat([math.sqrt(3) * g, torch.zeros_like(g), torch.zeros_like(g)], 1)
    known = torch.tensor([True, False, False], device=g.device).reshape(1, 3, 1, 1)
    return Observation(values, known, COLOUR_BASIS.to(g))


def colorize(
    denoiser: Denoiser,
    sampler: str,
    grey: torch.Tensor,
    steps: int,
    **options: Any,
) -> tuple[torch.Tensor, dict]:
    """Colour images (B, 3, H, W) in [-1, 1] whose grey level (mean of R, G, B) is that of `grey` ((B, 1, H, W), or
    (B, 3, H, W) reduced to its mean), from an RGB model: `sampler` on `steps` steps in the colour basis;
    `options` are fokker.inpaint.complete's (scheme "replace" or "repaint", ...). Returns (x_0, info)."""
    if denoiser.space is not None:
        raise UserError(
            "colorize holds the grey level of each pixel, which a latent diffusion model's latents do not "
            "separate from colour: colorize with a pixel model"
        )
    return complete(denoiser, sampler, grey_observation(grey), steps, **options)
