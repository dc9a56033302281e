"""Train / test splits, the one place every source takes its split from: the index a generated set
mixes into its seed, and the rows of a fixed set (scikit-learn digits, MNIST, an image folder)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fokker.errors import UserError

SPLITS = ("train", "test")


def split_index(split: str) -> int:
    """0 for ``"train"``, 1 for ``"test"``; generated sets seed their draws with it, so the two splits
    are independent draws. Raises UserError for any other split."""
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}: expected 'train' or 'test'")
    return SPLITS.index(split)


def split_rows(
    split: str, labels: np.ndarray, num_test: Callable[[int], int], *, test_in_train: bool = False
) -> np.ndarray:
    """Indices of the rows of `split` in a fixed data set whose rows have these labels.

    The rows are shuffled by a fixed permutation (``numpy.random.default_rng(0)``); of every class c
    the first ``num_test(n_c)`` rows in that order are the test split and the others the train split,
    both in permutation order. With `test_in_train` (image folders) ``"train"`` is every row in row
    order and the test rows come sorted.
    """
    perm = np.random.default_rng(0).permutation(len(labels))
    is_test = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        members = perm[labels[perm] == c]
        is_test[members[: num_test(len(members))]] = True
    if test_in_train:
        return np.arange(len(labels)) if split == "train" else np.sort(perm[is_test[perm]])
    return perm[~is_test[perm]] if split == "train" else perm[is_test[perm]]
