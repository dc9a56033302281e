"""Inpainting masks: True where x is MISSING (to be sampled), False where it is known, as OpenCV's and diffusers'
inpainting masks mark the hole. For an image (C, H, W) a mask is (H, W), shared by the channels: a PNG file
of the image's size (white = missing, black = known; grey thresholded at 128) or a name:

    left, right, top, bottom   that half of the image missing
    center                     the centre square of half the side missing (a quarter of the pixels)
    random-P                   a fraction P of the pixels missing, drawn from `seed` (e.g. random-0.5)

For a vector (D,) the mask is (D,): "x" (coordinate 0 missing), "y" (coordinate 1), a comma-separated list of
the missing coordinates ("1,3"), or random-P."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from fokker.data.images import reading
from fokker.errors import UserError

IMAGE_MASKS = ("left", "right", "top", "bottom", "center", "random-P")
VECTOR_MASKS = ("x", "y", "a list of coordinates like 1,3", "random-P")


def random_mask(shape: tuple[int, ...], fraction: float, seed: int = 0) -> torch.Tensor:
    """round(fraction * n) of the n entries missing, chosen by a permutation drawn from torch.Generator(seed)."""
    if not 0 < fraction < 1:
        raise UserError(f"random-P needs a fraction 0 < P < 1 of missing pixels, got {fraction}")
    n = int(np.prod(shape))
    chosen = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[: round(fraction * n)]
    return torch.zeros(n, dtype=torch.bool).index_fill_(0, chosen, True).reshape(shape)


def _random_fraction(name: str) -> float | None:
    """P of a name random-P, else None."""
    match = re.fullmatch(r"random-([0-9]*\.?[0-9]+)", name)
    return float(match.group(1)) if match else None


def image_mask(name: str, size: tuple[int, int], seed: int = 0) -> torch.Tensor:
    """The (H, W) mask of the name or PNG file `name` for images of `size` (H, W)."""
    h, w = size
    if name.lower().endswith(".png"):
        return mask_from_png(name, size)
    fraction = _random_fraction(name)
    if fraction is not None:
        return random_mask((h, w), fraction, seed)
    rows, cols = torch.arange(h)[:, None], torch.arange(w)[None, :]
    halves = {"left": cols < w // 2, "right": cols >= w - w // 2, "top": rows < h // 2, "bottom": rows >= h - h // 2}
    if name in halves:
        return halves[name].expand(h, w).clone()
    if name == "center":
        inside = (rows >= h // 4) & (rows < h // 4 + h // 2) & (cols >= w // 4) & (cols < w // 4 + w // 2)
        return inside
    raise UserError(f"unknown mask {name!r} for images; expected a .png file or one of {', '.join(IMAGE_MASKS)}")


def mask_from_png(path: str | Path, size: tuple[int, int]) -> torch.Tensor:
    """A mask picture as (H, W): white (grey >= 128) missing, black known; it must be exactly H x W pixels."""
    from PIL import Image

    from fokker.data.images import to_mode

    path = Path(path).expanduser()
    with reading(path), Image.open(path) as img:
        grey = np.asarray(to_mode(img, "L"))
    if grey.shape != tuple(size):
        raise UserError(
            f"mask {path} is {grey.shape[1]}x{grey.shape[0]} pixels; this model's images are {size[1]}x{size[0]}"
        )
    return torch.from_numpy(grey >= 128)


def vector_mask(name: str, dim: int, seed: int = 0) -> torch.Tensor:
    """The (D,) mask of `name` for vectors of `dim` coordinates."""
    fraction = _random_fraction(name)
    if fraction is not None:
        return random_mask((dim,), fraction, seed)
    aliases = {"x": "0", "y": "1"}
    spec = aliases.get(name, name)
    if not re.fullmatch(r"[0-9]+(,[0-9]+)*", spec):
        raise UserError(f"unknown mask {name!r} for vectors; expected {', '.join(VECTOR_MASKS)}")
    missing = [int(i) for i in spec.split(",")]
    if max(missing) >= dim:
        raise UserError(f"mask {name!r} names coordinate {max(missing)}; these vectors have {dim}: 0..{dim - 1}")
    return torch.zeros(dim, dtype=torch.bool).index_fill_(0, torch.tensor(missing), True)


def make_mask(name: str, shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """The mask `name` for one example of `shape`: (H, W) for images (C, H, W), (D,) for vectors (D,)."""
    if len(shape) == 3:
        return image_mask(name, (shape[1], shape[2]), seed)
    return vector_mask(name, shape[0], seed)
