"""Random draws from an explicit generator: one torch.Generator for the batch, or one per example
so that a sample does not depend on the batch it was drawn in."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch

Generators = torch.Generator | Sequence[torch.Generator] | None


def seed_for(*keys: int) -> int:
    """A well-mixed 32-bit seed for a tuple of integers, e.g. (seed, image index). torch's CPU generator
    keeps only the low 32 bits of a seed, so keys must be mixed, not packed as seed * 2**32 + i."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0])


def seeded_batches(
    ids: Sequence[int], batch_size: int, seed: int, device: torch.device | str = "cpu"
) -> Iterator[tuple[int, int, list[torch.Generator]]]:
    """(lo, hi, generators) for consecutive batches of at most `batch_size` of the items `ids`, item i
    with its own generator seeded with seed_for(seed, ids[i]), so that what is drawn for an item does not
    depend on the batch it falls in."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    for lo in range(0, len(ids), batch_size):
        hi = min(lo + batch_size, len(ids))
        yield lo, hi, [torch.Generator(device).manual_seed(seed_for(seed, int(i))) for i in ids[lo:hi]]


def _drawer(fn: Callable[..., torch.Tensor], doc: str) -> Callable[..., torch.Tensor]:
    """A noise function drawing with torch's `fn` (torch.randn, torch.rand), with one generator or one per row."""

    def draw(
        shape: Sequence[int],
        generator: Generators = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        shape = tuple(shape)
        if generator is None or isinstance(generator, torch.Generator):
            gen_device = generator.device if generator is not None else device
            return fn(shape, generator=generator, device=gen_device, dtype=dtype).to(device)
        if len(generator) != shape[0]:
            raise ValueError(f"got {len(generator)} generators for a batch of {shape[0]}")
        rows = [fn((1, *shape[1:]), generator=g, device=g.device, dtype=dtype) for g in generator]
        return torch.cat(rows).to(device)

    draw.__name__ = draw.__qualname__ = fn.__name__
    draw.__doc__ = doc
    return draw


randn = _drawer(
    torch.randn,
    """Standard normal noise of `shape`. With a list of generators, row i is drawn from generator i
    (the list must have shape[0] entries); noise is drawn on the generator's device, then moved.""",
)
rand = _drawer(torch.rand, """Uniform noise on [0, 1) of `shape`, drawn like `randn`.""")
