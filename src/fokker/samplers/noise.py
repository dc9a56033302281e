"""Where the samplers' noise was: it is core now (fokker.noise); these names stay importable from here."""

from fokker.noise import Generators, rand, randn, seed_for, seeded_batches

__all__ = ["Generators", "rand", "randn", "seed_for", "seeded_batches"]
