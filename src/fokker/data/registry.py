"""The registry of built-in data-set names (name -> loader), and :func:`load_dataset`, which checks the
options once and hands a name to its loader, or a path to the image-folder loader."""

from __future__ import annotations

import functools
from collections.abc import Callable
from numbers import Integral
from pathlib import Path
from typing import TYPE_CHECKING

from fokker.data.colour import load_colour_mnist
from fokker.data.dataset import Dataset, LoadOptions
from fokker.data.folders import load_folder
from fokker.data.packaged import load_digits, load_mnist
from fokker.data.splits import split_index
from fokker.data.toys import TARGETS, TOYS, load_target, load_toy
from fokker.errors import UserError

if TYPE_CHECKING:
    from fokker.config import RunConfig

Loader = Callable[[str, LoadOptions], Dataset]  # (split, options) -> Dataset

# Every built-in data set, in the order dataset_names() lists them: toys, analytic targets, image sets.
DATASETS: dict[str, Loader] = {
    **{name: functools.partial(load_toy, name) for name in TOYS},
    **{name: functools.partial(load_target, name) for name in TARGETS},
    "digits": load_digits,
    "mnist": load_mnist,
    "colour_mnist": load_colour_mnist,
}


def dataset_names() -> list[str]:
    """Names of the built-in data sets (any other name is read as a folder of images)."""
    return list(DATASETS)


def dataset_for(config: RunConfig, split: str = "train") -> Dataset:
    """The data set the config's data section names."""
    d = config.data
    return load_dataset(
        d.name,
        split=split,
        image_size=d.image_size,
        channels=d.channels,
        num_points=d.num_points,
        seed=config.train.seed,
    )


def load_dataset(
    name: str,
    *,
    split: str = "train",
    image_size: int | None = None,
    channels: int | None = None,
    num_points: int = 20000,
    seed: int = 0,
) -> Dataset:
    """Load a built-in data set or a folder of images as a :class:`Dataset`.

    Args:
        name: a name from :func:`dataset_names`, or a path to a folder of images, searched
            recursively for ``.png``/``.jpg``/``.jpeg`` files (case-insensitive; files and
            folders whose name starts with ``.`` are skipped).
        split: ``"train"`` or ``"test"``. Toys draw the two splits from different seeds derived
            from ``seed``; ``digits`` and ``mnist`` use fixed disjoint splits. For a folder,
            ``"train"`` is every image and ``"test"`` a fixed 10% of them (at least one image,
            chosen by a fixed permutation) -- the test images are also in ``"train"``.
        image_size: side of the square images. Folders: the shorter side is resized to it and
            the centre cropped (default 32). ``digits``/``mnist``: bilinear antialiased resize
            when it differs from the native size. Ignored for toys. Must be at least 4.
        channels: 1 (grey) or 3 (RGB). Folders default to 1 when every image is grey, else 3;
            ``digits``/``mnist`` are grey and have their channel repeated when 3 is asked for;
            ``colour_mnist`` is RGB (3 only).
            Ignored for toys.
        num_points: number of points of a toy (ignored otherwise).
        seed: seed of a toy (ignored otherwise).

    Raises:
        UserError: an unknown name, a bad split or option, or an unreadable image folder.
    """
    split_index(split)  # checks the split
    _check_image_options(image_size, channels)
    options = LoadOptions(image_size=image_size, channels=channels, num_points=num_points, seed=seed)
    loader = DATASETS.get(name)
    if loader is not None:
        return loader(split, options)
    return _load_path(name, split, options)


def _check_image_options(image_size: object, channels: object) -> None:
    if image_size is not None and (
        isinstance(image_size, bool) or not isinstance(image_size, Integral) or image_size < 4
    ):
        raise UserError(f"image_size must be an integer of at least 4, got {image_size!r}")
    if channels is not None and (isinstance(channels, bool) or channels not in (1, 3)):
        raise UserError(f"channels must be 1 or 3, got {channels!r}")


def _load_path(name: str, split: str, options: LoadOptions) -> Dataset:
    """A name that is not built in: a folder of images, or an error listing the built-in names."""
    path = Path(name).expanduser()
    if path.is_dir():
        return load_folder(path, name, split, options.image_size, options.channels)
    if path.exists():
        raise UserError(f"{name} is a file, not a folder of images")
    raise UserError(
        f"unknown data set {name!r}: expected one of {', '.join(dataset_names())}, or a path to a folder of images"
    )
