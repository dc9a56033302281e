"""Inpainting in the data's own coordinates: pixels of an image, coordinates of a vector."""

from __future__ import annotations

from typing import Any

import torch

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
    completion per row: repeat a row for several. Returns (x_0, info)."""
    return complete(denoiser, sampler, pixel_observation(known, mask), steps, **options)
