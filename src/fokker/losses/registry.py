"""The loss registry, name -> Loss class (improved-diffusion's LossType as one table). A module that defines
losses registers them; fokker's root package imports every such module (the few-step losses of
fokker.distill among them), so the table is whole once `fokker` is imported, and this layer imports none of
the layers above it."""

from __future__ import annotations

from fokker.losses.base import Loss

LOSS_TYPES: dict[str, type[Loss]] = {}


def register_loss(cls: type[Loss]) -> type[Loss]:
    """Add `cls` under its `name` (usable as a class decorator)."""
    LOSS_TYPES[cls.name] = cls
    return cls


def loss_names(**flags: object) -> tuple[str, ...]:
    """The registered names, in order, of the losses whose class attributes equal `flags` (e.g.
    trains_variance=True); all of them without flags."""
    return tuple(name for name, cls in LOSS_TYPES.items() if all(getattr(cls, k) == v for k, v in flags.items()))
