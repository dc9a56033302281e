"""One image file to a square array: Pillow mode conversion, resize and centre crop, and one clear error
for a file that cannot be read."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from fokker.data.dataset import from_uint8_images
from fokker.errors import UserError

# Pillow modes that hold one (grey) channel, possibly with alpha.
GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})


@contextmanager
def reading(path: Path) -> Iterator[None]:
    """Turn any failure inside the block into one UserError naming the image `path` and the reason."""
    try:
        yield
    except Exception as err:
        reason = " ".join(str(err).split()) or type(err).__name__
        raise UserError(f"cannot read image {path}: {reason}") from err


def to_mode(img, mode: str):
    """Convert a Pillow image to "L" or "RGB": 16-bit grey is scaled (not clipped) to 8 bits
    and transparent images are composited over white."""
    from PIL import Image

    if img.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        a = np.asarray(img).astype(np.float64)
        if img.mode == "F":
            scale = 255.0 if a.size and a.max() <= 1.0 else 1.0
        else:
            scale = 1.0 / 257.0 if a.size and a.max() > 255 else 1.0
        img = Image.fromarray(np.clip(np.rint(a * scale), 0, 255).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "La", "RGBa", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert(mode)


def resize_crop(img, size: int):
    """Resize so the shorter side is ``size`` (Pillow's Lanczos filter), then crop the centre square."""
    from PIL import Image

    w, h = img.size
    if min(w, h) != size:
        scale = size / min(w, h)
        new_w = size if w <= h else max(size, round(w * scale))
        new_h = size if h < w else max(size, round(h * scale))
        img = img.resize((new_w, new_h), Image.Resampling.LANCZOS)
        w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    return img.crop((left, top, left + size, top + size))


def square_array(img, size: int, channels: int) -> np.ndarray:
    """A Pillow image as uint8 (size, size, channels): grey (1) or RGB (3), the shorter side resized to
    `size` and the centre cropped."""
    img = resize_crop(to_mode(img, "L" if channels == 1 else "RGB"), size)
    return np.array(img, dtype=np.uint8).reshape(size, size, channels)  # a writable copy for torch


def load_image(path: str | Path, shape: tuple[int, ...]) -> torch.Tensor:
    """One image file as a (C, H, W) tensor in [-1, 1] for a model of `shape` (C, H, W): converted to grey
    or RGB, the shorter side resized to H and the centre cropped, as for a folder of images."""
    from PIL import Image

    channels, size = shape[0], shape[-1]
    path = Path(path).expanduser()
    with reading(path), Image.open(path) as img:
        a = square_array(img, size, channels)
    return from_uint8_images(a[None])[0]
