"""Pictures of samples: image grids (Pillow) and 2-D scatter plots (matplotlib)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fokker.data import to_uint8_images


def image_grid(x: torch.Tensor, nrow: int | None = None, pad: int = 2) -> Image.Image:
    """Tile (N, C, H, W) images in [-1, 1] into one picture, nrow per row (default: near square)."""
    imgs = to_uint8_images(x)
    n, h, w, c = imgs.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    canvas = np.full((rows * (h + pad) + pad, nrow * (w + pad) + pad, c), 255, dtype=np.uint8)
    for i in range(n):
        r, k = divmod(i, nrow)
        canvas[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + k * (w + pad) : pad + k * (w + pad) + w] = imgs[i]
    img = Image.fromarray(canvas[..., 0] if c == 1 else canvas)
    scale = max(1, 256 // max(canvas.shape[:2]))  # small images are hard to see: upscale
    return img.resize((img.width * scale, img.height * scale), Image.NEAREST) if scale > 1 else img


def scatter_plot(x: torch.Tensor, reference: torch.Tensor | None = None, title: str = "") -> Image.Image:
    """A 2-D scatter of samples over the reference data (grey), as a Pillow image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
    if reference is not None:
        ax.scatter(*reference[:, :2].T.cpu().numpy(), s=1, c="0.75", label="data")
    ax.scatter(*x[:, :2].T.float().cpu().numpy(), s=1, c="tab:blue", label="samples")
    ax.set_xlim(-1.3, 1.3), ax.set_ylim(-1.3, 1.3), ax.set_aspect("equal"), ax.set_title(title)
    ax.legend(loc="upper right", markerscale=6, fontsize=7)
    fig.tight_layout()
    fig.canvas.draw()
    img = Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
    plt.close(fig)
    return img


def save_picture(x: torch.Tensor, path: str | Path, reference: torch.Tensor | None = None, title: str = "") -> None:
    """Save samples as a PNG, a grid for images or a scatter plot for 2-D points; written atomically."""
    img = image_grid(x) if x.dim() == 4 else scatter_plot(x, reference, title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    img.save(tmp, format="PNG")
    os.replace(tmp, path)
