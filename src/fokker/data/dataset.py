"""The in-memory data set type, the options a loader reads, and the uint8 <-> [-1, 1] image conversions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Dataset:
    """Data held in memory as float32 in [-1, 1]; labels where the data has them.

    ``data`` is (N, C, H, W) for images or (N, D) for vectors; ``labels`` is (N,) int64 with
    values in ``range(num_classes)``, or None. ``levels`` is the number of equally spaced values the
    data takes in [-1, 1] (256 for 8-bit images, 17 for native digits), None for continuous data; the
    likelihoods use it (a discrete decoder, dequantization).
    """

    data: torch.Tensor
    labels: torch.Tensor | None
    num_classes: int | None
    name: str
    levels: int | None = None

    def __post_init__(self) -> None:
        if self.labels is not None and self.labels.shape != (self.data.shape[0],):
            raise ValueError(f"labels have shape {tuple(self.labels.shape)}, expected ({self.data.shape[0]},)")

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one example: (C, H, W) for images, (D,) for vectors."""
        return tuple(self.data.shape[1:])

    @property
    def is_image(self) -> bool:
        """True when the examples are images, i.e. ``data`` is (N, C, H, W)."""
        return self.data.dim() == 4

    def __len__(self) -> int:
        """Number of examples."""
        return int(self.data.shape[0])


@dataclass(frozen=True)
class LoadOptions:
    """What :func:`fokker.data.load_dataset` was asked for besides the name and split (already checked);
    each source reads the fields it uses: images ``image_size`` and ``channels``, generated sets
    ``num_points`` and ``seed``."""

    image_size: int | None = None
    channels: int | None = None
    num_points: int = 20000
    seed: int = 0


def from_uint8_images(a: np.ndarray) -> torch.Tensor:
    """Convert uint8 (N, H, W, C) images to a float32 (N, C, H, W) tensor in [-1, 1] (0 -> -1, 255 -> 1)."""
    return torch.from_numpy(a).permute(0, 3, 1, 2).float().div_(255.0).mul_(2.0).sub_(1.0)


def to_uint8_images(x: torch.Tensor) -> np.ndarray:
    """Convert a (N, C, H, W) tensor in [-1, 1] to a uint8 (N, H, W, C) array.

    Values map linearly from [-1, 1] to [0, 255], are rounded to the nearest integer and
    clipped; NaN maps to 0 (middle grey).
    """
    if x.dim() != 4:
        raise ValueError(f"expected a (N, C, H, W) tensor, got shape {tuple(x.shape)}")
    y = torch.nan_to_num(x.detach().to("cpu", torch.float32), nan=0.0)
    y = ((y + 1.0) * 127.5).round_().clamp_(0.0, 255.0)
    return y.to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
