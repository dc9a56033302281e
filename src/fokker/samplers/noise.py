"""Deprecated: the samplers' noise is core now, `fokker.noise`; these names stay importable from here."""

import warnings

from fokker.noise import Generators, rand, randn, seed_for, seeded_batches

warnings.warn("fokker.samplers.noise is deprecated; import from fokker.noise", DeprecationWarning, stacklevel=2)

__all__ = ["Generators", "rand", "randn", "seed_for", "seeded_batches"]
