"""Inpainting in the data's own coordinates: pixels of an image, coordinates of a vector."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from fokker.denoiser import Denoiser
from fokker.errors import UserError
from fokker.inpaint.complete import complete
from fokker.inpaint.observation import Observation


def pixel_observation(known: torch.Tensor, mask: torch.Tensor) -> Observation:
    """The Observation of the data `known` (B, ...) outside `mask` (bool, True where missing, broadcastable to
    `known`: (H, W), (C, H, W) or (B, C, H, W) for images, (D,) or (B, D) for vectors). A mask that does
    not broadcast, or that leaves nothing missing or nothing known, is a UserError."""
    if mask.dtype != torch.bool:
        raise UserError(f"a mask must be a bool tensor (True where missing), got {mask.dtype}")
    try:
        shape = torch.broadcast_shapes(mask.shape, known.shape)
    except RuntimeError:
        shape = None
    if shape != known.shape:
        raise UserError(f"a mask of shape {tuple(mask.shape)} does not fit data of shape {tuple(known.shape)}")
    missing = mask.expand(known.shape)
    if not missing.any() or missing.flatten(1).all(1).any():
        raise UserError("the mask leaves nothing missing, or nothing known (to sample freely use fokker.sample)")
    return Observation(known, ~mask.to(known.device))


def inpaint(
    denoiser: Denoiser,
    sampler: str,
    known: torch.Tensor,
    mask: torch.Tensor,
    steps: int,
    **options: Any,
) -> tuple[torch.Tensor, dict]:
    """Fill in the `mask`ed part (True = missing) of each row of `known` (data in the model's scale: images in
    [-1, 1]) with a draw from the model given the rest: `sampler` on `steps` steps; `options` are
    fokker.inpaint.complete's (scheme "replace", Song et al. 2021, app. I.2, or "repaint", Lugmayr et al. 2022,
    with jump and resample; spacing, generator, model_kwargs, progress and the sampler's own options). One
    completion per row: repeat a row for several. Returns (x_0, info). A latent diffusion model inpaints its
    latents (`latent_inpaint`)."""
    if denoiser.space is not None:
        return latent_inpaint(denoiser, sampler, known, mask, steps, **options)
    return complete(denoiser, sampler, pixel_observation(known, mask), steps, **options)


def latent_inpaint(
    denoiser: Denoiser, sampler: str, known: torch.Tensor, mask: torch.Tensor, steps: int, **options: Any
) -> tuple[torch.Tensor, dict]:
    """`inpaint` with a latent diffusion model, in its latent space (Rombach et al. 2022, sec. 4.5): the image
    with its missing pixels at 0 (mid-grey) encoded, a latent position known only where every pixel of its
    block is (the mask max-pooled to the latent grid), the latents completed as `inpaint` does, decoded, and
    the known pixels put back. The encoder sees past its block, so known positions next to the hole carry a
    little of the fill: an approximation latent inpainting makes. Returns (images, info)."""
    space = denoiser.space
    if known.dim() != 4:
        raise UserError(f"a latent diffusion model inpaints images (B, C, H, W), got shape {tuple(known.shape)}")
    missing = pixel_observation(known, mask).known.logical_not().expand(known.shape)  # the mask, checked
    z_known = space.encode(known.masked_fill(missing, 0.0))
    blocks = F.adaptive_max_pool2d(missing.any(1, keepdim=True).float(), z_known.shape[-2:]) > 0
    if blocks.flatten(1).all(1).any():
        raise UserError(
            f"the mask leaves no block of {known.shape[-1] // z_known.shape[-1]}x"
            f"{known.shape[-2] // z_known.shape[-2]} pixels fully known, and a latent diffusion model inpaints "
            "whole latent positions: give a mask with larger known regions (left, right, top, bottom, center)"
        )
    z, info = complete(denoiser, sampler, pixel_observation(z_known, blocks.expand_as(z_known)), steps, **options)
    return torch.where(missing, space.decode(z), known), info
