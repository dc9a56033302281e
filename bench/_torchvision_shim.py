"""Import denoising-diffusion-pytorch where torchvision cannot be imported.

PyPI has no CPU build of torchvision, and its CUDA wheels do not load against a CPU build of torch
("operator torchvision::nms does not exist"). denoising-diffusion-pytorch imports torchvision only for
image transforms of its data loader and `utils.save_image`, none of which is on the network's path. When
the real torchvision imports, it is used; otherwise this module registers a stand-in with those names,
implemented with Pillow and torch. Benchmarks only; never imported by fokker."""

from __future__ import annotations

import importlib.machinery
import sys
import types

import numpy as np
import torch
from PIL import Image


class Compose:
    def __init__(self, fns):
        self.fns = fns

    def __call__(self, x):
        for fn in self.fns:
            x = fn(x)
        return x


class Lambda:
    def __init__(self, fn):
        self.fn = fn

    def __call__(self, x):
        return self.fn(x)


def _pair(size) -> tuple[int, int] | None:
    """(height, width) of an (h, w) size; None for a single int (the shorter side)."""
    return None if isinstance(size, int) else (int(size[0]), int(size[1]))


class Resize:
    def __init__(self, size):
        self.size = size

    def __call__(self, img: Image.Image) -> Image.Image:
        w, h = img.size
        pair = _pair(self.size)
        if pair is not None:
            return img.resize((pair[1], pair[0]), Image.BILINEAR)
        s = self.size / min(w, h)
        return img.resize((round(w * s), round(h * s)), Image.BILINEAR)


class CenterCrop:
    def __init__(self, size):
        self.size = size

    def __call__(self, img: Image.Image) -> Image.Image:
        w, h = img.size
        ch, cw = _pair(self.size) or (self.size, self.size)
        left, top = (w - cw) // 2, (h - ch) // 2
        return img.crop((left, top, left + cw, top + ch))


class RandomHorizontalFlip:
    def __call__(self, img: Image.Image) -> Image.Image:
        return img.transpose(Image.FLIP_LEFT_RIGHT) if torch.rand(()) < 0.5 else img


class ToTensor:
    def __call__(self, img: Image.Image) -> torch.Tensor:
        a = np.asarray(img, dtype=np.float32) / 255.0
        return torch.from_numpy(a[None] if a.ndim == 2 else a.transpose(2, 0, 1).copy())


def save_image(x: torch.Tensor, path, nrow: int = 8) -> None:
    x = x.detach().clamp(0, 1).cpu()
    n, c, h, w = x.shape
    rows = -(-n // nrow)
    canvas = torch.zeros(c, rows * h, nrow * w)
    for i in range(n):
        r, k = divmod(i, nrow)
        canvas[:, r * h : (r + 1) * h, k * w : (k + 1) * w] = x[i]
    a = (canvas * 255).round().byte().permute(1, 2, 0).numpy()
    Image.fromarray(a[..., 0] if c == 1 else a).save(path)


def install() -> str:
    """Make `import torchvision` work: the real one if it loads, else the stand-in. Returns which."""
    try:
        import torchvision  # noqa: F401

        return "torchvision"
    except Exception:
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
    tv = types.ModuleType("torchvision")
    tv.__spec__ = importlib.machinery.ModuleSpec("torchvision", None)  # find_spec() callers expect one
    tv.transforms = types.ModuleType("torchvision.transforms")
    for cls in (Compose, Lambda, Resize, CenterCrop, RandomHorizontalFlip, ToTensor):
        setattr(tv.transforms, cls.__name__, cls)
    tv.utils = types.ModuleType("torchvision.utils")
    tv.utils.save_image = save_image
    sys.modules.update({"torchvision": tv, "torchvision.transforms": tv.transforms, "torchvision.utils": tv.utils})
    return "stand-in (bench/_torchvision_shim.py)"
