"""Inpainting in the data's own coordinates: pixels of an image, coordinates of a vector."""

from __future__ import annotations

import torch

from fokker.denoiser import Denoiser
from fokker.errors import UserError
from fokker.inpaint.complete import complete
from fokker.inpaint.observation import Observation
from fokker.noise import Generators


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
    *,
    scheme: str = "replace",
    jump: int | None = None,
    resample: int | None = None,
    spacing: str = "uniform",
    generator: Generators = None,
    model_kwargs: dict | None = None,
    progress: bool = False,
    **sampler_options,
) -> tuple[torch.Tensor, dict]:
    """Fill in the `mask`ed part (True = missing) of each row of `known` (data in the model's scale: images in
    [-1, 1]) with a draw from the model given the rest: `sampler` on `steps` steps by `scheme`, "replace"
    (Song et al. 2021, app. I.2) or "repaint" (Lugmayr et al. 2022; `jump`, `resample` default 10, 10);
    fokker.inpaint.complete. One completion per row: repeat a row for several. Returns (x_0, info)."""
    observation = pixel_observation(known, mask)
    return complete(
        denoiser, sampler, observation, steps, scheme=scheme, jump=jump, resample=resample, spacing=spacing,
        generator=generator, model_kwargs=model_kwargs, progress=progress, **sampler_options,
    )  # fmt: skip
