"""Generated data sets, drawn from ``seed`` and the split: the 2-D toys (``moons``, ``swiss_roll``,
``8gaussians``, ``checkerboard``) and the analytic targets whose log-density is known (``mixture``,
``gaussian16``).

Each toy's noise is bounded (Gaussian noise truncated at 3 standard deviations by redrawing) and a fixed
affine map per toy places every point in [-1, 1] without clamping, so the shape of the distribution is
preserved.
"""

from __future__ import annotations

from collections.abc import Callable
from numbers import Integral

import numpy as np
import torch

from fokker.data.dataset import Dataset, LoadOptions
from fokker.data.splits import split_index
from fokker.errors import UserError
from fokker.noise import seed_for
from fokker.targets import GaussianMixture, GaussianTarget

# points (n, 2), labels (n,) int64 or None, number of classes or None
Points = tuple[np.ndarray, np.ndarray | None, int | None]


def _truncated_normal(rng: np.random.Generator, size: tuple[int, ...], bound: float = 3.0) -> np.ndarray:
    """Standard normal samples with every |value| <= bound (out-of-range values redrawn)."""
    z = rng.standard_normal(size)
    bad = np.abs(z) > bound
    while bad.any():
        z[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(z) > bound
    return z


def moons(rng: np.random.Generator, n: int) -> Points:
    """Two interleaved half circles as scikit-learn's ``make_moons``, labelled by circle, noise std 0.1.

    Raw extent: x in [-1.3, 2.3], y in [-0.8, 1.3]; centred on (0.5, 0.25) and scaled by 1 / 1.8.
    """
    labels = rng.permutation(np.arange(n) >= (n + 1) // 2).astype(np.int64)
    t = rng.uniform(0.0, np.pi, n)
    outer = np.stack([np.cos(t), np.sin(t)], axis=1)
    inner = np.stack([1.0 - np.cos(t), 0.5 - np.sin(t)], axis=1)
    pts = np.where(labels[:, None] == 0, outer, inner)
    pts = pts + 0.1 * _truncated_normal(rng, (n, 2))
    return (pts - np.array([0.5, 0.25])) / 1.8, labels, 2


def swiss_roll(rng: np.random.Generator, n: int) -> Points:
    """The spiral r = t, t in [1.5 pi, 4.5 pi], of scikit-learn's ``make_swiss_roll`` (its x and z), noise
    std 0.5.

    Raw extent: x in [-9.5, 12.6] +- 1.5, y in [-11.1, 14.2] +- 1.5; centred on (pi/2, pi/2), both
    coordinates then lie within 4 pi + 1.6, and 4 pi + 2 maps to 1.
    """
    t = 1.5 * np.pi * (1.0 + 2.0 * rng.uniform(0.0, 1.0, n))
    pts = np.stack([t * np.cos(t), t * np.sin(t)], axis=1)
    pts = pts + 0.5 * _truncated_normal(rng, (n, 2))
    return (pts - np.pi / 2.0) / (4.0 * np.pi + 2.0), None, None


def eight_gaussians(rng: np.random.Generator, n: int) -> Points:
    """Eight Gaussians with std 0.2 centred on a circle of radius 2, labelled by centre (centre k at angle
    k pi / 4), after the toy sets of Grathwohl et al. 2019 (FFJORD); every coordinate lies within 2.6,
    which maps to 1."""
    labels = rng.integers(0, 8, n).astype(np.int64)
    angle = labels * (np.pi / 4.0)
    centres = 2.0 * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return (centres + 0.2 * _truncated_normal(rng, (n, 2))) / 2.6, labels, 8


def checkerboard(rng: np.random.Generator, n: int) -> Points:
    """Uniform on the 8 "black" squares of a 4x4 board covering [-2, 2]^2, after the toy sets of
    Grathwohl et al. 2019 (FFJORD); scaled by 1/2."""
    cell = rng.integers(0, 8, n)
    row = cell // 2
    col = 2 * (cell % 2) + (row % 2)
    pts = np.stack([col, row], axis=1) + rng.uniform(0.0, 1.0, (n, 2)) - 2.0
    return pts / 2.0, None, None


TOYS: dict[str, Callable[[np.random.Generator, int], Points]] = {
    "moons": moons,
    "swiss_roll": swiss_roll,
    "8gaussians": eight_gaussians,
    "checkerboard": checkerboard,
}

# analytic targets: their log-density is known exactly
TARGETS: dict[str, Callable[[], GaussianTarget | GaussianMixture]] = {
    "mixture": GaussianMixture.unequal_2d,
    "gaussian16": lambda: GaussianTarget.anisotropic(16, seed=0),
}


def analytic_target(name: str) -> GaussianTarget | GaussianMixture | None:
    """The exact distribution behind data set `name` (``mixture``: 0.2 / 0.5 / 0.3 mixture of three 2-D
    Gaussians; ``gaussian16``: a rotated anisotropic Gaussian in 16-D), or None when it has no closed form."""
    make = TARGETS.get(name)
    return None if make is None else make()


def _num_points(num_points: object) -> int:
    if isinstance(num_points, bool) or not isinstance(num_points, Integral) or num_points < 1:
        raise UserError(f"num_points must be a positive integer, got {num_points!r}")
    return int(num_points)


def load_toy(name: str, split: str, options: LoadOptions) -> Dataset:
    """``options.num_points`` points of toy `name`, drawn from ``numpy.random.default_rng([split, seed])``."""
    n = _num_points(options.num_points)
    rng = np.random.default_rng([split_index(split), int(options.seed) & 0xFFFFFFFFFFFFFFFF])
    pts, labels, num_classes = TOYS[name](rng, n)
    data = torch.from_numpy(np.ascontiguousarray(pts, dtype=np.float32))
    label_t = None if labels is None else torch.from_numpy(labels)
    return Dataset(data=data, labels=label_t, num_classes=num_classes, name=name)


def load_target(name: str, split: str, options: LoadOptions) -> Dataset:
    """``options.num_points`` draws from the analytic target `name`, from a generator seeded with
    ``seed_for(split, seed)``."""
    n = _num_points(options.num_points)
    g = torch.Generator().manual_seed(seed_for(split_index(split), options.seed))
    return Dataset(analytic_target(name).sample(n, g).float(), None, None, name)
