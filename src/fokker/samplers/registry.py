"""The sampler registry: name -> sampler function, each with the shared signature

    sampler(denoiser, x, times, *, generator=None, callback=None, model_kwargs=None,
            progress=False, **options) -> (samples, info)

where x is the starting state at times[0] = 1 and times descends to 0. info holds at least
"nfe" (network evaluations used) and "steps"."""

from __future__ import annotations

import inspect
from collections.abc import Callable

from fokker.errors import UserError

SAMPLERS: dict[str, Callable] = {}
COMMON = {"generator", "callback", "model_kwargs", "progress"}


def register(name: str) -> Callable[[Callable], Callable]:
    """Register a sampler under `name` (the name `fokker.sample` and the CLI use)."""

    def add(fn: Callable) -> Callable:
        SAMPLERS[name] = fn
        return fn

    return add


def get_sampler(name: str) -> Callable:
    """The sampler registered as `name`, or a UserError listing the names."""
    if name not in SAMPLERS:
        raise UserError(f"unknown sampler {name!r}; expected one of {sorted(SAMPLERS)}")
    return SAMPLERS[name]


def sampler_options(name: str) -> dict[str, object]:
    """The sampler's own keyword options and their defaults."""
    params = inspect.signature(get_sampler(name)).parameters.values()
    return {p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY and p.name not in COMMON}


def check_options(name: str, options: dict) -> None:
    """Raise a UserError naming any option the sampler does not take."""
    known = sampler_options(name)
    for key in options:
        if key not in known:
            raise UserError(f"sampler {name!r} has no option {key!r}; its options: {sorted(known) or 'none'}")
