"""The inputs of `fokker inpaint` / `fokker colorize`: image files or examples of the run's test split, and
several completions of each, drawn in batches with one seed per completion."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
from tqdm.auto import tqdm

from fokker.data import dataset_for, load_image
from fokker.errors import UserError
from fokker.noise import Generators, seed_for

if TYPE_CHECKING:
    from fokker.config import RunConfig


def load_inputs(config: RunConfig, images: Sequence[str] | None, indices: Sequence[int] | None) -> torch.Tensor:
    """(N, *shape) on the CPU, in the data's scale ([-1, 1] for images): image files, each converted to the
    model's channels, its shorter side resized to the model's size and the centre cropped (as a folder of
    images is read), or the examples of the run's test split at `indices`; exactly one of the two."""
    if (images is None) == (indices is None):
        raise UserError("give the inputs either as --image files or as --index numbers of the test split, not both")
    shape = tuple(config.data.shape)
    if images is not None:
        if len(shape) != 3:
            raise UserError("this model's data are vectors, not images; give --index numbers of test examples")
        return torch.stack([load_image(path, shape) for path in images])
    test = dataset_for(config, "test").data
    for i in indices:
        if not 0 <= i < len(test):
            raise UserError(f"--index {i} is out of range; the test split has {len(test)} examples: 0..{len(test) - 1}")
    return test[list(indices)]


def complete_seeded(
    run: Callable[[torch.Tensor, Generators], tuple[torch.Tensor, dict]],
    inputs: torch.Tensor,
    num: int,
    *,
    seed: int = 0,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> tuple[torch.Tensor, dict]:
    """`num` completions of each row of `inputs`, input by input: run(rows, generators) -> (x, info) completes each
    row with its own generator, completion j of input i seeded with seed_for(seed, i, j), so the result does not
    depend on `batch_size`. Returns (float32 completions (len(inputs) * num, ...) on the CPU, the last batch's info)."""
    if num < 1 or batch_size < 1:
        raise UserError(f"--num and --batch-size must be positive, got {num} and {batch_size}")
    pairs = [(i, j) for i in range(len(inputs)) for j in range(num)]
    rows = inputs.repeat_interleave(num, 0)
    chunks, info = [], {}
    starts = range(0, len(pairs), batch_size)
    for lo in tqdm(starts, desc="batches", unit="batch", disable=not progress or len(starts) == 1):
        batch = pairs[lo : lo + batch_size]
        gens = [torch.Generator(device).manual_seed(seed_for(seed, i, j)) for i, j in batch]
        x, info = run(rows[lo : lo + len(batch)].to(device), gens)
        chunks.append(x.float().cpu())
    return torch.cat(chunks), info
