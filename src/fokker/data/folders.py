"""A folder of ``.png``/``.jpg``/``.jpeg`` images as a data set: finding the files, labels from class
sub-folders, the channel count, and reading the images of a split."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from fokker.data.dataset import Dataset, from_uint8_images
from fokker.data.images import GREY_MODES, reading, square_array
from fokker.data.splits import split_rows
from fokker.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_TEST_FRACTION = 0.1
_DEFAULT_SIZE = 32


def find_images(root: Path) -> list[Path]:
    """Image files under root, recursively, sorted by path; hidden files and folders skipped."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for f in filenames:
            if not f.startswith(".") and f.lower().endswith(IMAGE_SUFFIXES):
                found.append(Path(dirpath) / f)
    return sorted(found, key=lambda p: p.relative_to(root).parts)


def folder_labels(root: Path, files: list[Path]) -> tuple[np.ndarray | None, int | None]:
    """(labels, number of classes) when every file sits in a class sub-folder of root (classes
    numbered in sorted order), else (None, None)."""
    rel = [f.relative_to(root).parts for f in files]
    if not all(len(parts) == 2 for parts in rel):
        return None, None
    classes = sorted({parts[0] for parts in rel})
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[parts[0]] for parts in rel], dtype=np.int64), len(classes)


def folder_channels(files: list[Path]) -> int:
    """1 when every image is grey, else 3; reads headers only."""
    from PIL import Image

    for f in files:
        with reading(f), Image.open(f) as img:
            mode = img.mode
        if mode not in GREY_MODES:
            return 3
    return 1


def read_images(files: list[Path], size: int, channels: int) -> np.ndarray:
    """The files as uint8 (N, size, size, channels), each turned upright by its EXIF orientation
    (Pillow's ``ImageOps.exif_transpose``) before the resize and crop."""
    from PIL import Image, ImageOps

    out = np.empty((len(files), size, size, channels), dtype=np.uint8)
    for k, f in enumerate(files):
        with reading(f), Image.open(f) as img:
            img.load()
            out[k] = square_array(ImageOps.exif_transpose(img), size, channels)
    return out


def _num_test(n: int) -> int:
    """Size of a folder's test split: 10% of its n images, at least one."""
    return max(1, round(_TEST_FRACTION * n))


def load_folder(root: Path, given: str, split: str, image_size: int | None, channels: int | None) -> Dataset:
    """The images under `root` (named `given` in errors). ``"train"`` is every image; ``"test"`` a fixed
    10% of them (at least one), also in ``"train"``."""
    files = find_images(root)
    if not files:
        raise UserError(f"no .png/.jpg/.jpeg images found in {given}")
    labels, num_classes = folder_labels(root, files)
    if channels is None:
        channels = folder_channels(files)
    keep = split_rows(split, np.zeros(len(files), dtype=np.int64), _num_test, test_in_train=True)
    size = _DEFAULT_SIZE if image_size is None else int(image_size)
    data = from_uint8_images(read_images([files[i] for i in keep], size, channels))
    return Dataset(
        data=data.contiguous(),
        labels=None if labels is None else torch.from_numpy(labels[keep]),
        num_classes=num_classes,
        name=root.resolve().name or str(root),
        levels=256,
    )
